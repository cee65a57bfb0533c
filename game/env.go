package game

import (
	"context"
	"log/slog"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/plugins"
	"github.com/prometheus/client_golang/prometheus"
)

// Game is a whole game as Citadel's server (package citadel) runs it: the
// client messages its gates accept, and the service it builds on each game
// node. A studio's main passes one to citadel.Main.
type Game interface {
	// Register adds the game's client messages (requests, replies,
	// pushes) and any messages its actors exchange to reg. The server
	// calls it for the gates' client registry (client frames are checked
	// against it) and for every node's registry.
	Register(reg *framework.Registry) error
	// NewService builds the game's service on a game node that has not
	// started yet (the node's registry holds Register's messages). The
	// server starts it once the node has started, drains it before a
	// stop, and stops the process if it reports Stopped.
	NewService(node *framework.Node, env Env) (Runner, error)
}

// Runner is a game's service as the server drives it; *Service[S] is one.
type Runner interface {
	// Start starts serving players, once the node has started.
	Start() error
	// Drain hands the node's players to the other game nodes before a
	// stop (see Service.Drain).
	Drain(ctx context.Context) error
	// Stopped reports why the service stopped serving players on its own.
	Stopped() <-chan error
}

// Env is what the server prepared for a game's service on a game node:
// the store and its lease, the save pipeline, plugins, metrics and the
// operator's settings. WithEnv copies it into a Config.
type Env struct {
	Store   store.Store
	Lease   *store.LeaseKeeper
	Saver   *Saver
	Plugins *plugins.Host // nil without a plugin folder
	Metrics prometheus.Registerer
	Logger  *slog.Logger
	// Settings from the server's flags (see Config).
	SaveInterval, Grace      time.Duration
	DrainRate, RebalanceRate float64
	// TablesPath is the designer tables data file the operator chose (""
	// for the tables built into the game), and TablesWatch how often to
	// reload it when it changes (0: only on POST /tables/reload).
	TablesPath  string
	TablesWatch time.Duration
	// Context is cancelled when the server stops: background work (a
	// table watch) ends with it.
	Context context.Context
}

// WithEnv returns cfg with the node and everything env holds filled in
// (cfg's Router, NewState, OnAttach, Tables and the other game-specific
// fields stay as given).
func WithEnv[S any](cfg Config[S], node *framework.Node, env Env) Config[S] {
	cfg.Node, cfg.Store, cfg.Lease, cfg.Saver, cfg.Plugins = node, env.Store, env.Lease, env.Saver, env.Plugins
	cfg.Metrics, cfg.Logger = env.Metrics, env.Logger
	cfg.SaveInterval, cfg.Grace, cfg.DrainRate, cfg.RebalanceRate = env.SaveInterval, env.Grace, env.DrainRate, env.RebalanceRate
	return cfg
}
