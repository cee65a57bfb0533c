package game

import (
	"context"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/plugins"
	"github.com/citadel-go/citadel/services"
)

// Plugins returns the node's plugin host (nil if the service has none).
// Handlers call plugins through it; player state stays here, and what a
// plugin needs goes in the request.
func (p *Player[S]) Plugins() *plugins.Host { return p.svc.cfg.Plugins }

// startPlugins spawns the node's plugins actor, which swaps, rolls back
// and reports the node's plugins for the *Everywhere functions.
func (s *Service[S]) startPlugins() error {
	h := s.cfg.Plugins
	node := s.cfg.Node.Addr().Node
	_, err := s.cfg.Node.Spawn(services.GamePluginsActor, func() framework.Actor {
		return framework.ActorFunc(func(c *framework.Context) {
			var err error
			switch m := c.Message().(type) {
			case *services.SwapPlugin:
				_, err = h.Swap(m.Name, m.Path)
			case *services.RollbackPlugin:
				_, err = h.Rollback(m.Name)
			case *services.QueryPlugins:
			default:
				return
			}
			st := pluginsStatus(node, h)
			if err != nil {
				st.Error = err.Error()
			}
			c.Reply(st)
		})
	}, framework.SpawnOptions{Kind: "plugins"})
	return err
}

func pluginsStatus(node string, h *plugins.Host) *services.PluginsStatus {
	st := &services.PluginsStatus{Node: node}
	for _, p := range h.List() {
		st.Plugins = append(st.Plugins, services.PluginStatus{Name: p.Name, Version: p.Version, Path: p.Path,
			SHA256: p.SHA256, State: p.State, PID: p.PID, Restarts: p.Restarts})
	}
	return st
}

func askPlugins(ctx context.Context, n *framework.Node, msg any) []services.PluginsStatus {
	return askGameNodes(ctx, n, services.GamePluginsActor, msg, func(node string, err error) *services.PluginsStatus {
		return &services.PluginsStatus{Node: node, Error: err.Error()}
	})
}

// SwapPluginEverywhere asks every live game node, over the mq, to swap
// plugin name to the binary at path (each on its own disk: deploy the
// build to every node first) and returns what each runs after.
func SwapPluginEverywhere(ctx context.Context, n *framework.Node, name, path string) []services.PluginsStatus {
	return askPlugins(ctx, n, &services.SwapPlugin{Name: name, Path: path})
}

// RollbackPluginEverywhere rolls plugin name back on every live game node.
func RollbackPluginEverywhere(ctx context.Context, n *framework.Node, name string) []services.PluginsStatus {
	return askPlugins(ctx, n, &services.RollbackPlugin{Name: name})
}

// QueryPluginsEverywhere reports every live game node's plugins.
func QueryPluginsEverywhere(ctx context.Context, n *framework.Node) []services.PluginsStatus {
	return askPlugins(ctx, n, &services.QueryPlugins{})
}
