package sample

import (
	"flag"
	"fmt"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/game"
	"github.com/citadel-go/citadel/game/sample/gamedata"
	"github.com/citadel-go/citadel/tables"
)

// Game is the sample game as Citadel's server runs it (cmd/citadel passes
// one to citadel.Main). Its settings are flags of the server.
type Game struct {
	// TradeOfferTTL: see Options. Default 1m.
	TradeOfferTTL time.Duration
	// WorldEventEvery: see Options. Default 1m.
	WorldEventEvery time.Duration
}

// Register implements game.Game.
func (g *Game) Register(reg *framework.Registry) error { return Register(reg) }

// Flags adds the sample game's settings to the server's flags.
func (g *Game) Flags(fs *flag.FlagSet) {
	fs.DurationVar(&g.TradeOfferTTL, "trade-offer-ttl", time.Minute, "how long a sample game trade offer waits for the other player's answer")
	fs.DurationVar(&g.WorldEventEvery, "world-event-every", time.Minute, "how often the sample game's world rewards the players who hunted since its last event")
}

// CheckFlags reports every bad setting at once, as the server's own
// flag checks do.
func (g *Game) CheckFlags() []string {
	var bad []string
	if g.TradeOfferTTL <= 0 {
		bad = append(bad, fmt.Sprintf("-trade-offer-ttl %v: want more than 0", g.TradeOfferTTL))
	}
	if g.WorldEventEvery <= 0 {
		bad = append(bad, fmt.Sprintf("-world-event-every %v: want more than 0", g.WorldEventEvery))
	}
	return bad
}

// PluginSources names the example plugins the server builds into its
// plugin folder on a first run from Citadel's source tree (package path
// by plugin name), so `go run ./cmd/citadel` plays with the combat plugin.
func (g *Game) PluginSources() map[string]string {
	return map[string]string{"combat": "./plugins/examples/combat/v1"}
}

// NewService implements game.Game: the tables (built in, or env's file,
// watched if asked), the world and the sample's handlers.
func (g *Game) NewService(node *framework.Node, env game.Env) (game.Runner, error) {
	h, err := tables.NewHolder(gamedata.Schema, tables.HolderConfig{Path: env.TablesPath, Logger: env.Logger, Metrics: env.Metrics})
	if err != nil {
		if env.TablesPath != "" {
			return nil, fmt.Errorf("-tables %s: %w", env.TablesPath, err)
		}
		return nil, fmt.Errorf("tables: %w", err)
	}
	source := env.TablesPath
	if source == "" {
		source = "built in; -tables FILE to load another"
	}
	env.Logger.Info("tables loaded", "version", h.Current().Version, "from", source)
	if env.TablesWatch > 0 {
		go h.Watch(env.Context, env.TablesWatch)
	}
	return New(node, env.Store, Options{Saver: env.Saver, Lease: env.Lease, SaveInterval: env.SaveInterval, Grace: env.Grace,
		Metrics: env.Metrics, Tables: h, Plugins: env.Plugins, TradeOfferTTL: g.TradeOfferTTL,
		DrainRate: env.DrainRate, RebalanceRate: env.RebalanceRate, WorldEventEvery: g.WorldEventEvery})
}
