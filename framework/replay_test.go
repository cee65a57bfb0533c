package framework

import (
	"context"
	"testing"
	"time"

	"github.com/citadel-go/citadel/mq"
	"github.com/citadel-go/citadel/mq/mqtest"
)

func noMore[T any](t testing.TB, ch chan T) {
	t.Helper()
	select {
	case m := <-ch:
		t.Fatalf("delivered again: %+v", m)
	case <-time.After(300 * time.Millisecond):
	}
}

// A captured envelope published again reaches no actor: not while its
// stream is live, not after the stream went idle and was retired, and not
// after the receiving node restarted (it was addressed to the previous
// incarnation). Forged, unsigned envelopes never do.
func TestReplayedAndMisaddressedEnvelopes(t *testing.T) {
	b := startBroker(t, mq.BrokerConfig{})
	dst := newNode(t, b, "game", "game-1", nil)
	seqs := spawnEcho(t, dst, "echo")
	src := newNode(t, b, "gate", "gate-1", nil)
	eventually(t, 5*time.Second, "gate-1 to know game-1", func() bool {
		_, ok := src.Members().Get("game", "game-1")
		return ok
	})
	topic := NodeTopic("game", "game-1")
	spied := mqtest.Spy(t, b.TCPAddr(), b.HTTPAddr(), topic)
	target := dst.ActorAddr("echo")
	for i := 1; i <= 3; i++ {
		if err := src.Send(target, &Seq{From: "honest", N: i}); err != nil {
			t.Fatal(err)
		}
		receive(t, seqs, 5*time.Second)
	}
	var recorded [][]byte
	for len(recorded) < 3 {
		recorded = append(recorded, receive(t, spied, 5*time.Second))
	}

	// While the stream is live: duplicates.
	dups := dst.Stats().Duplicates
	mqtest.Publish(t, b.HTTPAddr(), topic, recorded[1])
	eventually(t, 5*time.Second, "the replay to be counted as a duplicate", func() bool { return dst.Stats().Duplicates > dups })
	noMore(t, seqs)

	// The stream idles out and is retired: it remembers where it was.
	dst.inMu.Lock()
	dst.forgetIdleStreamsLocked(time.Now().Add(streamIdle + time.Minute))
	retired := len(dst.retired)
	dst.inMu.Unlock()
	if retired == 0 {
		t.Fatal("no stream retired")
	}
	dups = dst.Stats().Duplicates
	mqtest.Publish(t, b.HTTPAddr(), topic, recorded[2])
	eventually(t, 5*time.Second, "the replay after retirement to be a duplicate", func() bool { return dst.Stats().Duplicates > dups })
	noMore(t, seqs)
	// ... and the stream's next honest message does not wait for a gap.
	waits := dst.Stats().GapWaits
	src.Send(target, &Seq{From: "honest", N: 4})
	if m := receive(t, seqs, 5*time.Second); m.N != 4 {
		t.Fatalf("got %d after retirement, want 4", m.N)
	}
	if w := dst.Stats().GapWaits; w != waits {
		t.Fatalf("the message after retirement waited for a gap (%d gap waits, %d before)", w, waits)
	}

	// Forged: an unsigned envelope in the current format.
	forged := appendEnvelope(nil, &wireEnvelope{Kind: kindSend, From: src.Addr(), To: target, Epoch: 99, Seq: 1, MsgID: 10003,
		Payload: []byte{0x82, 0xa4, 'F', 'r', 'o', 'm', 0xa6, 'f', 'o', 'r', 'g', 'e', 'd', 0xa1, 'N', 0x07}, ToEpoch: dst.epoch})
	mqtest.Publish(t, b.HTTPAddr(), topic, forged)
	eventually(t, 5*time.Second, "the forgery to be rejected", func() bool { return dst.Stats().MQ.Rejected[mq.RejectUnsigned] > 0 })
	noMore(t, seqs)

	// The node restarts: the recorded envelopes were for its previous
	// incarnation.
	if err := dst.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	dst2 := newNode(t, b, "game", "game-1", nil)
	seqs2 := spawnEcho(t, dst2, "echo")
	for _, body := range recorded {
		mqtest.Publish(t, b.HTTPAddr(), topic, body)
	}
	eventually(t, 5*time.Second, "the replays to be dropped as misaddressed", func() bool { return dst2.Stats().WrongIncarnation >= 3 })
	noMore(t, seqs2)
}

// Once a node has heard from a new incarnation of a sender, what the
// sender's previous process sent (delayed, or recorded and replayed) is
// dropped: it belongs to the world before the restart.
func TestEnvelopesFromARestartedSenderAreDropped(t *testing.T) {
	b := startBroker(t, mq.BrokerConfig{})
	dst := newNode(t, b, "game", "game-1", nil)
	seqs := spawnEcho(t, dst, "echo")
	src := newNode(t, b, "gate", "gate-1", nil)
	topic := NodeTopic("game", "game-1")
	spied := mqtest.Spy(t, b.TCPAddr(), b.HTTPAddr(), topic)
	if err := src.Send(dst.ActorAddr("echo"), &Seq{From: "first", N: 1}); err != nil {
		t.Fatal(err)
	}
	receive(t, seqs, 5*time.Second)
	old := receive(t, spied, 5*time.Second)
	if err := src.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	src2 := newNode(t, b, "gate", "gate-1", nil)
	if err := src2.Send(dst.ActorAddr("echo"), &Seq{From: "second", N: 1}); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, seqs, 5*time.Second); m.From != "second" {
		t.Fatalf("got %+v", m)
	}
	before := dst.Stats().WrongIncarnation
	mqtest.Publish(t, b.HTTPAddr(), topic, old)
	eventually(t, 5*time.Second, "the old incarnation's envelope to be dropped", func() bool {
		return dst.Stats().WrongIncarnation > before
	})
	noMore(t, seqs)
}

// A reply belongs to the process that made the call: a late answer to a
// call of a sender's previous incarnation never completes a call of the
// new one, though both processes number their calls from 1.
func TestLateReplyToAPreviousIncarnationIsDropped(t *testing.T) {
	b := startBroker(t, mq.BrokerConfig{})
	dst := newNode(t, b, "game", "game-1", nil)
	slow := func(name string, release chan struct{}) Addr {
		_, err := dst.Spawn(name, func() Actor {
			return ActorFunc(func(c *Context) {
				if p, ok := c.Message().(*Ping); ok {
					<-release
					c.Reply(&Pong{N: p.N})
				}
			})
		}, SpawnOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return dst.ActorAddr(name)
	}
	release1, release2 := make(chan struct{}), make(chan struct{})
	first, second := slow("first", release1), slow("second", release2)

	src := newNode(t, b, "gate", "gate-1", nil)
	meet(t, src, dst)
	// The process goes while its call waits (it crashed; its caller's
	// deadline has not passed).
	go src.Call(context.Background(), first, &Ping{N: 111})
	eventually(t, 5*time.Second, "the first call to reach game-1", func() bool {
		return dst.Stats().RemoteReceived >= 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	src.Stop(ctx)
	cancel()

	src2 := newNode(t, b, "gate", "gate-1", nil)
	meet(t, src2, dst)
	got := make(chan any, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		r, err := src2.Call(ctx, second, &Ping{N: 222})
		if err != nil {
			got <- err
			return
		}
		got <- r
	}()
	eventually(t, 5*time.Second, "the new incarnation's call to reach game-1", func() bool {
		return dst.Stats().RemoteReceived >= 2
	})
	close(release1) // the answer to the old process's call, on its way now
	select {
	case r := <-got:
		t.Fatalf("the new incarnation's call completed with %+v before its own answer", r)
	case <-time.After(time.Second):
	}
	close(release2)
	select {
	case r := <-got:
		if p, ok := r.(*Pong); !ok || p.N != 222 {
			t.Fatalf("the new incarnation's call completed with %+v, want its own answer 222", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer")
	}
}
