package gate

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/wire"
	"github.com/citadel-go/citadel/services"
	"github.com/davyxu/cellnet"
	"github.com/davyxu/cellnet/proc"
	"github.com/davyxu/golog"

	_ "github.com/davyxu/cellnet/peer/tcp" // registers tcp.Acceptor
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
	// n is what it counts in the session's queued bytes (data, or the
	// unsent rest of a frame written straight to the socket).
	outFrame struct {
		s     *session
		data  []byte
		n     int
		final bool // the Kicked frame: the one frame written after a kick
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
	// wsIDBase keeps WebSocket session IDs apart from TCP ones (cellnet's
	// acceptor counts from 1).
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

// registerCellnet registers Citadel's TCP processor (cellnet keeps them in
// a global table) and quiets cellnet's loggers, which default to debug on
// stdout.
func registerCellnet() {
	registerOnce.Do(func() {
		golog.SetLevelByString(".", "error")
		golog.SetOutput("tcppeer", io.Discard)
		proc.RegisterProcessor(procTCP, func(b proc.ProcessorBundle, cb cellnet.EventCallback, args ...interface{}) {
			b.SetTransmitter(&tcpTransmitter{g: args[0].(*Gate)})
			b.SetCallback(cb)
		})
	})
}

// readDeadline is the deadline for the next frame: AuthTimeout after the
// connection opened until it has logged in (however slowly its bytes
// trickle in), three heartbeats after.
func (g *Gate) readDeadline(s *session) time.Time {
	if s.state.Load() < stateActive {
		return s.authBy
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

// tcpSession returns the session of a cellnet TCP connection, creating it
// on the first call (from the read goroutine: cellnet may run the first
// read before its accept callback). It stays bound to the connection
// until cellnet reports it closed, so a closed session is never replaced
// by a new one for the same connection.
func (g *Gate) tcpSession(ses cellnet.Session) *session {
	id := uint64(ses.ID())
	if v, ok := g.conns.Load(id); ok {
		return v.(*session)
	}
	sl, refused := g.admission.admit()
	s := g.newSession(id, ses, "tcp", remoteAddr(ses), sl, refused)
	if sc, ok := ses.Raw().(syscall.Conn); ok {
		s.raw, _ = sc.SyscallConn()
	}
	g.conns.Store(id, s)
	return s
}

func (t *tcpTransmitter) OnRecvMessage(ses cellnet.Session) (interface{}, error) {
	conn, _ := ses.Raw().(net.Conn)
	s := t.g.tcpSession(ses)
	if conn == nil {
		return nil, io.EOF
	}
	if s.isClosing() {
		// Closed with a reason: let the client read it, discarding what it
		// still sends, until it closes or closeGrace has passed. No frame is
		// read from this connection again.
		conn.SetReadDeadline(time.Now().Add(closeGrace))
		io.Copy(io.Discard, conn)
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
			return p, nil // kicked by onEvent; the next call discards
		}
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
	// A closing session gets closeGrace for its last frames.
	if s := sessionOf(msg); s != nil && s.isClosing() {
		conn.SetWriteDeadline(time.Now().Add(closeGrace))
	} else if s != nil {
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
		m.s.sent(m.n)
		if m.s.rest != nil {
			rest := m.s.rest
			m.s.rest = nil
			if _, err := conn.Write(rest); err != nil {
				conn.Close()
				return err
			}
		}
		if len(m.data) == 0 || m.s.shed.Load() && !m.final {
			return nil // a slow client: what it did not read is dropped for its reason
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
