package services

import "github.com/citadel-go/citadel/framework"

// Messages for plugins across game nodes (IDs 220–229).
type (
	// SwapPlugin asks a game node's plugins actor to swap plugin Name to
	// the binary at Path (on that node's disk); the reply is PluginsStatus.
	SwapPlugin struct {
		Name string
		Path string
	}
	// RollbackPlugin asks for the version that ran before the last swap.
	RollbackPlugin struct{ Name string }
	// QueryPlugins asks what a node runs; the reply is PluginsStatus.
	QueryPlugins struct{}
	// PluginsStatus lists a node's plugins; Error says why a swap or
	// rollback was refused (the running version stays).
	PluginsStatus struct {
		Node    string
		Plugins []PluginStatus
		Error   string
	}
	// PluginStatus is one loaded plugin.
	PluginStatus struct {
		Name, Version, Path, SHA256, State string
		PID, Restarts                      int
	}
)

// GamePluginsActor is the actor on every game node that handles
// SwapPlugin, RollbackPlugin and QueryPlugins.
const GamePluginsActor = "plugins"

// Message IDs for plugins.
const (
	IDSwapPlugin     framework.MsgID = 220
	IDRollbackPlugin framework.MsgID = 221
	IDQueryPlugins   framework.MsgID = 222
	IDPluginsStatus  framework.MsgID = 223
)

// RegisterPlugins registers the plugins contracts.
func RegisterPlugins(r *framework.Registry) error {
	return registerAll(r, map[framework.MsgID]any{
		IDSwapPlugin: (*SwapPlugin)(nil), IDRollbackPlugin: (*RollbackPlugin)(nil),
		IDQueryPlugins: (*QueryPlugins)(nil), IDPluginsStatus: (*PluginsStatus)(nil),
	})
}
