package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/wire"
	"github.com/citadel-go/citadel/services"
	"github.com/gorilla/websocket"
)

// Transports.
const (
	TCP       = "tcp"
	WebSocket = "ws"
)

// Options configure a connection. Zero values are defaults, except Registry.
type Options struct {
	// Registry holds every message the client sends or receives: the client
	// protocol (services.RegisterClient) and the game's messages.
	Registry *framework.Registry
	// Transport is TCP (default) or WebSocket.
	Transport string
	// MaxFrame bounds frames both ways. Default 64 KiB (the gate's default).
	MaxFrame int
	// PushBuffer is how many pushes may wait unread; more are dropped
	// (counted by DroppedPushes). Default 1024.
	PushBuffer int
	// TLS configures wss connections.
	TLS *tls.Config
	// Header is sent with the WebSocket upgrade (e.g. Origin).
	Header http.Header
	// DialTimeout bounds connecting and authenticating. Default 10s.
	DialTimeout time.Duration
	// NoHeartbeat turns off the automatic Ping (tests of idle timeouts).
	NoHeartbeat bool
	// IgnorePushes counts pushes (DroppedPushes) without decoding or
	// delivering them: for idle clients in load tests, which would
	// otherwise spend their CPU decoding what nobody reads. Kicked
	// and Reconnect are still decoded.
	IgnorePushes bool
	// Protocol is the client protocol version sent in Auth. Default
	// services.ProtocolVersion, the version this SDK speaks; set another
	// only to test how a gate answers it.
	Protocol int32
}

// ServerError is an Error reply to a Call.
type ServerError struct {
	Code    string
	Message string
}

func (e *ServerError) Error() string { return fmt.Sprintf("server error %s: %s", e.Code, e.Message) }

// KickedError says why the gate closed the connection.
type KickedError struct {
	Code   string // services.Kick*
	Reason string
}

func (e *KickedError) Error() string { return fmt.Sprintf("kicked (%s): %s", e.Code, e.Reason) }

// ErrClosed is returned after Close.
var ErrClosed = errors.New("client: connection closed")

// Conn is an authenticated connection to a gate. When the gate drains it
// sends Reconnect: the Conn finishes the requests in flight, connects to
// the gate named there, resumes the player and carries on; callers notice
// only a short pause (Moves counts these).
type Conn struct {
	opts    Options
	reg     *framework.Registry
	player  uint64
	resumed bool

	wmu    sync.Mutex           // held by writers, and by a move to another gate
	link   atomic.Pointer[link] // the current connection (changed under wmu; readLoop has its own)
	wbuf   []byte
	closed atomic.Bool
	moving atomic.Bool
	moves  atomic.Uint64

	seq     atomic.Uint32
	pmu     sync.Mutex
	pending map[uint32]*call

	pushes  chan any
	dropped atomic.Uint64
	rtt     atomic.Int64

	done    chan struct{}
	errOnce sync.Once
	err     error
}

type result struct {
	msg any
	err error
}

// call is a request waiting for its reply; sent once it is on the wire.
type call struct {
	ch   chan result
	sent bool
}

// link is one transport connection to a gate.
type link struct {
	tcp net.Conn
	ws  *websocket.Conn
	// retired: replaced by a connection to another gate; its end is not
	// the Conn's.
	retired atomic.Bool
}

func (l *link) close() {
	if l.tcp != nil {
		l.tcp.Close()
	} else {
		l.ws.Close()
	}
}

// dial opens a transport connection to a gate.
func dial(ctx context.Context, opts Options, gate, tcpAddr, wsURL string) (*link, error) {
	switch opts.Transport {
	case TCP:
		if tcpAddr == "" {
			return nil, fmt.Errorf("client: gate %s has no TCP listener", gate)
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", tcpAddr)
		if err != nil {
			return nil, err
		}
		return &link{tcp: conn}, nil
	case WebSocket:
		if wsURL == "" {
			return nil, fmt.Errorf("client: gate %s has no WebSocket listener", gate)
		}
		d := websocket.Dialer{TLSClientConfig: opts.TLS, HandshakeTimeout: opts.DialTimeout}
		conn, _, err := d.DialContext(ctx, wsURL, opts.Header)
		if err != nil {
			return nil, err
		}
		conn.SetReadLimit(int64(opts.MaxFrame))
		return &link{ws: conn}, nil
	}
	return nil, fmt.Errorf("client: unknown transport %q", opts.Transport)
}

// Connect dials the gate in a login response and authenticates with its
// ticket.
func Connect(ctx context.Context, lr *services.LoginResponse, opts Options) (*Conn, error) {
	if opts.Registry == nil {
		return nil, errors.New("client: Options.Registry is required")
	}
	if opts.Transport == "" {
		opts.Transport = TCP
	}
	if opts.MaxFrame <= 0 {
		opts.MaxFrame = 64 << 10
	}
	if opts.PushBuffer <= 0 {
		opts.PushBuffer = 1024
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 10 * time.Second
	}
	if opts.Protocol == 0 {
		opts.Protocol = services.ProtocolVersion
	}
	ctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
	defer cancel()
	c := &Conn{opts: opts, reg: opts.Registry, pending: make(map[uint32]*call),
		pushes: make(chan any, opts.PushBuffer), done: make(chan struct{})}
	l, err := dial(ctx, opts, lr.Gate.Node, lr.Gate.TCP, lr.Gate.WS)
	if err != nil {
		return nil, err
	}
	c.link.Store(l)
	go c.readLoop(l)
	r, err := c.Call(ctx, &services.Auth{Ticket: lr.Ticket, Protocol: opts.Protocol})
	if err != nil {
		c.Close()
		var se *ServerError
		if errors.As(err, &se) {
			// The gate's answer (e.g. ErrCodeProtocol: update the client)
			// says more than the close that follows it.
			return nil, err
		}
		if kicked := c.Err(); kicked != nil && !errors.Is(kicked, ErrClosed) {
			return nil, kicked
		}
		return nil, err
	}
	ok, isOK := r.(*services.AuthOK)
	if !isOK {
		c.Close()
		return nil, fmt.Errorf("client: expected AuthOK, got %T", r)
	}
	c.player, c.resumed = ok.PlayerID, ok.Resumed
	if !opts.NoHeartbeat && ok.HeartbeatMs > 0 {
		go c.heartbeat(time.Duration(ok.HeartbeatMs) * time.Millisecond)
	}
	return c, nil
}

// PlayerID is the authenticated player.
func (c *Conn) PlayerID() uint64 { return c.player }

// Resumed reports whether the player's actor was resumed (reconnect within
// its grace period) rather than started.
func (c *Conn) Resumed() bool { return c.resumed }

// Pushes delivers messages the server sent without a request.
func (c *Conn) Pushes() <-chan any { return c.pushes }

// Moves counts the times the Conn moved to another gate (Reconnect).
func (c *Conn) Moves() uint64 { return c.moves.Load() }

// DroppedPushes counts pushes dropped because Pushes was not read.
func (c *Conn) DroppedPushes() uint64 { return c.dropped.Load() }

// RTT is the last heartbeat round trip.
func (c *Conn) RTT() time.Duration { return time.Duration(c.rtt.Load()) }

// Done is closed when the connection ends; Err says why.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the connection ended: a *KickedError if the gate closed it
// with a reason, ErrClosed after Close, or the transport error.
func (c *Conn) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Send sends msg without waiting for an answer.
func (c *Conn) Send(msg any) error { return c.write(0, msg) }

// Call sends msg and waits for the reply with the same seq. An Error reply
// is returned as *ServerError.
func (c *Conn) Call(ctx context.Context, msg any) (any, error) {
	seq := c.nextSeq()
	ch := make(chan result, 1)
	c.pmu.Lock()
	c.pending[seq] = &call{ch: ch}
	c.pmu.Unlock()
	defer func() {
		c.pmu.Lock()
		delete(c.pending, seq)
		c.pmu.Unlock()
	}()
	if err := c.write(seq, msg); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r.msg, r.err
	case <-c.done:
		return nil, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *Conn) nextSeq() uint32 {
	seq := c.seq.Add(1)
	if seq == 0 {
		seq = c.seq.Add(1)
	}
	return seq
}

func (c *Conn) write(seq uint32, msg any) error {
	id, body, err := c.reg.Marshal(msg)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = wire.AppendPayload(c.wbuf[:0], seq, body)
	if err := c.writeFrameLocked(c.link.Load(), id, c.wbuf); err != nil {
		return err
	}
	if seq != 0 {
		c.pmu.Lock()
		if p := c.pending[seq]; p != nil {
			p.sent = true
		}
		c.pmu.Unlock()
	}
	return nil
}

func (c *Conn) writeFrameLocked(l *link, id framework.MsgID, payload []byte) error {
	if c.closed.Load() {
		return ErrClosed
	}
	var err error
	if l.tcp != nil {
		var frame []byte
		if frame, err = wire.AppendTCP(make([]byte, 0, wire.LenSize+wire.IDSize+len(payload)), id, payload, c.opts.MaxFrame); err == nil {
			l.tcp.SetWriteDeadline(time.Now().Add(10 * time.Second))
			_, err = l.tcp.Write(frame)
		}
	} else {
		var msg []byte
		if msg, err = wire.AppendWS(nil, id, payload, c.opts.MaxFrame); err == nil {
			l.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
			err = l.ws.WriteMessage(websocket.BinaryMessage, msg)
		}
	}
	return err
}

func (c *Conn) readLoop(l *link) {
	var (
		err error
		br  *bufio.Reader
		buf []byte
	)
	if l.tcp != nil {
		br = bufio.NewReaderSize(l.tcp, 16<<10)
	}
	for {
		var f wire.Frame
		if br != nil {
			f, buf, err = wire.ReadTCP(br, c.opts.MaxFrame, buf)
		} else {
			var kind int
			var msg []byte
			if kind, msg, err = l.ws.ReadMessage(); err == nil {
				if kind != websocket.BinaryMessage {
					err = fmt.Errorf("client: unexpected WebSocket message type %d", kind)
				} else {
					f, err = wire.DecodeWS(msg, c.opts.MaxFrame)
				}
			}
		}
		if err != nil {
			break
		}
		if c.opts.IgnorePushes && f.ID != services.IDKicked && f.ID != services.IDReconnect {
			if seq, _, serr := wire.SplitPayload(f.Payload); serr == nil && seq == 0 {
				c.dropped.Add(1)
				continue
			}
		}
		seq, msg, _, derr := wire.Decode(c.reg, f.ID, f.Payload)
		if derr != nil {
			err = fmt.Errorf("client: frame %d from the server does not decode: %w", f.ID, derr)
			break
		}
		if k, ok := msg.(*services.Kicked); ok {
			err = &KickedError{Code: k.Code, Reason: k.Reason}
			break
		}
		if r, ok := msg.(*services.Reconnect); ok && seq == 0 {
			go c.move(l, r)
			continue
		}
		if seq == 0 {
			select {
			case c.pushes <- msg:
			default:
				c.dropped.Add(1)
			}
			continue
		}
		c.pmu.Lock()
		p := c.pending[seq]
		c.pmu.Unlock()
		if p == nil {
			continue // the caller gave up
		}
		if e, ok := msg.(*services.Error); ok {
			p.ch <- result{err: &ServerError{Code: e.Code, Message: e.Message}}
		} else {
			p.ch <- result{msg: msg}
		}
	}
	for c.moving.Load() { // a move under way decides whether this end matters
		time.Sleep(5 * time.Millisecond)
	}
	if l.retired.Load() {
		return // moved to another gate: this connection's end is no news
	}
	if c.closed.Load() {
		err = ErrClosed
	}
	// A close frame with a reason is the gate closing the session; 1006
	// is gorilla's name for a connection that ended without one (the
	// server died or the network failed), which is no kick.
	var ce *websocket.CloseError
	if errors.As(err, &ce) && ce.Code != websocket.CloseNormalClosure && ce.Code != websocket.CloseAbnormalClosure {
		err = &KickedError{Code: closeCode(ce.Text), Reason: ce.Text}
	}
	c.finish(err)
}

// closeCode extracts "code" from a close reason "code: reason".
func closeCode(text string) string {
	for i := 0; i < len(text); i++ {
		if text[i] == ':' {
			return text[:i]
		}
	}
	return text
}

func (c *Conn) finish(err error) {
	c.errOnce.Do(func() {
		c.err = err
		c.closed.Store(true)
		c.link.Load().close()
		close(c.done)
	})
}

// moveWait bounds how long a move to another gate waits for the replies
// to requests already sent on the old connection.
const moveWait = 5 * time.Second

// move follows a Reconnect from the gate of link from: requests sent so
// far are answered on the old connection; new ones wait until the player
// is resumed on the new gate, then go there. If the new gate cannot be
// reached, the Conn stays on the old one (which closes when its gate
// stops; the caller logs in again then, as without a Reconnect).
func (c *Conn) move(from *link, r *services.Reconnect) {
	if !c.moving.CompareAndSwap(false, true) {
		return
	}
	defer c.moving.Store(false)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.link.Load() != from || c.closed.Load() {
		return
	}
	for deadline := time.Now().Add(moveWait); c.inFlight() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.DialTimeout)
	defer cancel()
	l, err := dial(ctx, c.opts, r.Gate, r.TCP, r.WS)
	if err != nil {
		return
	}
	go c.readLoop(l)
	seq := c.nextSeq()
	ch := make(chan result, 1)
	c.pmu.Lock()
	c.pending[seq] = &call{ch: ch, sent: true}
	c.pmu.Unlock()
	defer func() {
		c.pmu.Lock()
		delete(c.pending, seq)
		c.pmu.Unlock()
	}()
	_, body, err := c.reg.Marshal(&services.Auth{Ticket: r.Ticket, Protocol: c.opts.Protocol})
	if err == nil {
		err = c.writeFrameLocked(l, services.IDAuth, wire.AppendPayload(nil, seq, body))
	}
	var res result
	if err == nil {
		select {
		case res = <-ch:
		case <-ctx.Done():
			res.err = ctx.Err()
		}
	}
	if _, ok := res.msg.(*services.AuthOK); err != nil || res.err != nil || !ok {
		l.retired.Store(true)
		l.close()
		return
	}
	c.link.Store(l)
	from.retired.Store(true)
	from.close()
	c.moves.Add(1)
}

// inFlight counts the requests sent and not answered yet.
func (c *Conn) inFlight() int {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	n := 0
	for _, p := range c.pending {
		if p.sent {
			n++
		}
	}
	return n
}

func (c *Conn) heartbeat(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), every)
			start := time.Now()
			_, err := c.Call(ctx, &services.Ping{ClientTime: start.UnixMilli()})
			cancel()
			if err == nil {
				c.rtt.Store(int64(time.Since(start)))
			}
		}
	}
}

// Close ends the connection (a WebSocket gets a normal close frame first).
func (c *Conn) Close() error {
	c.wmu.Lock()
	if l := c.link.Load(); l.ws != nil && !c.closed.Load() {
		l.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
			time.Now().Add(time.Second))
	}
	c.closed.Store(true)
	c.wmu.Unlock()
	c.finish(ErrClosed)
	return nil
}
