package gate

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/citadel-go/citadel/framework/wire"
	"github.com/citadel-go/citadel/services"
	"github.com/davyxu/cellnet"
	"github.com/gorilla/websocket"
)

// The WebSocket side is the gate's own: a listener that applies the
// connection caps, an http.Server with header, read and idle timeouts (a
// client that sends half a request, or keeps an idle keep-alive
// connection, is dropped), gorilla/websocket's upgrade, and per
// connection a read loop and a send goroutine fed by a cellnet.Pipe, as
// cellnet's own sessions are. cellnet's gorillaws acceptor cannot do
// this: its http.Server has no timeouts, it cannot be stopped, and it
// reads a connection again after a read error until gorilla panics.

// wsConn is one upgraded WebSocket connection.
type wsConn struct {
	ws   *websocket.Conn
	pipe *cellnet.Pipe // frames for the send goroutine; nil ends it
}

// Send queues msg (an *outFrame or *closeFrame) for the send goroutine.
func (c *wsConn) Send(msg any) { c.pipe.Add(msg) }

// admittedListener refuses connections over the caps as it accepts them,
// before any byte is read.
type admittedListener struct {
	net.Listener
	g *Gate
}

func (l *admittedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		sl, refused := l.g.admission.admit()
		if sl == nil {
			l.g.m.refused.WithLabelValues(refused).Inc()
			c.Close()
			continue
		}
		return &admittedConn{Conn: c, slot: sl}, nil
	}
}

// admittedConn gives its slot back when it closes, however it closes (an
// HTTP request that never upgraded, or a WebSocket session that ended).
type admittedConn struct {
	net.Conn
	slot *slot
	once sync.Once
}

func (c *admittedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.slot.release)
	return err
}

type slotKey struct{}

// slotOf finds the slot of an HTTP connection (under TLS, of the
// connection under it).
func slotOf(c net.Conn) *slot {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if ac, ok := c.(*admittedConn); ok {
		return ac.slot
	}
	return nil
}

// startWS listens for WebSocket clients.
func (g *Gate) startWS() error {
	ln, err := net.Listen("tcp", g.cfg.WSAddr)
	if err != nil {
		return &ListenError{Transport: "ws", Addr: g.cfg.WSAddr, Err: err}
	}
	var l net.Listener = &admittedListener{Listener: ln, g: g}
	scheme := "ws"
	if g.tls != nil {
		l, scheme = tls.NewListener(l, g.tls), "wss"
	}
	mux := http.NewServeMux()
	mux.HandleFunc(g.cfg.WSPath, g.serveWS)
	g.wsServer = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: g.cfg.HandshakeTimeout,
		ReadTimeout:       g.cfg.HandshakeTimeout,
		WriteTimeout:      g.cfg.HandshakeTimeout,
		IdleTimeout:       g.cfg.HandshakeTimeout,
		MaxHeaderBytes:    8 << 10,
		// Scanners and half-open handshakes are noise at warn.
		ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, slotKey{}, slotOf(c))
		},
	}
	g.wsUpgrader = websocket.Upgrader{CheckOrigin: g.checkOrigin, ReadBufferSize: 1024, WriteBufferSize: 1024,
		HandshakeTimeout: g.cfg.HandshakeTimeout}
	go g.wsServer.Serve(l)
	g.wsURL = fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(hostOf(g.cfg.WSAddr), portOf(ln.Addr())), g.cfg.WSPath)
	return nil
}

// serveWS upgrades a request and runs the session on the request's
// goroutine until the connection ends.
func (g *Gate) serveWS(w http.ResponseWriter, r *http.Request) {
	if g.stopping.Load() {
		http.Error(w, "the gate is shutting down", http.StatusServiceUnavailable)
		return
	}
	sl, _ := r.Context().Value(slotKey{}).(*slot)
	ws, err := g.wsUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return // gorilla has answered with the HTTP error
	}
	c := &wsConn{ws: ws, pipe: cellnet.NewPipe()}
	s := g.newSession(g.wsIDs.Add(1), c, "ws", r.RemoteAddr, sl, "")
	sendDone := make(chan struct{})
	go g.wsSendLoop(s, c, sendDone)
	g.wsReadLoop(s, c)
	g.cleanup(s)
	c.pipe.Add(nil)
	<-sendDone
}

// errRateLimited ends a WebSocket read loop whose ping handler kicked.
var errRateLimited = errors.New("gate: rate limited")

// wsReadLoop reads frames until the connection fails or ends. After any
// read error it returns: gorilla keeps failing a connection that failed
// once (and panics when read a thousand times more).
func (g *Gate) wsReadLoop(s *session, c *wsConn) {
	ws := c.ws
	ws.SetReadLimit(int64(g.cfg.MaxFrame))
	// Pings count against the session's frame rate like any frame: each
	// one makes the gate write a pong.
	ws.SetPingHandler(func(data string) error {
		if !s.limiter.Allow() {
			g.kick(s, services.KickRateLimited, fmt.Sprintf("more than %v frames/s (pings count)", g.cfg.MsgRate))
			return errRateLimited
		}
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	for {
		if s.isClosing() {
			// Closed with a reason: let the client answer the close frame,
			// discarding what it sends meanwhile, for at most closeGrace.
			ws.SetReadDeadline(time.Now().Add(closeGrace))
			for {
				if _, _, err := ws.NextReader(); err != nil {
					return
				}
			}
		}
		ws.SetReadDeadline(g.readDeadline(s))
		kind, msg, err := ws.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				g.kicked(s, services.KickFrameTooLarge, err.Error()) // gorilla has sent close 1009
			} else if p := g.readProblem(s, err); p != nil {
				g.kick(s, p.code, p.reason)
			}
			if s.isClosing() {
				// gorilla will not read a failed connection again, but what
				// the client sent meanwhile must not reset the connection
				// before it has read its reason: discard it under gorilla.
				raw := ws.UnderlyingConn()
				raw.SetReadDeadline(time.Now().Add(closeGrace))
				io.Copy(io.Discard, raw)
			}
			return
		}
		if kind != websocket.BinaryMessage {
			g.kick(s, services.KickBadFrame, "only binary WebSocket messages are accepted")
			continue
		}
		f, err := wire.DecodeWS(msg, g.cfg.MaxFrame)
		if err != nil {
			g.kick(s, services.KickBadFrame, err.Error())
			continue
		}
		g.handle(s, &packet{id: f.ID, payload: f.Payload})
	}
}

// wsSendLoop writes what the session queues, in order, until the queue
// is ended; then it closes the connection.
func (g *Gate) wsSendLoop(s *session, c *wsConn, done chan struct{}) {
	defer close(done)
	var list []any
	for {
		list = list[:0]
		exit := c.pipe.Pick(&list)
		for _, m := range list {
			g.wsWrite(s, c.ws, m)
		}
		if exit {
			break
		}
	}
	c.ws.Close()
}

func (g *Gate) wsWrite(s *session, ws *websocket.Conn, msg any) {
	deadline := time.Now().Add(g.cfg.WriteTimeout)
	switch m := msg.(type) {
	case *outFrame:
		s.sent(m.n)
		if s.shed.Load() && !m.final {
			return // a slow client: what it did not read is dropped for its reason
		}
		if s.isClosing() {
			deadline = time.Now().Add(closeGrace)
		}
		ws.SetWriteDeadline(deadline)
		if err := ws.WriteMessage(websocket.BinaryMessage, m.data[wire.LenSize:]); err != nil {
			ws.Close() // the read loop sees it and ends the session
		}
	case *closeFrame:
		code := websocket.ClosePolicyViolation
		if m.code == services.KickShutdown {
			code = websocket.CloseGoingAway
		}
		reason := m.code + ": " + m.reason
		if len(reason) > 120 { // close frames carry at most 123 bytes of reason
			reason = reason[:120]
		}
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), deadline)
		time.AfterFunc(closeGrace, func() { ws.Close() })
	}
}

func portOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return fmt.Sprint(ta.Port)
	}
	_, port, _ := net.SplitHostPort(a.String())
	return port
}
