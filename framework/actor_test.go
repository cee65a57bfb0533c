package framework

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citadel-go/citadel/mq"
)

func TestLocalSendIsOrderedAndSurvivesPanics(t *testing.T) {
	n := newNode(t, nil, "game", "g1", nil)
	got := make(chan int, 1000)
	var started atomic.Int32
	a, err := n.Spawn("counter", func() Actor {
		return ActorFunc(func(c *Context) {
			switch m := c.Message().(type) {
			case Started:
				started.Add(1)
			case *Seq:
				if m.N%10 == 5 {
					panic("boom on " + m.From)
				}
				got <- m.N
			}
		})
	}, SpawnOptions{Kind: "counter"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if err := n.Send(a, &Seq{From: "t", N: i}); err != nil {
			t.Fatal(err)
		}
	}
	want := 0
	for want < 100 {
		if want%10 == 5 {
			want++
			continue
		}
		if g := receive(t, got, 2*time.Second); g != want {
			t.Fatalf("got %d, want %d (out of order)", g, want)
		}
		want++
	}
	eventually(t, time.Second, "panic count", func() bool { return n.Stats().Kinds["counter"].Panics == 10 })
	if s := started.Load(); s != 1 {
		t.Fatalf("default policy should keep the instance (Started %d times)", s)
	}
	if err := n.Send(a, Seq{N: 1}); !errors.Is(err, ErrUnregistered) {
		t.Fatalf("value message should be refused as unregistered, got %v", err)
	}
	if err := n.Send(a, &Unreg{}); !errors.Is(err, ErrUnregistered) {
		t.Fatalf("unregistered type should be an error at Send, got %v", err)
	}
	if err := n.Send(n.ActorAddr("nobody"), &Ping{}); !errors.Is(err, ErrActorNotFound) {
		t.Fatalf("missing actor: got %v", err)
	}
	if n.Stats().DeadLetters != 1 {
		t.Fatalf("dead letters = %d, want 1", n.Stats().DeadLetters)
	}
}

func TestRestartOnPanic(t *testing.T) {
	n := newNode(t, nil, "game", "g1", nil)
	var instances atomic.Int32
	out := make(chan int32, 10)
	a, _ := n.Spawn("r", func() Actor {
		id := instances.Add(1)
		return ActorFunc(func(c *Context) {
			switch c.Message().(type) {
			case *Boom:
				panic("boom")
			case *Ping:
				out <- id
			}
		})
	}, SpawnOptions{RestartOnPanic: true})
	n.Send(a, &Ping{})
	n.Send(a, &Boom{})
	n.Send(a, &Ping{})
	if first, second := <-out, <-out; first != 1 || second != 2 {
		t.Fatalf("instances %d then %d, want 1 then 2", first, second)
	}
}

// gated spawns an actor that blocks on its first *Ping until release is closed,
// then records every Seq it handles.
func gated(t *testing.T, n *Node, name string, opts SpawnOptions) (Addr, chan struct{}, chan int) {
	release := make(chan struct{})
	handled := make(chan int, 100)
	blocked := make(chan struct{})
	a, err := n.Spawn(name, func() Actor {
		return ActorFunc(func(c *Context) {
			switch m := c.Message().(type) {
			case *Ping:
				close(blocked)
				<-release
			case *Seq:
				handled <- m.N
			}
		})
	}, opts)
	if err != nil {
		t.Fatal(err)
	}
	n.Send(a, &Ping{})
	<-blocked
	return a, release, handled
}

func TestMailboxOverflowPolicies(t *testing.T) {
	n := newNode(t, nil, "game", "g1", nil)

	t.Run("reject", func(t *testing.T) {
		a, release, handled := gated(t, n, "reject", SpawnOptions{Kind: "rej", MailboxSize: 3})
		for i := 0; i < 3; i++ {
			if err := n.Send(a, &Seq{N: i}); err != nil {
				t.Fatal(err)
			}
		}
		if err := n.Send(a, &Seq{N: 3}); !errors.Is(err, ErrMailboxFull) {
			t.Fatalf("4th message into a mailbox of 3: got %v", err)
		}
		if _, err := n.Call(context.Background(), a, &Seq{N: 4}); !errors.Is(err, ErrMailboxFull) {
			t.Fatalf("call into a full mailbox: got %v", err)
		}
		close(release)
		for i := 0; i < 3; i++ {
			if g := <-handled; g != i {
				t.Fatalf("handled %d, want %d", g, i)
			}
		}
		if o := n.Stats().Kinds["rej"].Overflow; o != 2 {
			t.Fatalf("overflow counted %d, want 2", o)
		}
	})

	t.Run("drop_oldest", func(t *testing.T) {
		a, release, handled := gated(t, n, "dropper", SpawnOptions{Kind: "drop", MailboxSize: 3, Overflow: OverflowDropOldest})
		for i := 0; i < 5; i++ {
			if err := n.Send(a, &Seq{N: i}); err != nil {
				t.Fatal(err)
			}
		}
		close(release)
		for _, want := range []int{2, 3, 4} {
			if g := <-handled; g != want {
				t.Fatalf("handled %d, want %d (oldest should be dropped)", g, want)
			}
		}
		if o := n.Stats().Kinds["drop"].Overflow; o != 2 {
			t.Fatalf("overflow counted %d, want 2", o)
		}
	})

	t.Run("block", func(t *testing.T) {
		a, release, handled := gated(t, n, "blocker", SpawnOptions{Kind: "block", MailboxSize: 1, Overflow: OverflowBlock})
		n.Send(a, &Seq{N: 0})
		sent := make(chan error)
		go func() { sent <- n.Send(a, &Seq{N: 1}) }()
		select {
		case err := <-sent:
			t.Fatalf("Send into a full blocking mailbox returned early: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		close(release)
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		if a, b := <-handled, <-handled; a != 0 || b != 1 {
			t.Fatalf("handled %d, %d", a, b)
		}
		if o := n.Stats().Kinds["block"].Overflow; o != 0 {
			t.Fatalf("blocking policy should lose nothing, overflow %d", o)
		}
	})
}

func TestLocalCall(t *testing.T) {
	n := newNode(t, nil, "game", "g1", nil)
	later := make(chan *Responder, 1)
	a, _ := n.Spawn("svc", func() Actor {
		return ActorFunc(func(c *Context) {
			switch m := c.Message().(type) {
			case *Ping:
				switch m.N {
				case 1:
					c.Reply(&Pong{N: 2})
				case 2:
					c.ReplyError(NewError("not_enough_gold", "need 10"))
				case 3:
					// no reply
				case 4:
					panic("kaboom")
				case 5:
					r, _ := c.Responder()
					later <- r
				case 6:
					time.Sleep(200 * time.Millisecond)
					c.Reply(&Pong{})
				}
			}
		})
	}, SpawnOptions{})
	ctx := context.Background()

	if r, err := n.Call(ctx, a, &Ping{N: 1}); err != nil || r.(*Pong).N != 2 {
		t.Fatalf("reply: %v %v", r, err)
	}
	_, err := n.Call(ctx, a, &Ping{N: 2})
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != "not_enough_gold" {
		t.Fatalf("error reply: %v", err)
	}
	if _, err := n.Call(ctx, a, &Ping{N: 3}); !errors.Is(err, ErrNoReply) {
		t.Fatalf("no reply: %v", err)
	}
	if _, err := n.Call(ctx, a, &Ping{N: 4}); !errors.Is(err, ErrPanic) || !strings.Contains(err.Error(), "kaboom") {
		t.Fatalf("panic: %v", err)
	}
	go func() { r := <-later; time.Sleep(10 * time.Millisecond); r.Reply(&Pong{N: 5}) }()
	if r, err := n.Call(ctx, a, &Ping{N: 5}); err != nil || r.(*Pong).N != 5 {
		t.Fatalf("deferred reply: %v %v", r, err)
	}
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = n.Call(tctx, a, &Ping{N: 6})
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v", err)
	}
	eventually(t, time.Second, "late reply counted", func() bool { return n.Stats().LateReplies == 1 })
	if s := n.Stats(); s.CallTimeouts != 1 {
		t.Fatalf("call timeouts %d", s.CallTimeouts)
	}
	if _, err := n.Call(ctx, n.ActorAddr("ghost"), &Ping{}); !errors.Is(err, ErrActorNotFound) {
		t.Fatalf("call to a missing actor: %v", err)
	}
}

func TestTimersAndStop(t *testing.T) {
	n := newNode(t, nil, "game", "g1", nil)
	ticks := make(chan string, 100)
	stopped := make(chan struct{})
	var every *Timer
	a, _ := n.Spawn("timed", func() Actor {
		return ActorFunc(func(c *Context) {
			switch m := c.Message().(type) {
			case Started:
				if _, err := c.SendAfter(10*time.Millisecond, &Pong{N: 1}); err != nil {
					t.Error(err)
				}
				var err error
				if every, err = c.Every(5*time.Millisecond, &Tick{}); err != nil {
					t.Error(err)
				}
				if _, err := c.SendAfter(time.Millisecond, &Unreg{}); !errors.Is(err, ErrUnregistered) {
					t.Errorf("timer with unregistered message: %v", err)
				}
			case *Pong:
				ticks <- "once"
			case *Tick:
				ticks <- "tick"
			case *Ping:
				c.Stop()
			case Stopped:
				close(stopped)
			default:
				_ = m
			}
		})
	}, SpawnOptions{})
	once, repeats := 0, 0
	deadline := time.After(2 * time.Second)
	for once == 0 || repeats < 5 {
		select {
		case s := <-ticks:
			if s == "once" {
				once++
			} else {
				repeats++
			}
		case <-deadline:
			t.Fatalf("once=%d repeats=%d", once, repeats)
		}
	}
	n.Send(a, &Ping{})
	<-stopped
	time.Sleep(30 * time.Millisecond)
	for len(ticks) > 0 {
		if s := <-ticks; s == "once" {
			t.Fatal("one-shot timer fired twice")
		}
	}
	time.Sleep(30 * time.Millisecond)
	if len(ticks) != 0 {
		t.Fatalf("timer kept firing after the actor stopped (%d ticks)", len(ticks))
	}
	every.Stop() // stopping again is harmless
	if err := n.Send(a, &Ping{}); !errors.Is(err, ErrActorNotFound) {
		t.Fatalf("send to stopped actor: %v", err)
	}
	if _, err := n.Spawn("timed", func() Actor { return ActorFunc(func(*Context) {}) }, SpawnOptions{}); err != nil {
		t.Fatalf("the name should be free after stop: %v", err)
	}
}

func TestChildrenStopWithParent(t *testing.T) {
	n := newNode(t, nil, "game", "g1", nil)
	childStopped := make(chan struct{})
	parentReady := make(chan Addr, 1)
	parent, _ := n.Spawn("parent", func() Actor {
		return ActorFunc(func(c *Context) {
			if _, ok := c.Message().(Started); ok {
				a, err := c.Spawn("child", func() Actor {
					return ActorFunc(func(c *Context) {
						if _, ok := c.Message().(Stopped); ok {
							close(childStopped)
						}
					})
				}, SpawnOptions{})
				if err != nil {
					t.Error(err)
				}
				parentReady <- a
			}
		})
	}, SpawnOptions{})
	child := <-parentReady
	if _, err := n.Spawn("child", func() Actor { return ActorFunc(func(*Context) {}) }, SpawnOptions{}); !errors.Is(err, ErrActorExists) {
		t.Fatalf("duplicate name: %v", err)
	}
	if err := n.StopActor(context.Background(), parent); err != nil {
		t.Fatal(err)
	}
	select {
	case <-childStopped:
	case <-time.After(time.Second):
		t.Fatal("child did not stop with its parent")
	}
	if err := n.Send(child, &Ping{}); !errors.Is(err, ErrActorNotFound) {
		t.Fatalf("child should be gone: %v", err)
	}
}

func TestInlineActor(t *testing.T) {
	broker := startBroker(t, mq.BrokerConfig{})
	n := newNode(t, broker, "gate", "g1", nil)
	src := newNode(t, broker, "game", "s1", nil)
	var order []int
	var mu sync.Mutex
	stopped := make(chan struct{})
	callErr := make(chan error, 1)
	a, err := n.Spawn("inline", func() Actor {
		return ActorFunc(func(c *Context) {
			switch m := c.Message().(type) {
			case *Seq:
				mu.Lock()
				order = append(order, m.N)
				mu.Unlock()
			case *Boom:
				panic("inline boom")
			case *Ping:
				_, err := c.Call(context.Background(), c.Self(), &Ping{})
				callErr <- err
				c.Reply(&Pong{N: m.N})
			case Stopped:
				close(stopped)
			}
		})
	}, SpawnOptions{Inline: true, Kind: "inline"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if err := src.Send(a, &Seq{N: i}); err != nil { // remote: handled on n's inbound goroutine
			t.Fatal(err)
		}
	}
	n.Send(a, &Boom{}) // recovered; the actor carries on
	r, err := src.Call(context.Background(), a, &Ping{N: 9})
	if err != nil || r.(*Pong).N != 9 {
		t.Fatalf("call into an inline actor: %v %v", r, err)
	}
	if err := <-callErr; err == nil || !strings.Contains(err.Error(), "inline") {
		t.Fatalf("Call from an inline actor should be refused, got %v", err)
	}
	mu.Lock()
	for i, v := range order {
		if v != i {
			t.Fatalf("inline actor saw %v", order)
		}
	}
	if len(order) != 50 {
		t.Fatalf("inline actor saw %d of 50", len(order))
	}
	mu.Unlock()
	if s := n.Stats().Kinds["inline"]; s.Panics != 1 || s.Handled < 51 {
		t.Fatalf("stats %+v", s)
	}
	if err := n.StopActor(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	<-stopped
	if err := n.Send(a, &Seq{}); !errors.Is(err, ErrActorNotFound) {
		t.Fatalf("send after stop: %v", err)
	}
}

// An inline actor that sends to itself from its handler (directly, or
// through a Kick-style cleanup) queues the message instead of deadlocking.
func TestInlineSelfSend(t *testing.T) {
	n := newNode(t, nil, "gate", "g1", nil)
	got := make(chan int, 10)
	var self Addr
	self, _ = n.Spawn("loop", func() Actor {
		return ActorFunc(func(c *Context) {
			if m, ok := c.Message().(*Seq); ok {
				got <- m.N
				if m.N < 3 {
					if err := n.Send(self, &Seq{N: m.N + 1}); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}, SpawnOptions{Inline: true})
	n.Send(self, &Seq{N: 0})
	for want := 0; want <= 3; want++ {
		if g := receive(t, got, time.Second); g != want {
			t.Fatalf("got %d, want %d", g, want)
		}
	}
}

// An idle actor holds no goroutine: each burst of messages runs on a
// goroutine that exits when the mailbox is empty. Messages are still
// handled one at a time and in each sender's order across those
// goroutines.
func TestIdleActorsHoldNoGoroutine(t *testing.T) {
	n := newNode(t, nil, "game", "g1", nil)
	const actors, senders, perSender = 300, 4, 50
	base := runtime.NumGoroutine()
	type seen struct {
		busy atomic.Int32
		next [senders]int // next N expected from each sender
	}
	var handled, overlaps, outOfOrder atomic.Int64
	addrs := make([]Addr, actors)
	for i := range addrs {
		s := &seen{}
		a, err := n.Spawn(fmt.Sprintf("a%d", i), func() Actor {
			return ActorFunc(func(c *Context) {
				m, ok := c.Message().(*Seq)
				if !ok {
					return
				}
				if !s.busy.CompareAndSwap(0, 1) {
					overlaps.Add(1)
				}
				from, _ := strconv.Atoi(m.From)
				if m.N != s.next[from] {
					outOfOrder.Add(1)
				}
				s.next[from] = m.N + 1
				runtime.Gosched() // give a second goroutine the chance to overlap
				s.busy.Store(0)
				handled.Add(1)
			})
		}, SpawnOptions{})
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = a
	}
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perSender; i++ {
				for _, a := range addrs {
					if err := n.Send(a, &Seq{From: strconv.Itoa(s), N: i}); err != nil {
						t.Error(err)
						return
					}
				}
				if i%10 == 0 {
					time.Sleep(time.Millisecond) // let actors go idle between bursts
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, 30*time.Second, "every message handled", func() bool { return handled.Load() == actors*senders*perSender })
	if o := overlaps.Load(); o != 0 {
		t.Fatalf("%d messages were handled while another of the same actor was", o)
	}
	if o := outOfOrder.Load(); o != 0 {
		t.Fatalf("%d messages were handled out of their sender's order", o)
	}
	eventually(t, 30*time.Second, "idle actors' goroutines gone", func() bool { return runtime.NumGoroutine() < base+actors/10 })

	// An idle actor still stops (a goroutine runs its Stopped) and its
	// timers with it.
	stopped, ready := make(chan struct{}), make(chan struct{})
	a, err := n.Spawn("timed", func() Actor {
		return ActorFunc(func(c *Context) {
			switch c.Message().(type) {
			case Started:
				var ts []*Timer
				for i := 0; i < 6; i++ {
					tm, err := c.SendAfter(time.Hour, &Tick{})
					if err != nil {
						t.Error(err)
					}
					ts = append(ts, tm)
				}
				ts[0].Stop()
				ts[3].Stop()
				ts[5].Stop()
				close(ready)
			case Stopped:
				close(stopped)
			}
		})
	}, SpawnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := n.procs.Load("timed")
	p := v.(*process)
	receive(t, ready, 10*time.Second)
	p.mu.Lock()
	running := 0
	for tm := p.timers; tm != nil; tm = tm.next {
		running++
	}
	p.mu.Unlock()
	if running != 3 {
		t.Fatalf("%d timers listed as running, want 3 (6 started, 3 stopped)", running)
	}
	if err := n.StopActor(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	<-stopped
	p.mu.Lock()
	left := p.timers
	p.mu.Unlock()
	if left != nil {
		t.Fatal("timers still listed after the actor stopped")
	}
}
