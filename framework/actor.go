package framework

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Actor is the unit of game logic: it receives one message at a time, in
// order, on its own goroutine. It may keep state in its fields without locks.
type Actor interface {
	Receive(ctx *Context)
}

// ActorFunc adapts a function to Actor.
type ActorFunc func(ctx *Context)

// Receive calls f.
func (f ActorFunc) Receive(ctx *Context) { f(ctx) }

// Producer creates an actor instance; it is called again when an actor with
// RestartOnPanic is restarted.
type Producer func() Actor

// Lifecycle messages delivered to every actor by the runtime (they are not
// registered and never cross nodes).
type (
	// Started is the first message an actor receives.
	Started struct{}
	// Stopped is the last message an actor receives; timers are cancelled
	// afterwards and the actor's name becomes free.
	Stopped struct{}
)

// Overflow says what happens when a message arrives at a full mailbox.
type Overflow int

const (
	// OverflowReject refuses the new message: Send returns ErrMailboxFull,
	// a Call fails with it. The default: the sender learns at once.
	OverflowReject Overflow = iota
	// OverflowDropOldest drops the oldest queued message to make room
	// (callers of a dropped request get ErrMailboxFull). For state updates
	// where only the latest matters.
	OverflowDropOldest
	// OverflowBlock makes the sender wait for room. Only for trusted
	// internal producers: a remote sender blocks the node's whole inbound
	// stream until the actor catches up.
	OverflowBlock
)

func (o Overflow) String() string {
	switch o {
	case OverflowReject:
		return "reject"
	case OverflowDropOldest:
		return "drop_oldest"
	case OverflowBlock:
		return "block"
	}
	return fmt.Sprintf("overflow(%d)", int(o))
}

// SpawnOptions configure an actor. Zero values are defaults.
type SpawnOptions struct {
	// Kind groups actors in metrics ("player", "session"). Default "actor".
	Kind string
	// MailboxSize bounds the mailbox. Default: the node's MailboxSize (1024).
	MailboxSize int
	// Overflow is the full-mailbox policy. Default OverflowReject.
	Overflow Overflow
	// RestartOnPanic replaces the actor with a fresh instance from its
	// Producer after a handler panic (it receives Started again). By default
	// the same instance keeps going with the next message.
	RestartOnPanic bool
	// Inline runs the actor without a goroutine or mailbox: each message is
	// handled on the sender's goroutine (for remote senders, the node's
	// inbound goroutine), one at a time under a lock, in each sender's
	// order. It saves a goroutine hand-off per message for actors that only
	// do quick, non-blocking work (routing, counting). An inline actor must
	// not block: Call from it returns an error, and a slow handler holds up
	// every sender. MailboxSize and Overflow do not apply.
	Inline bool
}

type sysKind uint8

const (
	sysNone sysKind = iota
	sysStop
)

// envelope is a message in a mailbox.
type envelope struct {
	from Addr
	msg  any
	req  *request // set for Calls
	sys  sysKind
}

// request identifies the caller waiting for a reply.
type request struct {
	corrID     uint64
	replyTo    Addr   // the calling node
	replyEpoch uint64 // its incarnation, for a remote reply
	deadline   time.Time
}

// Context is what a handler sees of the runtime: the current message, who
// sent it, and ways to send, call, reply, schedule and spawn. It is valid only
// during Receive; use Responder to answer a request later.
type Context struct {
	proc     *process
	env      *envelope
	replied  bool
	detached bool
}

// Self returns the actor's own address.
func (c *Context) Self() Addr { return c.proc.addr }

// Node returns the node hosting the actor.
func (c *Context) Node() *Node { return c.proc.node }

// Logger returns a logger tagged with the actor's address.
func (c *Context) Logger() *slog.Logger { return c.proc.logger() }

// Message returns the message being handled.
func (c *Context) Message() any { return c.env.msg }

// Sender returns the address of the sender; zero for runtime messages.
func (c *Context) Sender() Addr { return c.env.from }

// IsRequest reports whether the current message is a Call awaiting Reply.
func (c *Context) IsRequest() bool { return c.env.req != nil }

// Deadline returns the caller's deadline for the current request.
func (c *Context) Deadline() (time.Time, bool) {
	if c.env.req == nil {
		return time.Time{}, false
	}
	return c.env.req.deadline, true
}

// Send sends msg to an actor, local or remote, with this actor as sender.
func (c *Context) Send(to Addr, msg any) error {
	return c.proc.node.send(c.proc.addr, to, msg)
}

// SendTo sends msg to one incarnation of to's node (Node.SendTo), from this
// actor.
func (c *Context) SendTo(to Addr, incarnation uint64, msg any) error {
	return c.proc.node.sendTo(c.proc.addr, to, incarnation, msg)
}

// Call sends a request and waits for the reply. It blocks this actor (its
// mailbox waits) until the reply or ctx's deadline (default: the node's
// CallTimeout); keep calls from actors short.
func (c *Context) Call(ctx context.Context, to Addr, msg any) (any, error) {
	if c.proc.opts.Inline {
		return nil, fmt.Errorf("framework: %s is inline and must not block: use Send, or a mailbox actor for Call", c.proc.addr)
	}
	return c.proc.node.call(ctx, c.proc.addr, to, msg)
}

// Reply answers the current request.
func (c *Context) Reply(msg any) error {
	if err := c.claimReply(); err != nil {
		return err
	}
	return c.proc.node.reply(c.env.req, c.proc.addr, msg, nil)
}

// ReplyError answers the current request with an error; the caller's Call
// returns it as a *RemoteError.
func (c *Context) ReplyError(err error) error {
	if err := c.claimReply(); err != nil {
		return err
	}
	return c.proc.node.reply(c.env.req, c.proc.addr, nil, toRemoteError(err))
}

func (c *Context) claimReply() error {
	if c.env.req == nil {
		return ErrNotRequest
	}
	if c.replied || c.detached {
		return ErrAlreadyReplied
	}
	c.replied = true
	return nil
}

// Responder lets the actor answer the current request after Receive has
// returned (for example once a store load it started has finished). Without
// one, a request left unanswered is failed with ErrNoReply when Receive returns.
func (c *Context) Responder() (*Responder, error) {
	if c.env.req == nil {
		return nil, ErrNotRequest
	}
	if c.replied || c.detached {
		return nil, ErrAlreadyReplied
	}
	c.detached = true
	return &Responder{node: c.proc.node, from: c.proc.addr, req: c.env.req}, nil
}

// Spawn starts a child actor on this node; it is stopped with its parent.
func (c *Context) Spawn(name string, p Producer, opts SpawnOptions) (Addr, error) {
	return c.proc.node.spawn(c.proc, name, p, opts)
}

// Stop stops this actor once the current message has been handled.
// Messages still queued are counted as dead letters (requests among them
// fail with ErrActorNotFound).
func (c *Context) Stop() { c.proc.stop() }

// SendAfter delivers msg to this actor once, after d.
func (c *Context) SendAfter(d time.Duration, msg any) (*Timer, error) {
	return c.proc.startTimer(d, msg, false)
}

// Every delivers msg to this actor every d until the timer is stopped or
// the actor stops.
func (c *Context) Every(d time.Duration, msg any) (*Timer, error) {
	return c.proc.startTimer(d, msg, true)
}

// Responder answers one request, once, from any goroutine.
type Responder struct {
	node *Node
	from Addr
	req  *request
	once sync.Once
}

// Reply answers the request with msg.
func (r *Responder) Reply(msg any) error {
	err := ErrAlreadyReplied
	r.once.Do(func() { err = r.node.reply(r.req, r.from, msg, nil) })
	return err
}

// Error answers the request with an error.
func (r *Responder) Error(e error) error {
	err := ErrAlreadyReplied
	r.once.Do(func() { err = r.node.reply(r.req, r.from, nil, toRemoteError(e)) })
	return err
}

// Timer is a scheduled delivery to an actor; see Context.SendAfter and
// Context.Every.
type Timer struct {
	proc    *process
	t       *time.Timer
	d       time.Duration
	msg     any
	repeat  bool
	mu      sync.Mutex
	stopped bool

	prev, next *Timer // the actor's list of running timers (guarded by proc.mu)
}

// Stop cancels the timer; a delivery already in the mailbox still arrives.
func (t *Timer) Stop() {
	t.mu.Lock()
	t.stopped = true
	t.t.Stop()
	t.mu.Unlock()
	t.proc.forgetTimer(t)
}

func (t *Timer) fire() {
	t.mu.Lock()
	stopped := t.stopped
	t.mu.Unlock()
	if stopped {
		return
	}
	// The message goes through the mailbox like any other, so it obeys the
	// overflow policy; a full mailbox drops the tick (counted).
	_ = t.proc.enqueue(envelope{from: t.proc.addr, msg: t.msg})
	if !t.repeat {
		t.proc.forgetTimer(t)
		return
	}
	t.mu.Lock()
	if !t.stopped {
		t.t.Reset(t.d)
	}
	t.mu.Unlock()
}
