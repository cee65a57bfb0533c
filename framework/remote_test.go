package framework

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citadel-go/citadel/mq"
	"github.com/citadel-go/citadel/mq/mqtest"
)

// echo replies to *Ping with *Pong{N+1} and records *Seq messages.
func spawnEcho(t testing.TB, n *Node, name string) chan *Seq {
	t.Helper()
	seqs := make(chan *Seq, 100000)
	_, err := n.Spawn(name, func() Actor {
		return ActorFunc(func(c *Context) {
			switch m := c.Message().(type) {
			case *Ping:
				c.Reply(&Pong{N: m.N + 1})
			case *Seq:
				seqs <- m
			}
		})
	}, SpawnOptions{MailboxSize: 100000})
	if err != nil {
		t.Fatal(err)
	}
	return seqs
}

// Must show 1: two nodes exchange Send and Call over the mq; a Call to a
// stopped node fails with a timeout error.
func TestTwoNodesSendAndCallOverMQ(t *testing.T) {
	for _, mode := range []string{"shared broker", "own brokers"} {
		t.Run(mode, func(t *testing.T) {
			b1 := startBroker(t, mq.BrokerConfig{})
			b2 := b1
			if mode == "own brokers" {
				b2 = startBroker(t, mq.BrokerConfig{})
			}
			// With a broker each, a node publishes to its own nsqd and consumes
			// from both (NSQ's producer-local topology).
			both := func(local, other *mq.Broker) func(*NodeConfig) {
				return func(c *NodeConfig) {
					if local == other {
						return
					}
					c.MQ.NSQD = []string{local.TCPAddr(), other.TCPAddr()}
					c.MQ.NSQDHTTP = []string{local.HTTPAddr(), other.HTTPAddr()}
				}
			}
			a := newNode(t, b1, "gate", "gate-1", both(b1, b2))
			b := newNode(t, b2, "game", "game-1", both(b2, b1))
			meet(t, a, b)
			seqs := spawnEcho(t, b, "echo")
			target := b.ActorAddr("echo")

			for i := 1; i <= 20; i++ {
				if err := a.Send(target, &Seq{From: "a", N: i}); err != nil {
					t.Fatal(err)
				}
			}
			for i := 1; i <= 20; i++ {
				m := receive(t, seqs, 5*time.Second)
				if m.N != i {
					t.Fatalf("got seq %d, want %d", m.N, i)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			r, err := a.Call(ctx, target, &Ping{N: 41})
			if err != nil || r.(*Pong).N != 42 {
				t.Fatalf("remote call: %v %v", r, err)
			}
			// Calls the other way round, from an actor.
			echoA := spawnEcho(t, a, "echo")
			_ = echoA
			res := make(chan error, 1)
			b.Spawn("caller", func() Actor {
				return ActorFunc(func(c *Context) {
					if _, ok := c.Message().(Started); ok {
						r, err := c.Call(context.Background(), a.ActorAddr("echo"), &Ping{N: 1})
						if err == nil && r.(*Pong).N != 2 {
							err = fmt.Errorf("got %v", r)
						}
						res <- err
					}
				})
			}, SpawnOptions{})
			if err := receive(t, res, 5*time.Second); err != nil {
				t.Fatalf("actor-to-actor remote call: %v", err)
			}
			if _, err := a.Call(ctx, b.ActorAddr("ghost"), &Ping{}); !errors.Is(err, ErrActorNotFound) {
				t.Fatalf("remote call to a missing actor: %v", err)
			}

			if err := b.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel2()
			_, err = a.Call(ctx2, target, &Ping{N: 1})
			// It said goodbye: once a has heard, there is nobody to address;
			// before, the call times out.
			var te *TimeoutError
			switch {
			case errors.Is(err, ErrNodeUnknown):
			case errors.As(err, &te) && errors.Is(err, ErrTimeout) && errors.Is(err, context.DeadlineExceeded):
				if te.To != target {
					t.Fatalf("timeout error names %v", te.To)
				}
			default:
				t.Fatalf("call to a stopped node: got %v, want ErrNodeUnknown or a timeout", err)
			}
		})
	}
}

// Must show 2: NSQ redelivers (REQ with random delays, duplicates published
// again) and reorders (a tiny memory queue spills to disk); every actor still
// sees every message exactly once, in send order.
func TestOrderingAndDedupUnderRedelivery(t *testing.T) {
	broker := startBroker(t, mq.BrokerConfig{MemQueueSize: 8})
	const senders, receivers, perPair = 4, 3, 150

	rnd := rand.New(rand.NewPCG(1, 2))
	var rndMu sync.Mutex
	var requeued, duplicated int
	errRequeue := errors.New("chaos: redeliver")
	chaos := func(bus **mq.Bus, topic string) func(m *mq.Message) error {
		return func(m *mq.Message) error {
			rndMu.Lock()
			r := rnd.Float64()
			rndMu.Unlock()
			switch {
			case m.Attempts == 1 && r < 0.05:
				rndMu.Lock()
				requeued++
				rndMu.Unlock()
				return errRequeue // nsqd delivers the whole pack again, behind newer messages
			case r > 0.9:
				rndMu.Lock()
				duplicated++
				rndMu.Unlock()
				if err := (*bus).Publish(topic, m.Body); err != nil {
					panic(err)
				}
			}
			return nil
		}
	}
	bc := broker.BusConfig()
	dst, err := NewNode(NodeConfig{Service: "game", ID: "dst", Registry: testRegistry(t), Logger: testLogger(), MQ: &bc,
		GapTimeout: 10 * time.Second, // nothing is really lost here: no gap may be skipped
		// A 1ns requeue delay is sent as 0ms: nsqd puts the message straight
		// back in the queue (not the deferred queue, which it scans late).
		Inbound: mq.SubscribeOptions{MaxInFlight: 64, RequeueDelay: time.Nanosecond}})
	if err != nil {
		t.Fatal(err)
	}
	dst.inboundHook = chaos(&dst.bus, NodeTopic("game", "dst"))
	if err := dst.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dst.Stop(context.Background()) })
	meetPeers(t, broker, dst)

	type rec struct {
		mu   sync.Mutex
		seen map[string][]int
	}
	recs := make([]*rec, receivers)
	for r := 0; r < receivers; r++ {
		rc := &rec{seen: map[string][]int{}}
		recs[r] = rc
		dst.Spawn(fmt.Sprintf("r%d", r), func() Actor {
			return ActorFunc(func(c *Context) {
				if m, ok := c.Message().(*Seq); ok {
					rc.mu.Lock()
					rc.seen[m.From] = append(rc.seen[m.From], m.N)
					rc.mu.Unlock()
				}
			})
		}, SpawnOptions{MailboxSize: 10000})
	}
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		src := newNode(t, broker, "gate", fmt.Sprintf("src%d", s), nil)
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			for i := 1; i <= perPair; i++ {
				for r := 0; r < receivers; r++ {
					if err := src.Send(dst.ActorAddr(fmt.Sprintf("r%d", r)), &Seq{From: src.addr.Node, N: i}); err != nil {
						t.Error(err)
						return
					}
				}
				if i%25 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}(s)
	}
	wg.Wait()
	total := func() int {
		n := 0
		for _, rc := range recs {
			rc.mu.Lock()
			for _, v := range rc.seen {
				n += len(v)
			}
			rc.mu.Unlock()
		}
		return n
	}
	eventually(t, 30*time.Second, "all messages delivered", func() bool { return total() >= senders*receivers*perPair })
	time.Sleep(200 * time.Millisecond) // let late duplicates arrive; they must be dropped
	for r, rc := range recs {
		rc.mu.Lock()
		if len(rc.seen) != senders {
			t.Errorf("receiver %d heard from %d senders, want %d", r, len(rc.seen), senders)
		}
		for from, ns := range rc.seen {
			if len(ns) != perPair {
				t.Errorf("receiver %d from %s: %d messages, want %d exactly once", r, from, len(ns), perPair)
			}
			for i, n := range ns {
				if n != i+1 {
					t.Errorf("receiver %d from %s: position %d holds %d (out of order or duplicate)", r, from, i, n)
					break
				}
			}
		}
		rc.mu.Unlock()
	}
	st := dst.Stats()
	rndMu.Lock()
	t.Logf("requeued %d, duplicated %d; node saw duplicates=%d reordered=%d gaps=%d", requeued, duplicated, st.Duplicates, st.Reordered, st.GapsSkipped)
	if requeued == 0 || duplicated == 0 {
		t.Fatal("chaos did not happen")
	}
	if st.Duplicates < uint64(duplicated) {
		t.Errorf("node dropped %d duplicates, but %d were injected", st.Duplicates, duplicated)
	}
	rndMu.Unlock()
	if st.Reordered == 0 {
		t.Error("no envelope arrived out of order; the test did not exercise reordering")
	}
	if st.GapsSkipped != 0 {
		t.Errorf("%d gaps skipped; nothing was lost", st.GapsSkipped)
	}
}

// A node sends only to incarnations it knows: to a node that is down it
// refuses at once (ErrNodeUnknown) rather than queueing for a process that
// does not exist; the node's next incarnation gets a fresh stream from 1,
// in order, with no wait, while what was sent to the previous one stays
// with it (dropped and counted if it turns up).
func TestRestartedNodeGetsAFreshStream(t *testing.T) {
	dir := t.TempDir()
	broker := startBroker(t, mq.BrokerConfig{DataDir: dir})
	dst := newNode(t, broker, "game", "game-1", nil)
	seqs := spawnEcho(t, dst, "echo")
	src := newNode(t, broker, "gate", "gate-1", nil)
	target := dst.ActorAddr("echo")
	for i := 1; i <= 3; i++ {
		if err := src.Send(target, &Seq{N: i}); err != nil {
			t.Fatal(err)
		}
		receive(t, seqs, 5*time.Second)
	}
	old := dst.epoch
	// Queued for the old incarnation while it stops consuming: kept by
	// NSQ, never for the next process.
	dst.sub.Stop()
	for i := 4; i <= 6; i++ {
		if err := src.Send(target, &Seq{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	src.Bus().Flush(context.Background())
	if err := dst.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the sender to see game-1 leave", func() bool {
		_, ok := src.Members().Get("game", "game-1")
		return !ok
	})
	if err := src.Send(target, &Seq{N: 99}); !errors.Is(err, ErrNodeUnknown) {
		t.Fatalf("send to a node that left: %v, want ErrNodeUnknown", err)
	}

	dst2 := newNode(t, broker, "game", "game-1", nil)
	if dst2.epoch <= old {
		t.Fatalf("incarnation %d after %d", dst2.epoch, old)
	}
	seqs2 := spawnEcho(t, dst2, "echo")
	for i := 1; i <= 50; i++ {
		if err := src.Send(target, &Seq{N: 100 + i}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 50; i++ {
		if got := receive(t, seqs2, 10*time.Second).N; got != 100+i {
			t.Fatalf("after restart position %d holds %d", i, got)
		}
	}
	if w := dst2.Stats().GapWaits; w != 0 {
		t.Fatalf("the new incarnation's stream waited for a gap %d times", w)
	}
	eventually(t, 5*time.Second, "the envelopes for the old incarnation to be dropped", func() bool {
		return dst2.Stats().WrongIncarnation >= 3
	})
	noMore(t, seqs2)
}

// Must show 4: undecodable payloads on a node topic are logged, counted and
// finished (never requeued), and the node keeps serving; oversized messages
// are refused before publish with a clear error.
func TestBadInputOnNodeTopic(t *testing.T) {
	broker := startBroker(t, mq.BrokerConfig{})
	dst := newNode(t, broker, "game", "game-1", nil)
	spawnEcho(t, dst, "echo")
	src := newNode(t, broker, "gate", "gate-1", nil)
	topic := NodeTopic("game", "game-1")

	reg := testRegistry(t)
	valid := func(mut func(*wireEnvelope)) []byte {
		_, payload, _ := reg.Marshal(&Seq{N: 1})
		w := wireEnvelope{Kind: kindSend, From: Addr{"gate", "evil", ""}, To: dst.ActorAddr("echo"), Epoch: 99, Seq: 1, MsgID: 10003, Payload: payload,
			ToEpoch: dst.epoch}
		mut(&w)
		return appendEnvelope(nil, &w)
	}
	bad := [][]byte{
		[]byte("definitely not msgpack"),
		{0xc1},
		{},
		valid(func(w *wireEnvelope) { w.Kind = 9 }),
		valid(func(w *wireEnvelope) { w.To = Addr{"game", "other", "echo"} }),
		valid(func(w *wireEnvelope) { w.MsgID = 4242 }),                 // unknown type
		valid(func(w *wireEnvelope) { w.Payload = []byte{0x92, 0x01} }), // wrong shape
		valid(func(w *wireEnvelope) { w.From.Node = "bad node!" }),
		valid(func(w *wireEnvelope) { w.Seq = 0 }),
	}
	pub := src.Bus()
	for _, b := range bad {
		if len(b) == 0 {
			continue // nsqd refuses empty bodies itself
		}
		if err := pub.Publish(topic, b); err != nil {
			t.Fatal(err)
		}
	}
	wantBad := uint64(len(bad) - 1)
	eventually(t, 5*time.Second, "bad envelopes counted", func() bool { return dst.Stats().BadEnvelopes == wantBad })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if r, err := src.Call(ctx, dst.ActorAddr("echo"), &Ping{N: 1}); err != nil || r.(*Pong).N != 2 {
		t.Fatalf("node stopped serving after bad input: %v %v", r, err)
	}
	// The call's own message may still await its FIN for a moment.
	eventually(t, 5*time.Second, "every message finished", func() bool {
		st, ok := broker.ChannelStats(topic, nodeChannel)
		return ok && st.Depth == 0 && st.InFlight == 0 && st.Deferred == 0
	})
	if st, _ := broker.ChannelStats(topic, nodeChannel); st.Requeues != 0 || st.Timeouts != 0 {
		t.Fatalf("bad messages were requeued: %+v", st)
	}

	// Oversized: refused before publish.
	spied := mqtest.Spy(t, broker.TCPAddr(), broker.HTTPAddr(), topic)
	err := src.Send(dst.ActorAddr("echo"), &Blob{Data: make([]byte, mq.DefaultMaxMsgSize+1)})
	var tooLarge *mq.TooLargeError
	if !errors.As(err, &tooLarge) || !strings.Contains(err.Error(), "-byte limit (BusConfig.MaxMsgSize") {
		t.Fatalf("oversized send: got %v", err)
	}
	if _, err := src.Call(ctx, dst.ActorAddr("echo"), &Blob{Data: make([]byte, 2<<20)}); !errors.As(err, &tooLarge) {
		t.Fatalf("oversized call: got %v", err)
	}
	src.Bus().Flush(ctx)
	for deadline := time.After(time.Second); ; { // the node's own probes flow meanwhile
		select {
		case body := <-spied:
			if len(body) > 1<<20 {
				t.Fatalf("an oversized message (%d bytes) reached the node topic", len(body))
			}
			continue
		case <-deadline:
		}
		break
	}
	// The refused message did not use a sequence number: the next one flows.
	seqs := make(chan *Seq, 1)
	dst.Spawn("rec", func() Actor {
		return ActorFunc(func(c *Context) {
			if m, ok := c.Message().(*Seq); ok {
				seqs <- m
			}
		})
	}, SpawnOptions{})
	if err := src.Send(dst.ActorAddr("rec"), &Seq{N: 77}); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, seqs, 5*time.Second); m.N != 77 {
		t.Fatalf("got %d", m.N)
	}
	if g := dst.Stats().GapsSkipped; g != 0 {
		t.Fatalf("refused message left a gap (%d skipped)", g)
	}
}

func TestDeadLetterHook(t *testing.T) {
	broker := startBroker(t, mq.BrokerConfig{})
	dead := make(chan string, 1)
	dst := newNode(t, broker, "game", "game-1", nil)
	var inc atomic.Uint64
	dst.SetDeadLetterHandler(func(from Addr, fromInc uint64, to Addr, msg any, err error) {
		inc.Store(fromInc)
		dead <- fmt.Sprintf("%s->%s %T %v", from.Node, to.Actor, msg, errors.Is(err, ErrActorNotFound))
	})
	src := newNode(t, broker, "gate", "gate-1", nil)
	src.Send(dst.ActorAddr("ghost"), &Seq{N: 1})
	if got := receive(t, dead, 5*time.Second); got != "gate-1->ghost *framework.Seq true" {
		t.Fatalf("dead letter: %s", got)
	}
	if inc.Load() != src.Incarnation() {
		t.Fatalf("dead letter from incarnation %d, want %d", inc.Load(), src.Incarnation())
	}
}

// SendTo reaches one incarnation only: after the destination restarts it
// refuses (ErrNodeUnknown) instead of delivering to the new process.
func TestSendToOneIncarnation(t *testing.T) {
	broker := startBroker(t, mq.BrokerConfig{})
	dst := newNode(t, broker, "game", "game-1", nil)
	seqs := spawnEcho(t, dst, "echo")
	src := newNode(t, broker, "gate", "gate-1", nil)
	first := dst.Incarnation()
	if err := src.SendTo(dst.ActorAddr("echo"), first, &Seq{N: 1}); err != nil {
		t.Fatal(err)
	}
	receive(t, seqs, 5*time.Second)
	if err := dst.SendTo(dst.ActorAddr("echo"), first+1, &Seq{N: 2}); !errors.Is(err, ErrNodeUnknown) {
		t.Fatalf("local send to another incarnation: %v", err)
	}
	if err := dst.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	dst2 := newNode(t, broker, "game", "game-1", nil)
	seqs2 := spawnEcho(t, dst2, "echo")
	if err := src.SendTo(dst2.ActorAddr("echo"), first, &Seq{N: 3}); !errors.Is(err, ErrNodeUnknown) {
		t.Fatalf("send to the previous incarnation: %v, want ErrNodeUnknown", err)
	}
	if err := src.SendTo(dst2.ActorAddr("echo"), dst2.Incarnation(), &Seq{N: 4}); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, seqs2, 5*time.Second); m.N != 4 {
		t.Fatalf("got %d", m.N)
	}
	noMore(t, seqs2)
}
