package farm

import (
	"fmt"

	"example.com/standalone/farm/farmdata"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/game"
	"github.com/citadel-go/citadel/tables"
)

// Game is the farm as Citadel's server runs it: main passes one to
// citadel.Main.
type Game struct{}

// Register implements game.Game.
func (g *Game) Register(reg *framework.Registry) error { return Register(reg) }

// NewService implements game.Game: the crops table (built in, or the
// operator's -tables file, watched if -tables-watch), the handlers and the
// timers.
func (g *Game) NewService(node *framework.Node, env game.Env) (game.Runner, error) {
	h, err := tables.NewHolder(farmdata.Schema, tables.HolderConfig{Path: env.TablesPath, Logger: env.Logger, Metrics: env.Metrics})
	if err != nil {
		return nil, fmt.Errorf("farm tables: %w", err)
	}
	if env.TablesWatch > 0 {
		go h.Watch(env.Context, env.TablesWatch)
	}
	var rules handlers
	r := game.NewRouter[State](node.Registry())
	game.MustHandle(r, rules.plant)
	game.MustHandle(r, rules.harvest)
	game.MustHandle(r, func(p *game.Player[State], _ *GetFarm) (*Farm, error) { return farmOf(p), nil })
	game.MustHandleMessage(r, rules.onGrown)
	return game.New(game.WithEnv(game.Config[State]{
		Router: r, Tables: h,
		NewState:   func(uint64) *State { return &State{Plots: make([]Plot, Plots)} },
		OnActivate: rules.onActivate,
		OnAttach:   func(p *game.Player[State]) { p.Push(farmOf(p)) },
	}, node, env))
}
