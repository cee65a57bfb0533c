package game_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/game"
	"github.com/citadel-go/citadel/services"
)

// Messages from actors and timers (test only).
type (
	// Gift adds N to a player's counter; the reply is the new Count.
	Gift struct{ N int }
	// Tick is a player's own timer message.
	Tick struct{}
	// Arm asks the player to arm a timer for a message it has no handler
	// for; the reply is the error.
	Arm struct{}
)

// mailCluster is two game nodes on one broker and one store, whose players
// take Gift from actors and count their own Ticks.
func mailCluster(t *testing.T, ticks *atomic.Int64) (a, b *rig) {
	t.Helper()
	cluster := cluster(t)
	on := func(id string) func(*rigConfig) {
		return func(c *rigConfig) {
			cluster(id)(c)
			c.routes = func(r *game.Router[counter]) {
				game.MustHandleMessage(r, func(p *game.Player[counter], m *Gift) (*Count, error) {
					p.State.N += m.N
					p.MarkDirty()
					return &Count{N: p.State.N}, nil
				})
				game.MustHandleMessage(r, func(p *game.Player[counter], _ *Tick) (*game.NoReply, error) {
					ticks.Add(1)
					return nil, nil
				})
				game.MustHandleMessage(r, func(p *game.Player[counter], _ *Arm) (*game.NoReply, error) {
					_, err := p.SendAfter(time.Millisecond, &Count{})
					return nil, framework.NewError("armed", errString(err))
				})
				if err := game.HandleMessage(r, func(p *game.Player[counter], m *Gift) (*game.NoReply, error) { return nil, nil }); err == nil {
					t.Error("a second handler for Gift was accepted")
				}
			}
			c.onActivate = func(p *game.Player[counter]) {
				if _, err := p.Every(20*time.Millisecond, &Tick{}); err != nil {
					t.Errorf("arm the tick: %v", err)
				}
			}
		}
	}
	// A short grace: players loaded for a message save and leave soon.
	a = newRig(t, 300*time.Millisecond, on("game-1"))
	b = newRig(t, 300*time.Millisecond, on("game-2"))
	eventually(t, "the nodes to know each other", func() bool {
		_, ok1 := a.node.Members().Get("game", "game-2")
		_, ok2 := b.node.Members().Get("game", "game-1")
		return ok1 && ok2
	})
	return a, b
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// An actor reaches a player by ID: a player online nowhere is loaded for
// the message (on the node the ring picks), handles it, saves and leaves
// after its grace; a player online on another node than the one the ring
// picks gets it there, with its session untouched; a player's own timers
// reach its handlers; mistakes get clear errors.
func TestActorsReachPlayersByID(t *testing.T) {
	var ticks atomic.Int64
	a, b := mailCluster(t, &ticks)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Online nowhere: loaded for the message, saved, gone after the grace.
	r, err := game.CallPlayer(ctx, a.node, 5, &Gift{N: 3})
	if err != nil {
		t.Fatalf("call a player online nowhere: %v", err)
	}
	if r.(*Count).N != 3 {
		t.Fatalf("reply %+v, want N 3", r)
	}
	if r, err = game.CallPlayer(ctx, b.node, 5, &Gift{N: 4}); err != nil || r.(*Count).N != 7 {
		t.Fatalf("second gift: %+v %v, want N 7", r, err)
	}
	eventually(t, "the loaded player's timer to tick", func() bool { return ticks.Load() > 0 })
	eventually(t, "the loaded player to save and leave", func() bool {
		owner, _, err := a.store.OwnerOf(ctx, 5)
		return err == nil && owner.Node == "" && a.stored(5) == 7
	})

	// Online on game-1 though the ring picks game-2 for it: the message
	// passes on to game-1; the session stays.
	var id uint64
	for id = 100; ; id++ {
		if m, ok := a.node.Members().Pick(services.Game, strconv.FormatUint(id, 10)); ok && m.Node == "game-2" {
			break
		}
	}
	att, err := a.attach(id, 1)
	if err != nil {
		t.Fatal(err)
	}
	a.reply() // OnAttach's push
	if r, err = game.CallPlayer(ctx, a.node, id, &Gift{N: 2}); err != nil || r.(*Count).N != 2 {
		t.Fatalf("gift to a player online elsewhere: %+v %v, want N 2", r, err)
	}
	if err := game.SendToPlayer(b.node, id, &Gift{N: 5}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the sent gift to arrive", func() bool {
		r, err := game.CallPlayer(ctx, a.node, id, &Gift{})
		return err == nil && r.(*Count).N == 7
	})
	a.request(att.Actor, 1, 1, &Inc{By: 1})
	if _, v := a.reply(); v.(*Count).N != 8 {
		t.Fatalf("the client sees %+v, want both gifts and its own change (8)", v)
	}
	select {
	case k := <-a.kicks:
		t.Fatalf("the session was kicked: %+v", k)
	default:
	}

	// Mistakes: a timer for a message without a handler, a message
	// without a handler, an unregistered message.
	_, err = game.CallPlayer(ctx, a.node, id, &Arm{})
	var re *framework.RemoteError
	if !errors.As(err, &re) || re.Code != "armed" || !strings.Contains(re.Message, "no handler") {
		t.Fatalf("arming a timer for an unhandled message: %v", err)
	}
	_, err = game.CallPlayer(ctx, a.node, id, &Count{})
	if !errors.As(err, &re) || re.Code != services.ErrCodeNoHandler {
		t.Fatalf("a message without a handler: %v", err)
	}
	type unregistered struct{}
	if err := game.SendToPlayer(a.node, id, &unregistered{}); err == nil {
		t.Fatal("an unregistered message was sent")
	}
}
