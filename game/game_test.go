package game_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/game"
	"github.com/citadel-go/citadel/game/sample/gamedata"
	"github.com/citadel-go/citadel/mq"
	"github.com/citadel-go/citadel/services"
	"github.com/citadel-go/citadel/tables"
	"github.com/citadel-go/citadel/tables/export"
	"github.com/citadel-go/citadel/tables/tablestest"
	"github.com/vmihailenco/msgpack/v5"
)

// A minimal game: a counter per player.
type (
	counter struct{ N int }
	Inc     struct{ By int }
	Count   struct{ N int }
	Fail    struct{ Panic bool }
	// Versions reports the tables versions a handler saw.
	Versions struct{ First, Second, Current string }
)

type rigConfig struct {
	saveInterval time.Duration
	withGive     bool
	tables       tables.Source
	exchange     time.Duration // ExchangeTimeout
	// A cluster of rigs: the node's ID, its mq, and a store the rigs share.
	id    string
	bus   *mq.BusConfig
	store *store.Bolt
	// routes adds handlers; onActivate is Config.OnActivate.
	routes     func(*game.Router[counter])
	onActivate func(*game.Player[counter])
}

type rig struct {
	t     *testing.T
	node  *framework.Node
	store store.Store
	lease *store.LeaseKeeper
	flaky *flaky
	gate  framework.Addr
	out   chan *services.ToClient
	kicks chan *services.Kick
	reg   *framework.Registry
}

func newRig(t *testing.T, grace time.Duration, tweaks ...func(*rigConfig)) *rig {
	t.Helper()
	rc := rigConfig{saveInterval: time.Hour, id: "game-1"}
	for _, f := range tweaks {
		f(&rc)
	}
	reg := framework.NewRegistry()
	services.RegisterClient(reg)
	reg.MustRegister(10001, (*Inc)(nil))
	reg.MustRegister(10002, (*Count)(nil))
	reg.MustRegister(10003, (*Fail)(nil))
	reg.MustRegister(10004, (*Give)(nil))
	reg.MustRegister(10005, (*Versions)(nil))
	reg.MustRegister(10006, (*Gift)(nil))
	reg.MustRegister(10007, (*Tick)(nil))
	reg.MustRegister(10008, (*Arm)(nil))
	var err error
	bolt := rc.store
	if bolt == nil {
		if bolt, err = store.OpenBolt(filepath.Join(t.TempDir(), "db")); err != nil {
			t.Fatal(err)
		}
	}
	st := &flaky{Store: bolt}
	lease, err := store.StartLease(context.Background(), st, rc.id, store.LeaseConfig{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	node, err := framework.NewNode(framework.NodeConfig{Service: "game", ID: rc.id, Registry: reg, MQ: rc.bus, Incarnation: lease.Owner().Incarnation,
		HeartbeatInterval: 100 * time.Millisecond,
		Logger:            slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		t.Fatal(err)
	}
	r := game.NewRouter[counter](reg)
	game.MustHandle(r, func(p *game.Player[counter], m *Inc) (*Count, error) {
		p.State.N += m.By
		p.MarkDirty()
		return &Count{N: p.State.N}, nil
	})
	game.MustHandle(r, func(p *game.Player[counter], m *Fail) (*Count, error) {
		if m.Panic {
			panic("handler bug")
		}
		return nil, framework.NewError("nope", "refused on purpose")
	})
	game.MustHandle(r, func(p *game.Player[counter], m *Give) (*Count, error) {
		err := p.Exchange(context.Background(), m.To, func(self, other *counter) error {
			if self.N < m.N {
				return framework.NewError("poor", "not enough")
			}
			self.N -= m.N
			other.N += m.N
			return nil
		})
		if err != nil {
			return nil, err
		}
		return &Count{N: p.State.N}, nil
	})
	// Versions reads the tables, reloads them mid-handler, reads again.
	game.MustHandle(r, func(p *game.Player[counter], m *Versions) (*Versions, error) {
		first := p.Tables().TablesInfo().Version
		if err := rc.tables.Reload(); err != nil {
			return nil, err
		}
		return &Versions{First: first, Second: p.Tables().TablesInfo().Version, Current: rc.tables.Pin().TablesInfo().Version}, nil
	})
	if rc.routes != nil {
		rc.routes(r)
	}
	if err := game.Handle(r, func(p *game.Player[counter], m *Inc) (*Count, error) { return nil, nil }); err == nil {
		t.Fatal("a second handler for Inc was accepted")
	}
	saver, err := game.NewSaver(game.SaverConfig{Store: st, RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := game.New(game.Config[counter]{Node: node, Store: st, Lease: lease, Saver: saver, Router: r, Grace: grace,
		SaveInterval: rc.saveInterval, Tables: rc.tables, ExchangeTimeout: rc.exchange,
		NewState: func(uint64) *counter { return &counter{} }, OnActivate: rc.onActivate,
		OnAttach: func(p *game.Player[counter]) { p.Push(&Count{N: p.State.N}) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	rg := &rig{t: t, node: node, store: bolt, lease: lease, flaky: st, out: make(chan *services.ToClient, 100), kicks: make(chan *services.Kick, 10), reg: reg}
	rg.gate, _ = node.Spawn(services.GateSessionsActor, func() framework.Actor {
		return framework.ActorFunc(func(c *framework.Context) {
			switch m := c.Message().(type) {
			case *services.ToClient:
				rg.out <- m
			case *services.Kick:
				rg.kicks <- m
			}
		})
	}, framework.SpawnOptions{})
	t.Cleanup(func() {
		node.Stop(context.Background())
		saver.Stop(context.Background())
		if rc.store == nil {
			bolt.Close()
		}
	})
	return rg
}

func (r *rig) attach(player, session uint64) (*services.Attached, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := r.node.Call(ctx, r.node.ActorAddr(services.GameActorManager),
		&services.Attach{PlayerID: player, Session: services.SessionRef{Gate: r.gate, Incarnation: r.node.Incarnation(), ID: session}})
	if err != nil {
		return nil, err
	}
	return res.(*services.Attached), nil
}

func (r *rig) request(actor framework.Addr, session uint64, seq uint32, msg any) {
	id, payload, err := r.reg.Marshal(msg)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.node.Send(actor, &services.ClientRequest{SessionID: session, Seq: seq, MsgID: id, Payload: payload}); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) reply() (*services.ToClient, any) {
	r.t.Helper()
	select {
	case m := <-r.out:
		v, err := r.reg.Unmarshal(m.MsgID, m.Payload)
		if err != nil {
			r.t.Fatal(err)
		}
		return m, v
	case <-time.After(5 * time.Second):
		r.t.Fatal("no frame for the client")
		return nil, nil
	}
}

func TestRequestsRepliesAndErrors(t *testing.T) {
	r := newRig(t, time.Minute)
	att, err := r.attach(7, 100)
	if err != nil || att.Resumed {
		t.Fatalf("attach: %+v %v", att, err)
	}
	if m, v := r.reply(); m.Seq != 0 || v.(*Count).N != 0 {
		t.Fatalf("OnAttach push: %+v %+v", m, v)
	}
	r.request(att.Actor, 100, 1, &Inc{By: 2})
	r.request(att.Actor, 100, 2, &Inc{By: 3})
	for _, w := range []struct {
		seq  uint32
		want int
	}{{1, 2}, {2, 5}} {
		seq, want := w.seq, w.want
		m, v := r.reply()
		if m.Seq != seq || v.(*Count).N != want {
			t.Fatalf("reply %d: seq %d %+v", seq, m.Seq, v)
		}
	}
	r.request(att.Actor, 100, 3, &Fail{})
	if m, v := r.reply(); m.Seq != 3 || v.(*services.Error).Code != "nope" {
		t.Fatalf("error reply: %+v %+v", m, v)
	}
	r.request(att.Actor, 100, 4, &Fail{Panic: true})
	if m, v := r.reply(); m.Seq != 4 || v.(*services.Error).Code != services.ErrCodeInternal {
		t.Fatalf("panic reply: %+v %+v", m, v)
	}
	r.request(att.Actor, 100, 5, &services.Ping{}) // registered, but no handler
	if _, v := r.reply(); v.(*services.Error).Code != services.ErrCodeNoHandler {
		t.Fatalf("no handler: %+v", v)
	}
	r.node.Send(att.Actor, &services.ClientRequest{SessionID: 100, Seq: 6, MsgID: 10001, Payload: []byte{0xc1}})
	if _, v := r.reply(); v.(*services.Error).Code != game.CodeBadRequest {
		t.Fatalf("undecodable payload: %+v", v)
	}
	// A request from a session that is not (or no longer) attached is ignored.
	r.request(att.Actor, 999, 7, &Inc{By: 1})
	r.request(att.Actor, 100, 8, &Inc{By: 1})
	if m, v := r.reply(); m.Seq != 8 || v.(*Count).N != 6 {
		t.Fatalf("stale session's request was handled: %+v %+v", m, v)
	}
}

func TestSecondAttachKicksTheFirstAndResumes(t *testing.T) {
	r := newRig(t, time.Minute)
	att, _ := r.attach(7, 100)
	r.reply()
	r.request(att.Actor, 100, 1, &Inc{By: 4})
	r.reply()
	att2, err := r.attach(7, 200)
	if err != nil || !att2.Resumed || att2.Actor != att.Actor {
		t.Fatalf("second attach: %+v %v", att2, err)
	}
	select {
	case k := <-r.kicks:
		if k.SessionID != 100 || k.Code != services.KickElsewhere {
			t.Fatalf("kick %+v", k)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("first session not kicked")
	}
	if _, v := r.reply(); v.(*Count).N != 4 {
		t.Fatalf("resumed state %+v", v)
	}
}

func TestGraceThenSaveAndReload(t *testing.T) {
	r := newRig(t, 200*time.Millisecond)
	att, _ := r.attach(7, 100)
	r.reply()
	r.request(att.Actor, 100, 1, &Inc{By: 9})
	r.reply()
	r.node.Send(att.Actor, &services.Detach{PlayerID: 7, Incarnation: r.node.Incarnation(), SessionID: 100})
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec, err := r.store.Load(context.Background(), 7)
		if err == nil {
			var c counter
			msgpack.Unmarshal(rec.Data, &c)
			if c.N != 9 || rec.Version != 1 {
				t.Fatalf("saved %+v version %d", c, rec.Version)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not saved after the grace period: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for time.Now().Before(deadline) {
		if err := r.node.Send(att.Actor, &services.Detach{}); errors.Is(err, framework.ErrActorNotFound) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	att2, err := r.attach(7, 300)
	if err != nil || att2.Resumed {
		t.Fatalf("attach after retire: %+v %v", att2, err)
	}
	if _, v := r.reply(); v.(*Count).N != 9 {
		t.Fatalf("reloaded %+v", v)
	}
}

func TestCorruptRecordIsRefusedNotReset(t *testing.T) {
	r := newRig(t, time.Minute)
	if err := r.store.Save(context.Background(), []store.Record{{ID: 8, Version: 3, Data: []byte("not msgpack at all \xc1")}}); err != nil {
		t.Fatal(err)
	}
	_, err := r.attach(8, 100)
	var re *framework.RemoteError
	if !errors.As(err, &re) || re.Code != "corrupt_record" {
		t.Fatalf("attach of a corrupt player: %v", err)
	}
	rec, err := r.store.Load(context.Background(), 8)
	if err != nil || rec.Version != 3 || string(rec.Data) != "not msgpack at all \xc1" {
		t.Fatalf("the corrupt record was touched: %+v %v", rec, err)
	}
	// It stays refused (the actor is retired, not left half-alive).
	time.Sleep(50 * time.Millisecond)
	if _, err := r.attach(8, 101); !errors.As(err, &re) || re.Code != "corrupt_record" {
		t.Fatalf("second attach: %v", err)
	}
}

func decodeCounter(t *testing.T, b []byte) counter {
	var c counter
	if err := msgpack.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

type Give struct {
	To uint64
	N  int
}

// Exchange moves value between two players in one transaction: both records
// are committed together, or (when the commit fails) neither player changes.
func TestExchangeIsAllOrNothing(t *testing.T) {
	r := newRig(t, time.Minute, func(c *rigConfig) { c.withGive = true })
	a, _ := r.attach(1, 100)
	r.reply()
	b, _ := r.attach(2, 200)
	r.reply()
	r.request(a.Actor, 100, 1, &Inc{By: 10})
	r.reply()
	r.request(b.Actor, 200, 1, &Inc{By: 1})
	r.reply()

	r.request(a.Actor, 100, 2, &Give{To: 2, N: 4})
	if m, v := r.reply(); m.Seq != 2 || v.(*Count).N != 6 {
		t.Fatalf("give: %+v %+v", m, v)
	}
	ctx := context.Background()
	ra, _ := r.store.Load(ctx, 1)
	rb, _ := r.store.Load(ctx, 2)
	if decodeCounter(t, ra.Data).N != 6 || decodeCounter(t, rb.Data).N != 5 {
		t.Fatalf("committed %d and %d, want 6 and 5", decodeCounter(t, ra.Data).N, decodeCounter(t, rb.Data).N)
	}
	// B's actor took the committed state too.
	r.request(b.Actor, 200, 2, &Inc{By: 0})
	if _, v := r.reply(); v.(*Count).N != 5 {
		t.Fatalf("peer's live state %+v", v)
	}

	// B was acquired again (a new epoch: as when another node takes it):
	// the next exchange cannot commit, and neither player changes, in
	// memory or in the store.
	if _, err := r.store.Acquire(ctx, 2, r.lease.Owner()); err != nil {
		t.Fatal(err)
	}
	r.request(a.Actor, 100, 3, &Give{To: 2, N: 1})
	if _, v := r.reply(); v.(*services.Error).Code != game.CodeExchange {
		t.Fatalf("exchange against a newer record: %+v", v)
	}
	ra2, _ := r.store.Load(ctx, 1)
	if decodeCounter(t, ra2.Data).N != 6 || ra2.Version != ra.Version {
		t.Fatalf("initiator's record changed by an aborted exchange: %+v", ra2)
	}
	r.request(a.Actor, 100, 4, &Inc{By: 0})
	if _, v := r.reply(); v.(*Count).N != 6 {
		t.Fatalf("initiator's live state after abort %+v", v)
	}
	r.request(b.Actor, 200, 3, &Inc{By: 0}) // B is unlocked and unchanged
	if _, v := r.reply(); v.(*Count).N != 5 {
		t.Fatalf("peer after abort %+v", v)
	}
	r.request(a.Actor, 100, 5, &Give{To: 3, N: 1})
	if _, v := r.reply(); v.(*services.Error).Code != game.CodePeerOffline {
		t.Fatalf("exchange with an offline player: %+v", v)
	}
}

// A trade whose commit went through but whose acknowledgement was lost is
// done: it is reported done (not failed), and both players hold what the
// store holds and keep saving. Whether the commit is retried (the retry
// writes the same states at the next version) or, the database being down
// until the exchange's deadline, the outcome is read back from the store.
func TestExchangeWithALostAcknowledgementIsDone(t *testing.T) {
	for _, down := range []bool{false, true} {
		t.Run(map[bool]string{false: "retried", true: "read back"}[down], func(t *testing.T) {
			r := newRig(t, time.Minute, func(c *rigConfig) { c.withGive, c.exchange = true, time.Second })
			a, _ := r.attach(1, 100)
			r.reply()
			b, _ := r.attach(2, 200)
			r.reply()
			r.request(a.Actor, 100, 1, &Inc{By: 10})
			r.reply()

			r.flaky.downAfter.Store(down)
			r.flaky.loseAck.Store(true)
			r.request(a.Actor, 100, 2, &Give{To: 2, N: 4})
			_, v := r.reply()
			r.flaky.failing.Store(false)
			if c, ok := v.(*Count); !ok || c.N != 6 {
				t.Fatalf("a committed trade was reported as %+v", v)
			}
			if n1, n2 := r.stored(1), r.stored(2); n1 != 6 || n2 != 4 {
				t.Fatalf("the store holds %d and %d, want 6 and 4", n1, n2)
			}
			r.request(b.Actor, 200, 1, &Inc{By: 0})
			if _, v := r.reply(); v.(*Count).N != 4 {
				t.Fatalf("the peer's live state %+v, want 4", v)
			}
			r.request(a.Actor, 100, 3, &Inc{By: 1})
			r.reply()
			r.request(b.Actor, 200, 2, &Inc{By: 1})
			r.reply()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r.node.StopActor(ctx, a.Actor)
			r.node.StopActor(ctx, b.Actor)
			if n1, n2 := r.stored(1), r.stored(2); n1 != 7 || n2 != 5 {
				t.Fatalf("after stopping, the store holds %d and %d, want 7 and 5", n1, n2)
			}
		})
	}
}

// A handler sees one tables version for its whole message: a reload while
// it runs changes what the next message sees, not this one.
func TestHandlerSeesOneTablesVersion(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tables.bin")
	orig, err := os.ReadFile("sample/gamedata/" + export.DataFile)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, orig, 0o644)
	h, err := tables.NewHolder(gamedata.Schema, tables.HolderConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	// A second version: the sources with one price changed.
	v2, _ := tablestest.Export(t, "sample/gamedata/src", tablestest.Replace("Item.csv", "2,bread,Bread,Consumable,5,", "2,bread,Bread,Consumable,6,"))
	os.WriteFile(path, v2, 0o644)

	r := newRig(t, time.Minute, func(c *rigConfig) { c.tables = h })
	att, _ := r.attach(1, 100)
	r.reply()
	r.request(att.Actor, 100, 1, &Versions{})
	_, v := r.reply()
	got := v.(*Versions)
	if got.First != got.Second || got.First == got.Current {
		t.Fatalf("handler saw %s then %s; the holder now has %s", got.First, got.Second, got.Current)
	}
	r.request(att.Actor, 100, 2, &Versions{}) // the next message sees the new version
	if _, v := r.reply(); v.(*Versions).First != got.Current {
		t.Fatalf("next message saw %s, want %s", v.(*Versions).First, got.Current)
	}
}

// stored reads player id's counter from the store (-1 if never saved).
func (r *rig) stored(id uint64) int {
	r.t.Helper()
	rec, err := r.store.Load(context.Background(), id)
	if errors.Is(err, store.ErrNotFound) || err == nil && rec.Data == nil {
		return -1
	}
	if err != nil {
		r.t.Fatal(err)
	}
	return decodeCounter(r.t, rec.Data).N
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A fenced copy stops at once: when the store says another owner took the
// player (a newer epoch), this node's copy saves nothing more, tells its
// client to log in again and retires. It never picks a newer version and
// overwrites the other owner's progress.
func TestFencedPlayerStopsAtOnce(t *testing.T) {
	r := newRig(t, time.Minute, func(c *rigConfig) { c.saveInterval = 100 * time.Millisecond })
	att, err := r.attach(1, 100)
	if err != nil {
		t.Fatal(err)
	}
	r.reply()
	r.request(att.Actor, 100, 1, &Inc{By: 1})
	r.reply()
	eventually(t, "the first change to be saved", func() bool { return r.stored(1) == 1 })

	// Another node takes the player over (here: the copy's handoff is
	// forged in the store) and saves its own progress.
	ctx := context.Background()
	_, epoch, err := r.store.OwnerOf(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.store.Release(ctx, store.Record{ID: 1, Epoch: epoch}); err != nil {
		t.Fatal(err)
	}
	other, err := store.StartLease(ctx, r.store, "game-2", store.LeaseConfig{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer other.End(ctx)
	rec, err := r.store.Acquire(ctx, 1, other.Owner())
	if err != nil {
		t.Fatal(err)
	}
	data, _ := msgpack.Marshal(&counter{N: 100})
	if err := r.store.Save(ctx, []store.Record{{ID: 1, Epoch: rec.Epoch, Data: data}}); err != nil {
		t.Fatal(err)
	}

	// The stale copy changes the player again; its save is refused.
	r.request(att.Actor, 100, 2, &Inc{By: 1})
	r.reply()
	select {
	case k := <-r.kicks:
		if k.SessionID != 100 || k.Code != services.KickUnavailable {
			t.Fatalf("kick %+v", k)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the fenced copy kept its session")
	}
	eventually(t, "the fenced copy to retire", func() bool {
		return errors.Is(r.node.Send(att.Actor, &services.Detach{}), framework.ErrActorNotFound)
	})
	if n := r.stored(1); n != 100 {
		t.Fatalf("the store holds %d, want the new owner's 100", n)
	}
}

// A player who logs in on another game node (the gates route it there now)
// while the node that has it still holds it: that node hands it off at
// once (its session is told it logged in elsewhere, its state is saved
// and released in one transaction) and the new node starts from that
// state, with no wait for a lease or a grace period.
func TestLoginElsewhereHandsThePlayerOff(t *testing.T) {
	on := cluster(t)
	a := newRig(t, time.Hour, on("game-1"))
	bb := newRig(t, time.Hour, on("game-2"))
	eventually(t, "the nodes to know each other", func() bool {
		_, ok1 := a.node.Members().Get("game", "game-2")
		_, ok2 := bb.node.Members().Get("game", "game-1")
		return ok1 && ok2
	})
	att, err := a.attach(1, 100)
	if err != nil {
		t.Fatal(err)
	}
	a.reply()
	a.request(att.Actor, 100, 1, &Inc{By: 7})
	a.reply() // acknowledged, not saved yet (the save interval is an hour)

	att2, err := bb.attach(1, 200)
	if err != nil {
		t.Fatalf("login on the other node: %v", err)
	}
	if _, v := bb.reply(); v.(*Count).N != 7 {
		t.Fatalf("the new node starts from %+v, want the acknowledged 7", v)
	}
	select {
	case k := <-a.kicks:
		if k.SessionID != 100 || k.Code != services.KickElsewhere {
			t.Fatalf("kick %+v", k)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the old session was not told")
	}
	bb.request(att2.Actor, 200, 1, &Inc{By: 1})
	if _, v := bb.reply(); v.(*Count).N != 8 {
		t.Fatalf("after the handoff %+v", v)
	}
}

// cluster starts a broker and a store that rigs share: on(id) makes a rig
// the game node id of that cluster.
func cluster(t *testing.T) (on func(id string) func(*rigConfig)) {
	t.Helper()
	b, err := mq.StartBroker(mq.BrokerConfig{DataDir: t.TempDir(), TCPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		NoLookupd: true, Keys: keys(t), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	bolt, err := store.OpenBolt(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bolt.Close() })
	return func(id string) func(*rigConfig) {
		return func(c *rigConfig) {
			bc := b.BusConfig()
			c.id, c.bus, c.store = id, &bc, bolt
		}
	}
}

func keys(t *testing.T) *mq.Keyring {
	k, err := mq.ParseKeyring(mq.GenerateKeyring())
	if err != nil {
		t.Fatal(err)
	}
	return k
}
