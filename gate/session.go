package gate

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/ticket"
	"github.com/citadel-go/citadel/framework/wire"
	"github.com/citadel-go/citadel/services"
	"github.com/davyxu/cellnet"
	"github.com/davyxu/cellnet/util"
	"golang.org/x/time/rate"
)

// Session states, in order.
const (
	stateNew       int32 = iota // connected, no Auth yet
	stateAttaching              // ticket accepted, waiting for the game node
	stateActive                 // attached to the player's actor
)

// sender queues what a session sends for its connection's send goroutine:
// cellnet's TCP session, or the gate's own WebSocket connection.
type sender interface{ Send(msg any) }

// session is one client connection, from accept to close: it is never
// re-created for the same connection, and once closing nothing is read
// from the connection but what is discarded before it closes. Inbound work
// runs on the connection's read goroutine; outbound work on the sessions
// actor.
type session struct {
	id          uint64
	out         sender
	transport   string
	remote      string
	slot        *slot     // its place under the connection caps
	authBy      time.Time // Auth must have arrived by then
	state       atomic.Int32
	closing     atomic.Bool
	shed        atomic.Bool  // kicked as slow: queued frames are dropped, only the reason goes out
	queued      atomic.Int32 // frames in the send queue
	queuedBytes atomic.Int64 // and their bytes
	limiter     rate.Limiter
	reader      *bufio.Reader // TCP only
	readBuf     []byte

	writeDeadlineSet time.Time // owned by the session's write goroutine

	// writeMu is held by whoever writes to the connection: the send
	// goroutine, or a sender writing a frame straight to the socket
	// (writeNow). rest is the unsent end of a frame a straight write could
	// not finish; the send goroutine writes it before anything else.
	writeMu sync.Mutex
	rest    []byte
	raw     syscall.RawConn // TCP only: for non-blocking straight writes

	// Set before state becomes active, read-only after.
	player uint64

	// mu orders activation against frames that arrive for an attaching
	// session: they wait in held and go out right after AuthOK. It also
	// guards the player's actor (it changes when the player moves to
	// another game node) and the client requests held meanwhile, so that
	// requests reach each actor in the order the client sent them.
	mu           sync.Mutex
	held         [][]byte
	heldBytes    int
	actor        framework.Addr
	cur          atomic.Pointer[framework.Addr] // actor, for readers without mu
	holding      bool                           // client requests wait in heldReqs
	heldReqs     []*services.ClientRequest
	heldReqBytes int
	holdSince    time.Time
	moving       bool   // the actor asked for a hold to hand the player off
	moveGen      uint64 // tells a handoff's timer from a later one's
	reattaching  bool

	cleanOnce sync.Once
	groups    []string // owned by the sessions actor
}

func (s *session) isClosing() bool { return s.closing.Load() }

// newSession registers a new connection's session. A connection the caps
// refuse (sl == nil) gets a session too, kicked at once with the reason.
func (g *Gate) newSession(id uint64, out sender, transport, remote string, sl *slot, refused string) *session {
	s := &session{id: id, out: out, transport: transport, remote: remote, slot: sl, authBy: time.Now().Add(g.cfg.AuthTimeout)}
	s.limiter = *rate.NewLimiter(g.cfg.MsgRate, g.cfg.MsgBurst)
	g.sessions.Store(id, s)
	g.m.sessions.WithLabelValues(transport, "pending").Inc()
	switch {
	case refused != "":
		g.refuse(s, refused)
	case g.stopping.Load():
		g.kick(s, services.KickShutdown, "the server is shutting down")
	}
	return s
}

// refuse closes a connection over a cap with a reason and counts it.
func (g *Gate) refuse(s *session, why string) {
	g.m.refused.WithLabelValues(why).Inc()
	reason := fmt.Sprintf("the gate has %d connections (its limit)", g.cfg.MaxConns)
	if why == refusedMaxPending {
		reason = fmt.Sprintf("the gate has %d connections waiting to log in (its limit)", g.cfg.MaxPending)
	}
	g.kick(s, services.KickServerFull, reason+"; retry shortly")
}

func remoteAddr(ses cellnet.Session) string {
	addr, _ := util.GetRemoteAddrss(ses)
	return addr
}

// onEvent is cellnet's callback for TCP connections; it runs on the
// connection's read goroutine.
func (g *Gate) onEvent(ev cellnet.Event) {
	v, ok := g.conns.Load(uint64(ev.Session().ID()))
	if !ok {
		return
	}
	s := v.(*session)
	switch m := ev.Message().(type) {
	case *packet:
		g.handle(s, m)
	case *inboundProblem:
		g.kick(s, m.code, m.reason)
	case *cellnet.SessionClosed:
		g.conns.Delete(s.id)
		g.cleanup(s)
		s.slot.release()
	}
}

// handle takes one inbound frame (and must never let a panic reach the
// transport: cellnet would end the process).
func (g *Gate) handle(s *session, p *packet) {
	defer func() {
		if r := recover(); r != nil {
			g.log.Error("gate session handler panicked", "session", s.id, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			g.kick(s, services.KickBadFrame, "internal error handling the frame")
		}
	}()
	if !s.isClosing() {
		g.onPacket(s, p)
	}
}

func (g *Gate) onPacket(s *session, p *packet) {
	if s.state.Load() == stateNew {
		// Authentication (ticket check, the Attach call) runs deep; on a
		// short-lived goroutine it cannot grow the stack of the session's
		// long-lived read goroutine, which an idle session would otherwise
		// carry for as long as it stays connected.
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer func() {
				if r := recover(); r != nil {
					g.log.Error("gate auth panicked", "session", s.id, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
					g.kick(s, services.KickBadFrame, "internal error handling Auth")
				}
			}()
			g.authenticate(s, p)
		}()
		<-done
		return
	}
	if !s.limiter.Allow() {
		g.kick(s, services.KickRateLimited, fmt.Sprintf("more than %v frames/s", g.cfg.MsgRate))
		return
	}
	if c := g.inCounters[p.id]; c != nil {
		c.Inc()
	}
	switch {
	case p.id == services.IDPing:
		seq, msg, _, err := wire.Decode(g.cfg.Registry, p.id, p.payload)
		if err != nil {
			g.kick(s, services.KickBadPayload, err.Error())
			return
		}
		g.sendTo(s, seq, &services.Pong{ClientTime: msg.(*services.Ping).ClientTime, ServerTime: time.Now().UnixMilli()})
	case p.id >= 100 && p.id < 200:
		g.kick(s, services.KickUnknownMessage, fmt.Sprintf("message %d is not sent by clients", p.id))
	default:
		seq, _, body, err := wire.Decode(g.cfg.Registry, p.id, p.payload)
		if errors.Is(err, framework.ErrUnregistered) {
			g.kick(s, services.KickUnknownMessage, fmt.Sprintf("unknown message ID %d", p.id))
			return
		}
		if err != nil {
			g.kick(s, services.KickBadPayload, err.Error())
			return
		}
		g.forward(s, &services.ClientRequest{SessionID: s.id, Seq: seq, MsgID: p.id, Payload: body})
	}
}

// authenticate handles the first frame: it must be Auth with a valid,
// unused ticket for this gate; then the player's actor is attached.
func (g *Gate) authenticate(s *session, p *packet) {
	if p.id != services.IDAuth {
		g.m.auths.WithLabelValues("not_auth").Inc()
		g.kick(s, services.KickNotAuthenticated, fmt.Sprintf("the first frame must be Auth (message %d), got message %d", services.IDAuth, p.id))
		return
	}
	seq, msg, _, err := wire.Decode(g.cfg.Registry, p.id, p.payload)
	if err != nil {
		g.m.auths.WithLabelValues("bad_payload").Inc()
		g.kick(s, services.KickBadPayload, err.Error())
		return
	}
	auth := msg.(*services.Auth)
	if v := auth.Protocol; v < services.MinProtocolVersion || v > services.ProtocolVersion {
		// A clear answer, not a kick: the reply to the Auth says what to
		// update, then the connection closes (a session cannot start). The
		// ticket is not used up.
		g.m.auths.WithLabelValues("protocol").Inc()
		reason := protocolMismatch(v)
		g.sendTo(s, seq, &services.Error{Code: services.ErrCodeProtocol, Message: reason})
		g.closeQuietly(s, services.ErrCodeProtocol, reason)
		return
	}
	now := time.Now()
	t, err := g.cfg.Tickets.Verify(auth.Ticket, g.node.Addr().Node, now)
	if err == nil {
		err = g.guard.Use(t, now)
	}
	if err != nil {
		code := services.KickBadTicket
		switch {
		case errors.Is(err, ticket.ErrExpired):
			code = services.KickTicketExpired
		case errors.Is(err, ticket.ErrReused):
			code = services.KickTicketReused
		}
		g.m.auths.WithLabelValues(code).Inc()
		g.kick(s, code, err.Error())
		return
	}
	s.state.Store(stateAttaching)
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.AttachTimeout)
	defer cancel()
	var r any
	// A game node that leaves while it is asked (it crashed; this gate
	// learns it a heartbeat later than others) is no answer: ask the node
	// the player maps to now.
	for {
		member, ok := g.node.Members().Pick(services.Game, strconv.FormatUint(t.PlayerID, 10))
		if !ok {
			g.m.auths.WithLabelValues("no_game").Inc()
			g.kick(s, services.KickUnavailable, "no game node is online")
			return
		}
		manager := framework.Addr{Service: services.Game, Node: member.Node, Actor: services.GameActorManager}
		r, err = g.node.Call(ctx, manager, &services.Attach{PlayerID: t.PlayerID,
			Session: services.SessionRef{Gate: g.self, Incarnation: g.node.Incarnation(), ID: s.id}})
		var re *framework.RemoteError
		draining := errors.As(err, &re) && re.Code == services.ErrCodeDraining
		if !errors.Is(err, framework.ErrNodeLeft) && !errors.Is(err, framework.ErrNodeUnknown) && !draining {
			break
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		g.m.auths.WithLabelValues("attach_failed").Inc()
		g.kick(s, services.KickUnavailable, fmt.Sprintf("the game node could not take the player: %v", err))
		return
	}
	att, ok := r.(*services.Attached)
	if !ok { // cannot come from a game node; never trust a reply's type
		g.m.auths.WithLabelValues("attach_failed").Inc()
		g.kick(s, services.KickUnavailable, fmt.Sprintf("the game node answered Attach with %T", r))
		return
	}
	s.player = t.PlayerID
	s.setActor(att.Actor)
	if s.isClosing() { // kicked while attaching (e.g. shutdown): let the actor know
		g.node.Send(att.Actor, &services.Detach{PlayerID: s.player, Incarnation: g.node.Incarnation(), SessionID: s.id})
		return
	}
	g.activate(s, seq, att.Resumed)
	s.slot.authenticated()
	g.m.auths.WithLabelValues("ok").Inc()
}

// protocolMismatch explains a refused client protocol version.
func protocolMismatch(v int32) string {
	accepts := fmt.Sprintf("version %d", services.ProtocolVersion)
	if services.MinProtocolVersion != services.ProtocolVersion {
		accepts = fmt.Sprintf("versions %d to %d", services.MinProtocolVersion, services.ProtocolVersion)
	}
	switch {
	case v <= 0:
		return fmt.Sprintf("the client sent no protocol version (Auth.Protocol is 0: it predates versioning); this server accepts client protocol %s: update the client", accepts)
	case v < services.MinProtocolVersion:
		return fmt.Sprintf("client protocol version %d is too old; this server accepts client protocol %s: update the client", v, accepts)
	default:
		return fmt.Sprintf("client protocol version %d is newer than this server's; it accepts client protocol %s: update the server, or use a client of protocol %d", v, accepts, services.ProtocolVersion)
	}
}

// activate sends AuthOK, then whatever the game already pushed, then opens
// the session for direct delivery.
func (g *Gate) activate(s *session, seq uint32, resumed bool) {
	s.mu.Lock()
	g.sendTo(s, seq, &services.AuthOK{PlayerID: s.player, Resumed: resumed, HeartbeatMs: int32(g.cfg.Heartbeat.Milliseconds())})
	for _, f := range s.held {
		g.enqueue(s, f, true)
	}
	s.held, s.heldBytes = nil, 0
	s.state.Store(stateActive)
	s.mu.Unlock()
	g.m.sessions.WithLabelValues(s.transport, "pending").Dec()
	g.m.sessions.WithLabelValues(s.transport, "active").Inc()
	g.node.Members().SetLoad(g.active.Add(1))
}

// deliver sends a frame built by the sessions actor; frames for a session
// still attaching wait until AuthOK has gone out. direct is as for
// enqueue; the sessions actor clears it for one frame going to many
// sessions, so a push to thousands of clients goes through their send
// queues instead of holding up replies behind a socket write per client.
func (g *Gate) deliver(s *session, data []byte, direct bool) {
	if s.state.Load() != stateActive {
		s.mu.Lock()
		if s.state.Load() != stateActive {
			if len(s.held) < g.cfg.SendQueue && s.heldBytes+len(data) <= g.cfg.SendQueueBytes {
				s.held = append(s.held, data)
				s.heldBytes += len(data)
			} else {
				g.m.dropped.Inc()
			}
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
	g.enqueue(s, data, direct)
}

// sendTo encodes msg for one session with seq.
func (g *Gate) sendTo(s *session, seq uint32, msg any) {
	id, body, err := g.node.Registry().Marshal(msg)
	if err != nil {
		g.log.Error("cannot encode frame", "type", fmt.Sprintf("%T", msg), "err", err)
		return
	}
	data, err := frameData(id, seq, body, g.cfg.MaxFrame)
	if err != nil {
		g.log.Error("frame too large for client", "type", fmt.Sprintf("%T", msg), "err", err)
		return
	}
	g.enqueue(s, data, true)
}

// frameData builds a frame once for either transport: the TCP frame
// (u32 length, msgID, payload [seq, body]); the WebSocket message is the
// same bytes without the length (data[wire.LenSize:]).
func frameData(id framework.MsgID, seq uint32, body []byte, max int) ([]byte, error) {
	n := wire.IDSize + 6 + len(body) // upper bound: ID, [seq] header, body
	if n > max+4 {
		n = max + 4
	}
	buf := make([]byte, wire.LenSize, wire.LenSize+n)
	buf, err := wire.AppendWS(buf, id, wire.AppendPayload(make([]byte, 0, 6+len(body)), seq, body), max)
	if err != nil {
		return nil, err
	}
	binary.BigEndian.PutUint32(buf, uint32(len(buf)-wire.LenSize))
	return buf, nil
}

// enqueue sends a frame to the session. With direct set and nothing
// queued for a TCP session, the frame is written straight to its socket
// without waiting, which spares a wake-up of cellnet's send goroutine per
// frame; otherwise it goes on the session's send queue, and a client that
// lets that queue fill up is disconnected rather than allowed to slow the
// gate.
func (g *Gate) enqueue(s *session, data []byte, direct bool) {
	if s.isClosing() {
		g.m.dropped.Inc()
		return
	}
	if direct && s.raw != nil && s.queued.Load() == 0 && s.writeMu.TryLock() {
		if s.queued.Load() == 0 && s.rest == nil {
			if s.isClosing() { // kicked meanwhile: nothing may follow Kicked
				g.m.dropped.Inc()
			} else {
				g.writeNow(s, data)
			}
			s.writeMu.Unlock()
			return
		}
		s.writeMu.Unlock()
	}
	if !g.reserve(s, len(data)) {
		return
	}
	g.m.outQueued.Inc()
	s.out.Send(&outFrame{s: s, data: data, n: len(data)})
}

// reserve counts n bytes (one frame) into the session's send queue, or
// disconnects a client that let the queue fill up in frames or bytes.
func (g *Gate) reserve(s *session, n int) bool {
	frames, size := int(s.queued.Add(1)), s.queuedBytes.Add(int64(n))
	if frames <= g.cfg.SendQueue && size <= int64(g.cfg.SendQueueBytes) {
		return true
	}
	s.queued.Add(-1)
	s.queuedBytes.Add(-int64(n))
	s.shed.Store(true)
	g.kick(s, services.KickSlowClient, fmt.Sprintf("the client did not read %d queued frames (%d bytes)", frames-1, size-int64(n)))
	return false
}

// sent uncounts a frame of n bytes the send goroutine has written.
func (s *session) sent(n int) {
	s.queued.Add(-1)
	s.queuedBytes.Add(-int64(n))
}

// writeNow writes a frame to the socket from the caller's goroutine with
// one non-blocking write. What the socket does not take now (its buffer is
// full) becomes s.rest, which the send goroutine writes before anything
// queued after it, with the usual write timeout. The caller holds
// s.writeMu and nothing is queued.
func (g *Gate) writeNow(s *session, data []byte) {
	var n int
	var werr error
	err := s.raw.Write(func(fd uintptr) bool {
		for {
			n, werr = syscall.Write(int(fd), data)
			if werr != syscall.EINTR {
				return true // done: never wait for the socket here
			}
		}
	})
	if err == nil && werr == syscall.EAGAIN {
		n, werr = 0, nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The send goroutine's write deadline has passed since it last
		// wrote (RawConn.Write then fails before writing): the socket is
		// fine; the send goroutine writes the frame with a fresh deadline.
		n, err = 0, nil
	}
	if err != nil || werr != nil { // the connection is gone; its reader ends the session
		if c, ok := s.out.(cellnet.Session).Raw().(net.Conn); ok {
			c.Close()
		}
		return
	}
	if n == len(data) {
		g.m.outDirect.Inc()
		return
	}
	g.m.outSplit.Inc()
	s.rest = data[n:]
	s.queued.Add(1)
	s.queuedBytes.Add(int64(len(s.rest)))
	s.out.Send(&outFrame{s: s, n: len(s.rest)}) // wakes the send goroutine for rest
}

// kick tells the client why, then closes the session: once, whoever asks.
func (g *Gate) kick(s *session, code, reason string) {
	if !s.closing.CompareAndSwap(false, true) {
		return
	}
	g.m.kicks.WithLabelValues(code).Inc()
	g.logClose(s, "session kicked", code, reason)
	if id, body, err := g.node.Registry().Marshal(&services.Kicked{Code: code, Reason: reason}); err == nil {
		if data, err := frameData(id, 0, body, g.cfg.MaxFrame); err == nil {
			s.queued.Add(1)
			s.queuedBytes.Add(int64(len(data)))
			s.out.Send(&outFrame{s: s, data: data, n: len(data), final: true})
		}
	}
	s.out.Send(&closeFrame{code: code, reason: reason})
	g.cleanup(s)
}

// closeQuietly closes a connection that never became a session once what
// is queued for it (the Error that says why) is written: no Kicked frame,
// no kick counted.
func (g *Gate) closeQuietly(s *session, code, reason string) {
	if !s.closing.CompareAndSwap(false, true) {
		return
	}
	g.logClose(s, "connection refused", code, reason)
	s.out.Send(&closeFrame{code: code, reason: reason})
	g.cleanup(s)
}

// logClose logs why a session closed: at info for players, at debug (and
// rate limited) for connections that never logged in, which an attacker
// can open by the thousand.
func (g *Gate) logClose(s *session, msg, code, reason string) {
	if s.state.Load() == stateNew {
		if suppressed, ok := g.closeLog.Allow(); ok {
			g.log.Debug(msg, "session", s.id, "remote", s.remote, "code", code, "reason", reason, "suppressed_since_last", suppressed)
		}
		return
	}
	g.log.Info(msg, "session", s.id, "remote", s.remote, "player", s.player, "code", code, "reason", reason)
}

// kicked records a session the transport closed itself with a reason.
func (g *Gate) kicked(s *session, code, reason string) {
	if s.closing.CompareAndSwap(false, true) {
		g.m.kicks.WithLabelValues(code).Inc()
		g.logClose(s, "session closed", code, reason)
	}
}

// cleanup forgets a session once: the player's actor is told (it starts its
// grace period) and the sessions actor drops the session's groups.
func (g *Gate) cleanup(s *session) {
	s.cleanOnce.Do(func() {
		s.closing.Store(true)
		g.sessions.Delete(s.id)
		if s.state.Load() == stateActive {
			g.m.sessions.WithLabelValues(s.transport, "active").Dec()
			g.node.Members().SetLoad(g.active.Add(-1))
			if err := g.node.Send(s.actorOf(), &services.Detach{PlayerID: s.player, Incarnation: g.node.Incarnation(), SessionID: s.id}); err != nil {
				g.log.Warn("cannot tell the player actor its session closed", "player", s.player, "err", err)
			}
		} else {
			g.m.sessions.WithLabelValues(s.transport, "pending").Dec()
		}
		g.node.Send(g.self, &sessionGone{s: s})
	})
}
