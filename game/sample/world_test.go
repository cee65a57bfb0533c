package sample_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/game"
	"github.com/citadel-go/citadel/game/sample"
	"github.com/citadel-go/citadel/game/sample/gamedata"
	"github.com/citadel-go/citadel/mq"
	"github.com/citadel-go/citadel/services"
	"github.com/citadel-go/citadel/tables"
)

// A player who hunts is rewarded by the next world event: the world actor
// reaches it by ID, its handler adds the XP, and its client gets a push.
func TestWorldEventRewardsHunters(t *testing.T) {
	keys, err := mq.ParseKeyring(mq.GenerateKeyring())
	if err != nil {
		t.Fatal(err)
	}
	broker, err := mq.StartBroker(mq.BrokerConfig{DataDir: t.TempDir(), TCPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		NoLookupd: true, Keys: keys, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Close() })
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	saver, err := game.NewSaver(game.SaverConfig{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { saver.Stop(context.Background()) })
	lease, err := store.StartLease(context.Background(), st, "game-1", store.LeaseConfig{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	bc := broker.BusConfig()
	bc.Keys = keys
	node, err := framework.NewNode(framework.NodeConfig{Service: services.Game, ID: "game-1", Registry: framework.NewRegistry(),
		MQ: &bc, Logger: slog.New(slog.DiscardHandler), Incarnation: lease.Owner().Incarnation, MemberTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	holder, err := tables.NewHolder(gamedata.Schema, tables.HolderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := sample.New(node, st, sample.Options{Saver: saver, Lease: lease, Grace: time.Minute, Tables: holder,
		WorldEventEvery: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := node.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Stop(context.Background()) })
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	// The session's gate: an actor that collects what reaches the client.
	frames := make(chan *services.ToClient, 100)
	gate, err := node.Spawn(services.GateSessionsActor, func() framework.Actor {
		return framework.ActorFunc(func(c *framework.Context) {
			if m, ok := c.Message().(*services.ToClient); ok {
				frames <- m
			}
		})
	}, framework.SpawnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := node.Call(ctx, node.ActorAddr(services.GameActorManager),
		&services.Attach{PlayerID: 42, Session: services.SessionRef{Gate: gate, Incarnation: node.Incarnation(), ID: 1}})
	if err != nil {
		t.Fatal(err)
	}
	var monster int32
	for id := range holder.Current().MonsterByID {
		monster = id
		break
	}
	id, payload, _ := node.Registry().Marshal(&services.Hunt{Monster: monster})
	node.Send(res.(*services.Attached).Actor, &services.ClientRequest{SessionID: 1, Seq: 1, MsgID: id, Payload: payload})
	var xp int64
	deadline := time.After(20 * time.Second)
	for {
		select {
		case f := <-frames:
			v, err := node.Registry().Unmarshal(f.MsgID, f.Payload)
			if err != nil {
				t.Fatal(err)
			}
			switch v := v.(type) {
			case *services.Hunted:
				xp = v.XP
			case *services.WorldBonus:
				if v.XPGain <= 0 || v.XP != xp+v.XPGain || v.Event == "" {
					t.Fatalf("bonus %+v after a hunt that left %d XP", v, xp)
				}
				return
			}
		case <-deadline:
			t.Fatal("no world bonus reached the hunter")
		}
	}
}
