package gate

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"sync"
	"time"
	"unsafe"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/wire"
	"github.com/citadel-go/citadel/services"
	"github.com/davyxu/cellnet"
	"github.com/davyxu/cellnet/proc"
	"github.com/davyxu/golog"
	"github.com/gorilla/websocket"

	_ "github.com/davyxu/cellnet/peer/gorillaws" // registers gorillaws.Acceptor
	_ "github.com/davyxu/cellnet/peer/tcp"       // registers tcp.Acceptor
)

// What the transmitters hand to the session callback.
type (
	// packet is one inbound frame.
	packet struct {
		id      framework.MsgID
		payload []byte
	}
	// inboundProblem is a frame the transmitter could not accept; the
	// callback kicks the session with it.
	inboundProblem struct {
		code, reason string
	}
)

// What the session sends through cellnet's send queue.
type (
	// outFrame is a whole TCP frame; WebSocket sends it without the length.
	outFrame struct {
		s    *session
		data []byte
	}
	// closeFrame ends the session after everything queued before it: TCP
	// half-closes (the client reads the Kicked frame, then EOF); WebSocket
	// sends a close frame.
	closeFrame struct {
		code, reason string
	}
)

const (
	procTCP = "citadel.tcp"
	procWS  = "citadel.ws"
	// wsIDBase keeps WebSocket session IDs apart from TCP ones (both
	// cellnet acceptors count from 1).
	wsIDBase = 1 << 40
	// closeGrace is how long a kicked client has to read its Kicked frame
	// and close before the gate closes the connection itself.
	closeGrace = 2 * time.Second
	// keptReadBuf is the largest per-session frame buffer kept between
	// frames; larger frames get a temporary one.
	keptReadBuf = 512
	// readAhead is the per-session read buffer: a typical frame arrives in
	// one read syscall instead of two (length, then the rest).
	readAhead = 512
)

var registerOnce sync.Once

// registerCellnet registers Citadel's processors (cellnet keeps them in a
// global table) and quiets cellnet's loggers, which default to debug on
// stdout and log every WebSocket client that leaves without a close frame
// as an error.
func registerCellnet() {
	registerOnce.Do(func() {
		golog.SetLevelByString(".", "error")
		golog.SetOutput("gorillaws", io.Discard)
		golog.SetOutput("tcppeer", io.Discard)
		proc.RegisterProcessor(procTCP, func(b proc.ProcessorBundle, cb cellnet.EventCallback, args ...interface{}) {
			b.SetTransmitter(&tcpTransmitter{g: args[0].(*Gate)})
			b.SetCallback(cb)
		})
		proc.RegisterProcessor(procWS, func(b proc.ProcessorBundle, cb cellnet.EventCallback, args ...interface{}) {
			b.SetTransmitter(&wsTransmitter{g: args[0].(*Gate)})
			b.SetCallback(cb)
		})
	})
}

// readDeadline is the deadline for the next frame: the auth timeout before
// Auth, three heartbeats after.
func (g *Gate) readDeadline(s *session) time.Time {
	if s.state.Load() < stateActive {
		return time.Now().Add(g.cfg.AuthTimeout)
	}
	return time.Now().Add(3 * g.cfg.Heartbeat)
}

// readProblem turns a read error into a kick reason, or returns nil for a
// connection that simply ended.
func (g *Gate) readProblem(s *session, err error) *inboundProblem {
	var ne net.Error
	switch {
	case errors.Is(err, wire.ErrTooLarge):
		return &inboundProblem{services.KickFrameTooLarge, err.Error()}
	case errors.Is(err, wire.ErrShort):
		return &inboundProblem{services.KickBadFrame, err.Error()}
	case errors.As(err, &ne) && ne.Timeout() && !s.isClosing():
		if s.state.Load() < stateActive {
			return &inboundProblem{services.KickNotAuthenticated, fmt.Sprintf("no Auth frame within %v", g.cfg.AuthTimeout)}
		}
		return &inboundProblem{services.KickIdle, fmt.Sprintf("no frame for %v (send Ping every %v)", 3*g.cfg.Heartbeat, g.cfg.Heartbeat)}
	}
	return nil
}

type tcpTransmitter struct{ g *Gate }

func (t *tcpTransmitter) OnRecvMessage(ses cellnet.Session) (interface{}, error) {
	conn, _ := ses.Raw().(net.Conn)
	s := t.g.session(ses, "tcp")
	if conn == nil {
		t.g.cleanup(s)
		return nil, io.EOF
	}
	if s.isClosing() {
		// Kicked: drain until the client closes or closeGrace ends it.
		io.Copy(io.Discard, conn)
		t.g.cleanup(s)
		return nil, io.EOF
	}
	conn.SetReadDeadline(t.g.readDeadline(s))
	if s.reader == nil {
		s.reader = bufio.NewReaderSize(conn, readAhead)
	}
	f, buf, err := wire.ReadTCP(s.reader, t.g.cfg.MaxFrame, s.readBuf)
	if cap(buf) <= keptReadBuf {
		s.readBuf = buf[:0]
	}
	if err != nil {
		if p := t.g.readProblem(s, err); p != nil {
			return p, nil
		}
		t.g.cleanup(s)
		return nil, err
	}
	return &packet{id: f.ID, payload: f.Payload}, nil
}

func (t *tcpTransmitter) OnSendMessage(ses cellnet.Session, msg interface{}) error {
	conn, _ := ses.Raw().(net.Conn)
	if conn == nil {
		return nil
	}
	// A deadline per write guards against a client that stopped reading;
	// moving it costs a timer update, so it moves only when a quarter of
	// WriteTimeout has gone by (writes run on one goroutine per session).
	if s := sessionOf(msg); s != nil {
		if now := time.Now(); now.Sub(s.writeDeadlineSet) > t.g.cfg.WriteTimeout/4 {
			conn.SetWriteDeadline(now.Add(t.g.cfg.WriteTimeout))
			s.writeDeadlineSet = now
		}
	} else {
		conn.SetWriteDeadline(time.Now().Add(t.g.cfg.WriteTimeout))
	}
	switch m := msg.(type) {
	case *outFrame:
		m.s.writeMu.Lock()
		defer m.s.writeMu.Unlock()
		m.s.queued.Add(-1)
		if m.s.rest != nil {
			rest := m.s.rest
			m.s.rest = nil
			if _, err := conn.Write(rest); err != nil {
				conn.Close()
				return err
			}
		}
		if len(m.data) == 0 {
			return nil
		}
		if _, err := conn.Write(m.data); err != nil {
			conn.Close() // cellnet ignores send errors; end the session
			return err
		}
	case *closeFrame:
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		time.AfterFunc(closeGrace, ses.Close)
	}
	return nil
}

func sessionOf(msg interface{}) *session {
	if f, ok := msg.(*outFrame); ok {
		return f.s
	}
	return nil
}

type wsTransmitter struct{ g *Gate }

func (t *wsTransmitter) OnRecvMessage(ses cellnet.Session) (interface{}, error) {
	conn, _ := ses.Raw().(*websocket.Conn)
	s := t.g.session(ses, "ws")
	if conn == nil {
		t.g.cleanup(s)
		return nil, io.EOF
	}
	// gorilla's default read limit is none; set it here, on the read goroutine.
	conn.SetReadLimit(int64(t.g.cfg.MaxFrame))
	if s.isClosing() {
		conn.SetReadDeadline(time.Now().Add(closeGrace))
		for {
			if _, _, err := conn.NextReader(); err != nil {
				t.g.cleanup(s)
				return nil, err
			}
		}
	}
	conn.SetReadDeadline(t.g.readDeadline(s))
	kind, msg, err := conn.ReadMessage()
	if err != nil {
		if errors.Is(err, websocket.ErrReadLimit) {
			// gorilla has already sent close 1009 (message too big).
			t.g.kicked(s, services.KickFrameTooLarge, err.Error())
		} else if p := t.g.readProblem(s, err); p != nil {
			return p, nil
		}
		t.g.cleanup(s)
		return nil, err
	}
	if kind != websocket.BinaryMessage {
		return &inboundProblem{services.KickBadFrame, "only binary WebSocket messages are accepted"}, nil
	}
	f, err := wire.DecodeWS(msg, t.g.cfg.MaxFrame)
	if err != nil {
		return &inboundProblem{services.KickBadFrame, err.Error()}, nil
	}
	return &packet{id: f.ID, payload: f.Payload}, nil
}

func (t *wsTransmitter) OnSendMessage(ses cellnet.Session, msg interface{}) error {
	conn, _ := ses.Raw().(*websocket.Conn)
	if conn == nil {
		return nil
	}
	deadline := time.Now().Add(t.g.cfg.WriteTimeout)
	conn.SetWriteDeadline(deadline)
	switch m := msg.(type) {
	case *outFrame:
		m.s.queued.Add(-1)
		if err := conn.WriteMessage(websocket.BinaryMessage, m.data[wire.LenSize:]); err != nil {
			conn.Close()
			return err
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
		conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), deadline)
		time.AfterFunc(closeGrace, func() { conn.Close() })
	}
	return nil
}

// closeWSAcceptor closes the HTTP server behind a cellnet gorillaws
// acceptor. Its Stop method is an empty TODO in the pinned cellnet version,
// so the listener would stay open and keep upgrading connections; the
// server lives in an unexported field, reached here by reflection.
func closeWSAcceptor(p cellnet.Peer) error {
	v := reflect.ValueOf(p)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("gate: unexpected WebSocket acceptor type %T", p)
	}
	f := v.Elem().FieldByName("sv")
	if !f.IsValid() || f.Type() != reflect.TypeOf((*httpServer)(nil)) {
		return fmt.Errorf("gate: cellnet's WebSocket acceptor has no sv *http.Server field (cellnet version changed?)")
	}
	srv := reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Interface().(*httpServer)
	if srv == nil {
		return nil
	}
	return srv.Close()
}
