package sample

import (
	"math/rand/v2"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/game"
	"github.com/citadel-go/citadel/game/sample/gamedata"
	"github.com/citadel-go/citadel/services"
	"github.com/prometheus/client_golang/prometheus"
)

// The world: one actor per game node that runs world events. Players tell
// it when they hunt; every WorldEventEvery it picks an event and rewards
// each player who hunted on this node since the last one, by player ID
// (game.SendToPlayer): the bonus reaches the player wherever it is now,
// online on another node, or offline (the player is loaded, rewarded and
// saved).

// worldActor is the world actor's name on every game node.
const worldActor = "world"

// maxHunters bounds the players one world event rewards (and the memory
// the world actor holds between events).
const maxHunters = 100_000

// worldEvents are the events the world picks from, with their XP bonus.
var worldEvents = []struct {
	name string
	xp   int64
}{{"meteor shower", 5}, {"harvest moon", 3}, {"dragon sighting", 8}}

type (
	// hunted tells the world actor a player hunted (local).
	hunted struct{ player uint64 }
	// worldTick starts a world event (local, the world's own timer).
	worldTick struct{}
	// worldBonus is the reward the world sends a player by ID; it crosses
	// game nodes.
	worldBonus struct {
		Event string
		XP    int64
	}
)

// registerWorld registers the world's messages on a game node.
func registerWorld(reg *framework.Registry) error {
	for id, m := range map[framework.MsgID]any{1100: (*hunted)(nil), 1101: (*worldTick)(nil), 1102: (*worldBonus)(nil)} {
		if err := reg.Register(id, m); err != nil {
			return err
		}
	}
	return nil
}

// startWorld spawns the world actor on a game node.
func startWorld(node *framework.Node, opts Options) error {
	w := &world{every: opts.WorldEventEvery, hunters: make(map[uint64]struct{}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "citadel_sample_world_hunters_dropped_total",
			Help: "Hunters a world event could not reward because more than 100,000 hunted since the last one."}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "citadel_sample_world_bonuses_total",
			Help: "World bonuses sent to players, by event."}, []string{"event"})}
	if w.every <= 0 {
		w.every = time.Minute
	}
	if opts.Metrics != nil {
		for _, c := range []prometheus.Collector{w.dropped, w.events} {
			if err := opts.Metrics.Register(c); err != nil {
				return err
			}
		}
	}
	_, err := node.Spawn(worldActor, func() framework.Actor { return w }, framework.SpawnOptions{Kind: "world", MailboxSize: 4096})
	return err
}

// world is the world actor.
type world struct {
	every   time.Duration
	hunters map[uint64]struct{}
	dropped prometheus.Counter
	events  *prometheus.CounterVec
}

func (w *world) Receive(c *framework.Context) {
	switch m := c.Message().(type) {
	case framework.Started:
		if _, err := c.Every(w.every, &worldTick{}); err != nil {
			c.Logger().Error("the world cannot schedule its events", "err", err)
		}
	case *hunted:
		if len(w.hunters) < maxHunters {
			w.hunters[m.player] = struct{}{}
		} else if _, ok := w.hunters[m.player]; !ok {
			w.dropped.Inc()
		}
	case *worldTick:
		if len(w.hunters) == 0 {
			return
		}
		ev := worldEvents[rand.IntN(len(worldEvents))]
		for id := range w.hunters {
			if err := game.SendToPlayer(c.Node(), id, &worldBonus{Event: ev.name, XP: ev.xp}); err != nil {
				c.Logger().Warn("a world bonus did not go out", "player", id, "err", err)
			}
		}
		w.events.WithLabelValues(ev.name).Add(float64(len(w.hunters)))
		c.Logger().Info("world event", "event", ev.name, "players", len(w.hunters))
		clear(w.hunters)
	}
}

// onWorldBonus rewards the player, and tells its client if it has one.
func onWorldBonus(p *Player, m *worldBonus) (*game.NoReply, error) {
	gainXP(gamedata.Of(p.Tables()), p.State, m.XP)
	p.MarkDirty()
	if _, ok := p.Session(); ok {
		p.Push(&services.WorldBonus{Event: m.Event, XPGain: m.XP, XP: p.State.XP, Level: p.State.Level})
	}
	return nil, nil
}
