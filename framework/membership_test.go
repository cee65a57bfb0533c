package framework

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citadel-go/citadel/mq"
	"github.com/nsqio/go-nsq"
)

func TestRingSpreadsAndMovesFewKeys(t *testing.T) {
	nodes := []string{"game-1", "game-2", "game-3", "game-4"}
	r4 := NewRing(nodes, 0)
	r5 := NewRing(append(nodes, "game-5"), 0)
	const keys = 100000
	count := map[string]int{}
	moved := 0
	for i := 0; i < keys; i++ {
		k := fmt.Sprintf("player-%d", i)
		a, _ := r4.Get(k)
		b, _ := r5.Get(k)
		count[a]++
		if a != b {
			moved++
			if b != "game-5" {
				t.Fatalf("key %s moved from %s to %s; keys may only move to the new node", k, a, b)
			}
		}
	}
	frac := float64(moved) / keys
	t.Logf("adding a 5th node moved %.1f%% of keys (ideal 20%%); spread over 4: %v", frac*100, count)
	if frac < 0.15 || frac > 0.25 {
		t.Errorf("moved %.3f of keys, want about 0.2", frac)
	}
	for n, c := range count {
		if c < keys/4*90/100 || c > keys/4*110/100 {
			t.Errorf("node %s owns %d keys, more than 10%% off even", n, c)
		}
	}
	// Order of construction does not matter; removal moves only the removed node's keys.
	r4b := NewRing([]string{"game-4", "game-3", "game-2", "game-1", "game-2"}, 0)
	r3 := NewRing([]string{"game-1", "game-2", "game-4"}, 0)
	for i := 0; i < 10000; i++ {
		k := fmt.Sprintf("p%d", i)
		a, _ := r4.Get(k)
		b, _ := r4b.Get(k)
		c, _ := r3.Get(k)
		if a != b {
			t.Fatalf("rings over the same nodes disagree on %s", k)
		}
		if a != "game-3" && a != c {
			t.Fatalf("removing game-3 moved %s from %s to %s", k, a, c)
		}
	}
	if _, ok := NewRing(nil, 0).Get("x"); ok {
		t.Fatal("empty ring returned a node")
	}
}

func TestMembershipJoinLeaveExpireAndPick(t *testing.T) {
	broker := startBroker(t, mq.BrokerConfig{})
	gate := newNode(t, broker, "gate", "gate-1", func(c *NodeConfig) {
		c.Meta = map[string]string{"tcp": "127.0.0.1:7000"}
		c.DeadAfter = 500 * time.Millisecond
	})
	var mu sync.Mutex
	var events []string
	gate.Members().Watch(func(ev MemberEvent) {
		mu.Lock()
		events = append(events, ev.Kind.String()+" "+ev.Member.Node)
		mu.Unlock()
	})
	g1 := newNode(t, broker, "game", "game-1", nil)
	g2 := newNode(t, broker, "game", "game-2", nil)
	g3 := newNode(t, broker, "game", "game-3", nil)
	eventually(t, 5*time.Second, "gate sees 3 game nodes", func() bool { return len(gate.Members().Alive("game")) == 3 })
	eventually(t, 5*time.Second, "game-1 sees the gate", func() bool {
		m, ok := g1.Members().Get("gate", "gate-1")
		return ok && m.Meta["tcp"] == "127.0.0.1:7000"
	})
	g2.Members().SetLoad(42)
	eventually(t, 5*time.Second, "load report", func() bool {
		m, _ := gate.Members().Get("game", "game-2")
		return m.Load == 42
	})

	// Every node maps a key to the same game node.
	for i := 0; i < 200; i++ {
		key := fmt.Sprintf("player-%d", i)
		a, ok1 := gate.Members().Pick("game", key)
		b, ok2 := g1.Members().Pick("game", key)
		if !ok1 || !ok2 || a.Node != b.Node {
			t.Fatalf("%s: gate picks %s, game-1 picks %s", key, a.Node, b.Node)
		}
	}
	if _, ok := gate.Members().Pick("chat", "x"); ok {
		t.Fatal("picked a node of a service with no nodes")
	}

	// Clean leave: gone at once.
	g3.Stop(context.Background())
	eventually(t, 2*time.Second, "game-3 left", func() bool { _, ok := gate.Members().Get("game", "game-3"); return !ok })
	// Silent death of a node without a lease: heartbeats stop, the TTL
	// (3 × 100ms here) makes it suspect, DeadAfter drops it.
	close(g2.members.stopHB)
	<-g2.members.hbDone
	g2.members.stopHB = nil
	eventually(t, 3*time.Second, "game-2 expired", func() bool { _, ok := gate.Members().Get("game", "game-2"); return !ok })
	for i := 0; i < 100; i++ {
		if m, _ := gate.Members().Pick("game", fmt.Sprintf("player-%d", i)); m.Node != "game-1" {
			t.Fatalf("only game-1 is alive but %s was picked", m.Node)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[string]bool{"joined game-1": true, "joined game-2": true, "joined game-3": true, "left game-3": true,
		"suspect game-2": true, "left game-2": true}
	for _, e := range events {
		delete(want, e)
	}
	if len(want) != 0 {
		t.Fatalf("missing events %v (got %v)", want, events)
	}
}

// A node that stops beating is only suspect: Pick avoids it, messages
// still reach it, nobody is told it left; when it beats again it is back.
// A node with a store lease leaves only when buried (its lease is over);
// a goodbye's incarnation never comes back.
func TestSilentNodeIsSuspectUntilBuried(t *testing.T) {
	broker := startBroker(t, mq.BrokerConfig{})
	short := func(c *NodeConfig) { c.DeadAfter = 300 * time.Millisecond }
	gate := newNode(t, broker, "gate", "gate-1", short)
	var mu sync.Mutex
	var events []string
	gate.Members().Watch(func(ev MemberEvent) {
		mu.Lock()
		events = append(events, ev.Kind.String()+" "+ev.Member.Node)
		mu.Unlock()
	})
	saw := func(e string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, x := range events {
			if x == e {
				return true
			}
		}
		return false
	}
	g1 := newNode(t, broker, "game", "game-1", func(c *NodeConfig) { c.Incarnation = 7; c.DeadAfter = 300 * time.Millisecond })
	newNode(t, broker, "game", "game-2", short)
	eventually(t, 5*time.Second, "gate sees 2 game nodes", func() bool { return len(gate.Members().Alive("game")) == 2 })

	// game-1 freezes (its heartbeats stop) for much longer than DeadAfter.
	close(g1.members.stopHB)
	<-g1.members.hbDone
	g1.members.stopHB = nil
	eventually(t, 3*time.Second, "game-1 suspect", func() bool { m, _ := gate.Members().Get("game", "game-1"); return m.Suspect })
	time.Sleep(600 * time.Millisecond) // twice DeadAfter
	if m, ok := gate.Members().Get("game", "game-1"); !ok || !m.Suspect || !m.Leased {
		t.Fatalf("a leased node that stopped beating must stay a suspect member; got %+v, %v", m, ok)
	}
	if saw("left game-1") {
		t.Fatal("a leased node was reported left on missed heartbeats")
	}
	for i := 0; i < 100; i++ {
		if m, _ := gate.Members().Pick("game", fmt.Sprintf("player-%d", i)); m.Node != "game-2" {
			t.Fatalf("Pick chose suspect %s", m.Node)
		}
	}
	if got := gate.Members().Alive("game"); len(got) != 1 || got[0].Node != "game-2" {
		t.Fatalf("Alive lists %v, want only game-2", got)
	}
	if gate.members.epochOf("game", "game-1") != 7 {
		t.Fatal("a suspect node must stay addressable")
	}

	// It beats again: recovered.
	g1.members.publish(g1.members.heartbeat(false))
	eventually(t, 3*time.Second, "game-1 recovered", func() bool {
		m, _ := gate.Members().Get("game", "game-1")
		return !m.Suspect && saw("recovered game-1")
	})

	// Draining: a member, but not picked.
	g1.Members().SetDraining(true)
	g1.members.publish(g1.members.heartbeat(false))
	eventually(t, 3*time.Second, "game-1 draining", func() bool { m, _ := gate.Members().Get("game", "game-1"); return m.Draining })
	for i := 0; i < 100; i++ {
		if m, _ := gate.Members().Pick("game", fmt.Sprintf("player-%d", i)); m.Node != "game-2" {
			t.Fatalf("Pick chose draining %s", m.Node)
		}
	}

	// Buried by a node that found its lease over: left everywhere, and
	// its late heartbeats are ignored.
	eventually(t, 3*time.Second, "game-1 suspect again", func() bool { m, _ := gate.Members().Get("game", "game-1"); return m.Suspect })
	m, _ := gate.Members().Get("game", "game-1")
	if err := gate.Members().Bury(m); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "game-1 left", func() bool { _, ok := gate.Members().Get("game", "game-1"); return !ok && saw("left game-1") })

	// A goodbye is final: a late heartbeat of that incarnation is ignored.
	g1.members.publish(g1.members.heartbeat(true))
	eventually(t, 3*time.Second, "the goodbye is applied", func() bool {
		gate.members.mu.Lock()
		defer gate.members.mu.Unlock()
		return gate.members.dead[nodeKey{"game", "game-1"}] == 7
	})
	g1.members.publish(g1.members.heartbeat(false))
	time.Sleep(300 * time.Millisecond)
	if _, ok := gate.Members().Get("game", "game-1"); ok {
		t.Fatal("an incarnation that said goodbye came back with a late heartbeat")
	}
}

// A second process under a node name that a live process uses is refused
// at Start, naming the cause.
func TestDuplicateNodeNameIsRefused(t *testing.T) {
	broker := startBroker(t, mq.BrokerConfig{})
	newNode(t, broker, "gate", "gate-1", nil)
	bc := broker.BusConfig()
	dup, err := NewNode(NodeConfig{Service: "gate", ID: "gate-1", Registry: testRegistry(t), Logger: testLogger(), MQ: &bc})
	if err != nil {
		t.Fatal(err)
	}
	defer dup.Stop(context.Background())
	err = dup.Start(context.Background())
	if !errors.Is(err, ErrNameInUse) || !strings.Contains(err.Error(), "-id") {
		t.Fatalf("Start of a second gate-1: %v, want ErrNameInUse with a fix", err)
	}
}

// A message lost for good (here: finished by the hook without handling,
// resends too) is skipped after GapTimeout, so the stream moves on; if it
// turns up later it is delivered late rather than dropped as a duplicate.
func TestLostMessageGapIsSkipped(t *testing.T) {
	broker := startBroker(t, mq.BrokerConfig{})
	bc := broker.BusConfig()
	dst, err := NewNode(NodeConfig{Service: "game", ID: "dst", Registry: testRegistry(t), Logger: testLogger(), MQ: &bc,
		GapTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var held [][]byte
	var mu sync.Mutex
	lose := true
	dst.inboundHook = func(m *mq.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if lose && len(m.Body) > 0 {
			var w wireEnvelope
			if err := parseEnvelope(m.Body, &w, &interner{}); err == nil && w.Seq == 3 && w.From.Node == "gate-1" {
				held = append(held, append([]byte(nil), m.Body...))
				return errHookDrop // "lost"
			}
		}
		return nil
	}
	if err := dst.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dst.Stop(context.Background()) })
	seqs := spawnEcho(t, dst, "echo")
	src := newNode(t, broker, "gate", "gate-1", nil)
	meet(t, src, dst)
	for i := 1; i <= 5; i++ {
		if err := src.Send(dst.ActorAddr("echo"), &Seq{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []int{1, 2, 4, 5} {
		if got := receive(t, seqs, 5*time.Second).N; got != want {
			t.Fatalf("got %d, want %d", got, want)
		}
	}
	if s := dst.Stats(); s.GapsSkipped != 1 {
		t.Fatalf("gaps skipped %d, want 1", s.GapsSkipped)
	}
	mu.Lock()
	body, lose := held[0], false
	mu.Unlock()
	src.Bus().Publish(NodeTopic("game", "dst"), body)
	if got := receive(t, seqs, 5*time.Second).N; got != 3 {
		t.Fatalf("late message: got %d", got)
	}
	src.Bus().Publish(NodeTopic("game", "dst"), body)
	time.Sleep(100 * time.Millisecond)
	if len(seqs) != 0 {
		t.Fatal("a second copy of the late message was delivered")
	}
	if s := dst.Stats(); s.LateDelivered != 1 || s.Duplicates != 1 {
		t.Fatalf("late %d duplicates %d, want 1 and 1", s.LateDelivered, s.Duplicates)
	}
}

// A message that did not arrive (another consumer took it, an nsqd lost
// it) is asked for again and published again by its sender: the stream
// delivers everything, in order, without giving anything up.
func TestLostMessagesAreResent(t *testing.T) {
	broker := startBroker(t, mq.BrokerConfig{})
	bc := broker.BusConfig()
	dst, err := NewNode(NodeConfig{Service: "game", ID: "dst", Registry: testRegistry(t), Logger: testLogger(), MQ: &bc})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[uint64]bool{}
	dst.inboundHook = func(m *mq.Message) error {
		var w wireEnvelope
		if err := parseEnvelope(m.Body, &w, &interner{}); err != nil || w.From.Node != "gate-1" || w.Seq%2 == 0 {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		if !seen[w.Seq] {
			seen[w.Seq] = true
			return errHookDrop // taken by someone else, the first time
		}
		return nil
	}
	if err := dst.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dst.Stop(context.Background()) })
	seqs := spawnEcho(t, dst, "echo")
	src := newNode(t, broker, "gate", "gate-1", nil)
	meet(t, src, dst)
	for i := 1; i <= 100; i++ {
		if err := src.Send(dst.ActorAddr("echo"), &Seq{N: i}); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			time.Sleep(20 * time.Millisecond) // several packs, several gaps
		}
	}
	for i := 1; i <= 100; i++ {
		if got := receive(t, seqs, 10*time.Second).N; got != i {
			t.Fatalf("got %d, want %d", got, i)
		}
	}
	if s := dst.Stats(); s.GapsSkipped != 0 || s.ResendRequests == 0 {
		t.Fatalf("%d numbers given up, %d resends asked for; want 0 and some", s.GapsSkipped, s.ResendRequests)
	}
	if s := src.Stats(); s.Resent == 0 {
		t.Fatal("the sender resent nothing")
	}
}

// Many messages missing from a stream (here a foreign consumer on the
// node's channel took every other one, resends too) cost one gap timeout, not one per
// gap:
// when it runs out, every number missing below the newest held-back
// message is given up at once.
func TestManyMissingMessagesCostOneGapWait(t *testing.T) {
	broker := startBroker(t, mq.BrokerConfig{})
	bc := broker.BusConfig()
	dst, err := NewNode(NodeConfig{Service: "game", ID: "dst", Registry: testRegistry(t), Logger: testLogger(), MQ: &bc,
		GapTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	dst.inboundHook = func(m *mq.Message) error {
		var w wireEnvelope
		if err := parseEnvelope(m.Body, &w, &interner{}); err == nil && w.From.Node == "gate-1" && w.Seq >= 3 && w.Seq <= 91 && w.Seq%2 == 1 {
			return errHookDrop // taken by someone else
		}
		return nil
	}
	if err := dst.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dst.Stop(context.Background()) })
	seqs := spawnEcho(t, dst, "echo")
	src := newNode(t, broker, "gate", "gate-1", nil)
	meet(t, src, dst)
	for i := 1; i <= 100; i++ {
		if err := src.Send(dst.ActorAddr("echo"), &Seq{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	var want []int
	for i := 1; i <= 100; i++ {
		if i < 3 || i > 91 || i%2 == 0 {
			want = append(want, i)
		}
	}
	for _, w := range want {
		if got := receive(t, seqs, 10*time.Second).N; got != w {
			t.Fatalf("got %d, want %d", got, w)
		}
	}
	if s := dst.Stats(); s.GapsSkipped != 45 || s.GapWaits != 1 {
		t.Fatalf("%d numbers skipped in %d gap waits, want 45 in 1", s.GapsSkipped, s.GapWaits)
	}
}

// A node whose own channel does not deliver (another consumer takes its
// messages) says so in Health while it lasts, and is healthy again after.
func TestHealthReportsAForeignConsumerOnTheNodeChannel(t *testing.T) {
	broker := startBroker(t, mq.BrokerConfig{})
	n := newNode(t, broker, "game", "g1", func(c *NodeConfig) { c.GapTimeout = 2 * time.Second })
	waitHealth := func(want bool, within time.Duration) error {
		deadline := time.Now().Add(within)
		for {
			err := n.Health()
			if (err == nil) == want {
				return err
			}
			if time.Now().After(deadline) {
				t.Fatalf("healthy=%v for %v; Health: %v", !want, within, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitHealth(true, 10*time.Second)

	thief, err := nsq.NewConsumer(NodeTopic("game", "g1"), nodeChannel, nsq.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	thief.SetLogger(log.New(io.Discard, "", 0), nsq.LogLevelError)
	thief.AddHandler(nsq.HandlerFunc(func(*nsq.Message) error { return nil }))
	if err := thief.ConnectToNSQD(broker.TCPAddr()); err != nil {
		t.Fatal(err)
	}
	err = waitHealth(false, 20*time.Second)
	if !strings.Contains(err.Error(), "another consumer") {
		t.Fatalf("Health does not name the likely cause: %v", err)
	}
	thief.Stop()
	<-thief.StopChan
	waitHealth(true, 20*time.Second)
}

// A call waiting on a node that leaves (it stopped, crashed or missed its
// heartbeats) ends with ErrNodeLeft then, not at its deadline: the caller
// can ask another node at once.
func TestCallToANodeThatLeavesEndsWithErrNodeLeft(t *testing.T) {
	broker := startBroker(t, mq.BrokerConfig{})
	dst := newNode(t, broker, "game", "game-1", nil)
	release := make(chan struct{})
	defer close(release)
	if _, err := dst.Spawn("stuck", func() Actor {
		return ActorFunc(func(c *Context) {
			if _, ok := c.Message().(*Ping); ok {
				<-release
			}
		})
	}, SpawnOptions{}); err != nil {
		t.Fatal(err)
	}
	src := newNode(t, broker, "gate", "gate-1", nil)
	meet(t, src, dst)
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := src.Call(ctx, dst.ActorAddr("stuck"), &Ping{})
		errc <- err
	}()
	eventually(t, 5*time.Second, "the call to arrive", func() bool { return dst.Stats().RemoteReceived >= 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	dst.Stop(ctx)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrNodeLeft) {
			t.Fatalf("the call ended with %v, want ErrNodeLeft", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the call still waits on a node that left")
	}
}

// A resend request replayed off nsqd cannot multiply traffic: a stale one
// is ignored, and one envelope is resent at most once per resendEvery.
func TestResendRequestsAreBounded(t *testing.T) {
	broker := startBroker(t, mq.BrokerConfig{})
	dst := newNode(t, broker, "game", "game-1", nil)
	spawnEcho(t, dst, "echo")
	src := newNode(t, broker, "gate", "gate-1", nil)
	meet(t, src, dst)
	for i := 1; i <= 10; i++ {
		if err := src.Send(dst.ActorAddr("echo"), &Seq{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	ask := func(first uint64, sent time.Time) {
		w := wireEnvelope{Kind: kindResend, From: dst.addr, To: Addr{Service: "gate", Node: "gate-1"},
			Epoch: dst.epoch, ToEpoch: src.epoch, CorrID: first, Deadline: 10, Sent: sent.UnixNano()}
		if err := dst.Bus().Publish(NodeTopic("gate", "gate-1"), appendEnvelope(nil, &w)); err != nil {
			t.Fatal(err)
		}
	}
	ask(1, time.Now().Add(-time.Minute)) // 1-10, stale (or replayed long after)
	ask(6, time.Now())                   // 6-10
	eventually(t, 10*time.Second, "the fresh request to be served", func() bool { return src.Stats().Resent >= 5 })
	if got := src.Stats().Resent; got != 5 {
		t.Fatalf("%d envelopes resent, want the 5 of the fresh request only", got)
	}
	src.resend(dst.addr, dst.epoch, 1, 10) // may resend: it has been a while
	mid, at := src.Stats().Resent, time.Now()
	src.resend(dst.addr, dst.epoch, 1, 10) // at once again: nothing
	if got := src.Stats().Resent; got != mid && time.Since(at) < resendEvery {
		t.Fatalf("a request right after another resent %d envelopes again, want each at most once per %v", got-mid, resendEvery)
	}
}

// Meta set after the start (a gate's client addresses, once it listens)
// reaches the others at once, not a heartbeat interval later: a login or
// a drain in that interval would hand out a gate without an address.
func TestSetMetaIsAnnouncedAtOnce(t *testing.T) {
	broker := startBroker(t, mq.BrokerConfig{})
	slow := func(c *NodeConfig) { c.HeartbeatInterval, c.MemberTTL = time.Hour, 3*time.Hour }
	a := newNode(t, broker, "gate", "gate-1", slow)
	b := newNode(t, broker, "login", "login-1", slow)
	eventually(t, 5*time.Second, "login sees the gate", func() bool { _, ok := b.Members().Get("gate", "gate-1"); return ok })
	a.Members().SetMeta("ws", "ws://127.0.0.1:7001/ws")
	eventually(t, 5*time.Second, "the gate's new meta", func() bool {
		m, _ := b.Members().Get("gate", "gate-1")
		return m.Meta["ws"] == "ws://127.0.0.1:7001/ws"
	})
}
