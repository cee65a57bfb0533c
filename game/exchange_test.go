package game

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/services"
	"github.com/vmihailenco/msgpack/v5"
)

type tally struct{ N int }

// Peek asks a player for its live state; Bump adds one (test only).
type (
	Peek struct{}
	Bump struct{}
)

// An exchange's initiator that goes silent (its node crashed, the release
// was lost) leaves the other player locked; when the lock expires, that
// player reads the outcome from the store: the committed state if the
// initiator committed, its own state otherwise. Either way it never
// overwrites a committed exchange with its stale state.
// exchangeRig is one game node with player 2 attached, whose state starts
// at 7; ask sends it a client request and returns its N.
type exchangeRig struct {
	node   *framework.Node
	st     *store.Bolt
	player framework.Addr
	ask    func(msg any) int
}

func newExchangeRig(t *testing.T, exchangeTimeout time.Duration) *exchangeRig {
	reg := framework.NewRegistry()
	services.RegisterClient(reg)
	reg.MustRegister(10001, (*Peek)(nil))
	reg.MustRegister(10002, (*tally)(nil))
	reg.MustRegister(10003, (*Bump)(nil))
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	saver, err := NewSaver(SaverConfig{Store: st, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	r := NewRouter[tally](reg)
	MustHandle(r, func(p *Player[tally], _ *Peek) (*tally, error) { return p.State, nil })
	MustHandle(r, func(p *Player[tally], _ *Bump) (*tally, error) {
		p.State.N++
		p.MarkDirty()
		return p.State, nil
	})
	lease, err := store.StartLease(context.Background(), st, "game-1", store.LeaseConfig{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	node, err := framework.NewNode(framework.NodeConfig{Service: "game", ID: "game-1", Registry: reg, Incarnation: lease.Owner().Incarnation, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(Config[tally]{Node: node, Store: st, Lease: lease, Saver: saver, Router: r, SaveInterval: time.Hour,
		ExchangeTimeout: exchangeTimeout, NewState: func(uint64) *tally { return &tally{N: 7} }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := node.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		node.Stop(ctx)
		saver.Stop(ctx)
		st.Close()
	})
	replies := make(chan *services.ToClient, 10)
	gate, _ := node.Spawn(services.GateSessionsActor, func() framework.Actor {
		return framework.ActorFunc(func(c *framework.Context) {
			if m, ok := c.Message().(*services.ToClient); ok {
				replies <- m
			}
		})
	}, framework.SpawnOptions{})
	res, err := node.Call(ctx, node.ActorAddr(services.GameActorManager),
		&services.Attach{PlayerID: 2, Session: services.SessionRef{Gate: gate, Incarnation: node.Incarnation(), ID: 1}})
	if err != nil {
		t.Fatal(err)
	}
	player := res.(*services.Attached).Actor
	seq := uint32(0)
	ask := func(msg any) int {
		t.Helper()
		seq++
		id, payload, _ := reg.Marshal(msg)
		if err := node.Send(player, &services.ClientRequest{SessionID: 1, Seq: seq, MsgID: id, Payload: payload}); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-replies:
			v, err := reg.Unmarshal(m.MsgID, m.Payload)
			if err != nil {
				t.Fatal(err)
			}
			return v.(*tally).N
		case <-time.After(5 * time.Second):
			t.Fatal("no reply")
			return 0
		}
	}
	return &exchangeRig{node: node, st: st, player: player, ask: ask}
}

func TestExchangeLockExpiryReadsTheOutcomeFromTheStore(t *testing.T) {
	rg := newExchangeRig(t, 20*time.Millisecond)
	node, st, player, ask := rg.node, rg.st, rg.player, rg.ask
	ctx := context.Background()
	peek := func() int { t.Helper(); return ask(&Peek{}) }
	if n := peek(); n != 7 {
		t.Fatalf("new player has %d", n)
	}
	lock := func() *exchangeLocked {
		t.Helper()
		r, err := node.Call(ctx, player, &exchangeLock{From: node.ActorAddr("silent-initiator")})
		if err != nil {
			t.Fatal(err)
		}
		return r.(*exchangeLocked)
	}

	// 1. The initiator commits, then goes silent.
	l := lock()
	v := l.Version
	data, _ := msgpack.Marshal(&tally{N: 42})
	if err := st.SaveAll(ctx, []store.Record{{ID: 2, Epoch: l.Epoch, Data: data}}); err != nil {
		t.Fatal(err)
	}
	if n := peek(); n != 42 { // waits (stashed) until the lock expires
		t.Fatalf("after a committed exchange whose release was lost, the player has %d, want 42", n)
	}

	// 2. The initiator goes silent without committing.
	l2 := lock()
	if l2.Version <= v || l2.Epoch <= l.Epoch {
		t.Fatalf("second lock at version %d epoch %d, after version %d epoch %d", l2.Version, l2.Epoch, v, l.Epoch)
	}
	// Too late: settling the first lock took a new epoch.
	if err := st.SaveAll(ctx, []store.Record{{ID: 2, Epoch: l.Epoch, Data: data}}); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("a commit with the epoch of a settled lock: %v", err)
	}
	if n := peek(); n != 42 {
		t.Fatalf("after an exchange that never committed, the player has %d, want 42", n)
	}
	// Its next save is not refused: the reserved version was skipped.
	if n := ask(&Bump{}); n != 43 {
		t.Fatalf("bump: %d", n)
	}
	if err := node.Stop(ctx); err != nil { // players save as they stop
		t.Fatal(err)
	}
	rec, err := st.Load(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	var saved tally
	msgpack.Unmarshal(rec.Data, &saved)
	if saved.N != 43 || rec.Version <= l2.Version {
		t.Fatalf("stored %+v at version %d, want 43 after version %d", saved, rec.Version, l2.Version)
	}
}

// A player locked by an exchange whose initiator's node leaves (it
// crashed) settles with the store at once, not when its lock expires: it
// is served again with the committed state, or its own.
func TestLockOfANodeThatLeftSettlesAtOnce(t *testing.T) {
	rg := newExchangeRig(t, time.Minute) // the lock would last a minute
	ctx := context.Background()
	if n := rg.ask(&Peek{}); n != 7 {
		t.Fatalf("new player has %d", n)
	}
	initiator := framework.Addr{Service: services.Game, Node: "game-9", Actor: "player-1"}
	r, err := rg.node.Call(ctx, rg.player, &exchangeLock{From: initiator, Incarnation: 4})
	if err != nil {
		t.Fatal(err)
	}
	l := r.(*exchangeLocked)
	data, _ := msgpack.Marshal(&tally{N: 42})
	if err := rg.st.SaveAll(ctx, []store.Record{{ID: 2, Epoch: l.Epoch, Data: data}}); err != nil {
		t.Fatal(err)
	}
	// game-9 incarnation 4 leaves (the service's membership watcher says so).
	rg.node.Send(rg.node.ActorAddr(services.GameActorManager), &gameEnded{Node: "game-9", Incarnation: 4})
	if n := rg.ask(&Peek{}); n != 42 {
		t.Fatalf("after the initiator's node left, the player has %d, want the committed 42", n)
	}
	// Fenced: a late commit of that exchange cannot land.
	if err := rg.st.SaveAll(ctx, []store.Record{{ID: 2, Epoch: l.Epoch, Data: data}}); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("a late commit after settling: %v", err)
	}
}

// A node stopping while one of its players is locked by an exchange settles
// the lock with the store and saves the player: changes acknowledged
// before the lock are not lost.
func TestLockedPlayerIsSavedOnStop(t *testing.T) {
	rg := newExchangeRig(t, time.Minute)
	ctx := context.Background()
	if n := rg.ask(&Bump{}); n != 8 { // acknowledged, not saved yet (the save interval is an hour)
		t.Fatalf("bump: %d", n)
	}
	initiator := framework.Addr{Service: services.Game, Node: "game-9", Actor: "player-1"}
	if _, err := rg.node.Call(ctx, rg.player, &exchangeLock{From: initiator, Incarnation: 4}); err != nil {
		t.Fatal(err)
	}
	if err := rg.node.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	rec, err := rg.st.Load(ctx, 2)
	if err != nil {
		t.Fatalf("the locked player was not saved on stop: %v", err)
	}
	var saved tally
	msgpack.Unmarshal(rec.Data, &saved)
	if saved.N != 8 {
		t.Fatalf("stored %d, want the acknowledged 8", saved.N)
	}
}
