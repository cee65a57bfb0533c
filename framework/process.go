package framework

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// process is a running actor: its mailbox, its goroutine and its timers.
type process struct {
	node     *Node
	addr     Addr
	producer Producer
	actor    Actor
	opts     SpawnOptions
	kind     *kindStats
	log      *slog.Logger
	parent   *process

	mailbox *mailbox // nil for inline actors
	cur     envelope // the message being handled (kept here so it does not escape per message)

	// Inline actors: senders append to inlineQ; whoever finds nobody
	// draining drains it, one message at a time, outside the lock.
	inlineMu    sync.Mutex
	inlineQ     []envelope
	draining    bool
	stopDrained bool         // stop requested while draining: exit when done
	pending     atomic.Int64 // messages queued or being handled
	stopping    atomic.Bool
	done        chan struct{}
	ctx         Context

	mu       sync.Mutex // guards timers and children
	timers   map[*Timer]struct{}
	children map[*process]struct{}
}

// enqueue puts env in the mailbox, applying the overflow policy; an
// inline actor handles it right here.
func (p *process) enqueue(env envelope) error {
	if p.stopping.Load() {
		p.node.stats.deadLetters.Add(1)
		return fmt.Errorf("framework: %s is stopping: %w", p.addr, ErrActorNotFound)
	}
	if p.opts.Inline {
		return p.enqueueInline(env)
	}
	p.pending.Add(1)
	switch p.opts.Overflow {
	case OverflowDropOldest:
		if old, ok := p.mailbox.pushDropOldest(env); ok {
			p.pending.Add(-1)
			p.kind.overflow.Add(1)
			p.failDropped(old, ErrMailboxFull)
		}
		return nil
	case OverflowBlock:
		if !p.mailbox.pushWait(env, p.done) {
			p.pending.Add(-1)
			p.node.stats.deadLetters.Add(1)
			return fmt.Errorf("framework: %s stopped: %w", p.addr, ErrActorNotFound)
		}
		return nil
	default:
		if p.mailbox.push(env, false) == pushFull {
			p.pending.Add(-1)
			p.kind.overflow.Add(1)
			return fmt.Errorf("framework: %s (%d queued): %w", p.addr, p.opts.MailboxSize, ErrMailboxFull)
		}
		return nil
	}
}

// enqueueInline queues env and, if no goroutine is draining the queue,
// drains it on this one. A handler that sends to its own actor (directly or
// through others) only queues: the drain loop gets to it next, so there is
// no deadlock and no sender ever waits for a handler.
func (p *process) enqueueInline(env envelope) error {
	p.inlineMu.Lock()
	if p.stopping.Load() {
		p.inlineMu.Unlock()
		p.node.stats.deadLetters.Add(1)
		return fmt.Errorf("framework: %s is stopping: %w", p.addr, ErrActorNotFound)
	}
	if len(p.inlineQ) >= p.opts.MailboxSize {
		p.inlineMu.Unlock()
		p.kind.overflow.Add(1)
		return fmt.Errorf("framework: %s (%d queued): %w", p.addr, p.opts.MailboxSize, ErrMailboxFull)
	}
	p.pending.Add(1)
	p.inlineQ = append(p.inlineQ, env)
	if p.draining {
		p.inlineMu.Unlock()
		return nil
	}
	p.draining = true
	p.drainLocked()
	return nil
}

// drainLocked handles queued messages until none are left; it is entered
// with inlineMu held and returns with it released.
func (p *process) drainLocked() {
	for len(p.inlineQ) > 0 {
		p.cur = p.inlineQ[0]
		p.inlineQ[0] = envelope{}
		p.inlineQ = p.inlineQ[1:]
		p.inlineMu.Unlock()
		p.invoke(&p.cur)
		p.cur = envelope{}
		p.pending.Add(-1)
		p.inlineMu.Lock()
	}
	p.inlineQ = p.inlineQ[:0]
	p.draining = false
	exit := p.stopDrained
	p.inlineMu.Unlock()
	if exit {
		p.exit()
	}
}

// stopInline stops an inline actor once no handler is running.
func (p *process) stopInline() {
	p.inlineMu.Lock()
	if p.draining {
		p.stopDrained = true
		p.inlineMu.Unlock()
		return
	}
	p.draining = true // nobody else may run handlers now
	p.inlineMu.Unlock()
	go p.exit()
}

// failDropped answers a request that will never be handled, so its caller
// fails now instead of at its deadline.
func (p *process) failDropped(env envelope, err error) {
	if env.req != nil {
		_ = p.node.reply(env.req, p.addr, nil, toRemoteError(fmt.Errorf("%s: %w", p.addr, err)))
	}
}

func (p *process) run() {
	defer p.exit()
	p.invoke(&envelope{msg: Started{}})
	var batch [16]envelope
	for !p.stopping.Load() {
		k := p.mailbox.pop(batch[:])
		for i := 0; i < k; i++ {
			env := &batch[i]
			if env.sys == sysStop {
				continue
			}
			if p.stopping.Load() {
				p.pending.Add(-1)
				p.node.stats.deadLetters.Add(1)
				p.failDropped(*env, ErrActorNotFound)
			} else {
				p.cur = *env // invoke keeps a pointer; batch stays on the stack
				p.invoke(&p.cur)
				p.cur = envelope{}
				p.pending.Add(-1)
			}
			*env = envelope{} // let the message be collected
		}
	}
}

// invoke handles one message, recovering a panic so the actor survives it.
func (p *process) invoke(env *envelope) {
	c := &p.ctx
	c.env, c.replied, c.detached = env, false, false
	defer func() {
		if r := recover(); r != nil {
			p.onPanic(env, r)
		}
		c.env = nil
	}()
	p.actor.Receive(c)
	p.kind.handled.Add(1)
	if env.req != nil && !c.replied && !c.detached {
		_ = p.node.reply(env.req, p.addr, nil, &RemoteError{Code: CodeNoReply,
			Message: fmt.Sprintf("%s returned without replying to %T", p.addr, env.msg)})
	}
}

func (p *process) onPanic(env *envelope, r any) {
	p.kind.panics.Add(1)
	p.log.Error("actor handler panicked; recovered", "msg_type", fmt.Sprintf("%T", env.msg),
		"sender", env.from.String(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	if env.req != nil && !p.ctx.replied && !p.ctx.detached {
		_ = p.node.reply(env.req, p.addr, nil, &RemoteError{Code: CodePanic,
			Message: fmt.Sprintf("%s panicked handling %T: %v", p.addr, env.msg, r)})
	}
	if p.opts.RestartOnPanic && p.producer != nil {
		p.log.Warn("restarting actor after panic")
		p.actor = p.producer()
		p.invoke(&envelope{msg: Started{}})
	}
}

// stop asks the actor to stop after its current message.
func (p *process) stop() {
	if p.stopping.Swap(true) {
		return
	}
	if p.opts.Inline {
		p.stopInline()
		return
	}
	p.mailbox.push(envelope{sys: sysStop}, true)
}

func (p *process) exit() {
	p.inlineMu.Lock()
	for _, env := range p.inlineQ {
		p.pending.Add(-1)
		p.node.stats.deadLetters.Add(1)
		p.failDropped(env, ErrActorNotFound)
	}
	p.inlineQ = nil
	p.inlineMu.Unlock()
	// Messages left in the mailbox are dead letters.
	if p.mailbox != nil {
		for _, env := range p.mailbox.drain() {
			if env.sys == sysStop {
				continue
			}
			p.pending.Add(-1)
			p.node.stats.deadLetters.Add(1)
			p.failDropped(env, ErrActorNotFound)
		}
	}
	p.mu.Lock()
	timers := p.timers
	p.timers = nil
	children := p.children
	p.children = nil
	p.mu.Unlock()
	for t := range timers {
		t.mu.Lock()
		t.stopped = true
		t.t.Stop()
		t.mu.Unlock()
	}
	for child := range children {
		child.stop()
		<-child.done
	}
	p.invoke(&envelope{msg: Stopped{}})
	if p.parent != nil {
		p.parent.mu.Lock()
		delete(p.parent.children, p)
		p.parent.mu.Unlock()
	}
	p.node.unregister(p)
	close(p.done)
}

func (p *process) startTimer(d time.Duration, msg any, repeat bool) (*Timer, error) {
	if d <= 0 {
		return nil, fmt.Errorf("framework: timer interval %v must be positive", d)
	}
	if _, err := p.node.reg.ID(msg); err != nil {
		return nil, err
	}
	if p.stopping.Load() {
		return nil, fmt.Errorf("framework: %s is stopping: %w", p.addr, ErrActorNotFound)
	}
	t := &Timer{proc: p, d: d, msg: msg, repeat: repeat}
	p.mu.Lock()
	if p.timers == nil {
		p.timers = make(map[*Timer]struct{})
	}
	p.timers[t] = struct{}{}
	p.mu.Unlock()
	t.mu.Lock() // fire waits for t.t to be set
	t.t = time.AfterFunc(d, t.fire)
	t.mu.Unlock()
	return t, nil
}

func (p *process) forgetTimer(t *Timer) {
	p.mu.Lock()
	delete(p.timers, t)
	p.mu.Unlock()
}
