package services

import "github.com/citadel-go/citadel/framework"

// Messages for designer tables across game nodes (IDs 210–219).
type (
	// ReloadTables asks a game node's tables actor to reload its tables
	// file; the reply is TablesStatus.
	ReloadTables struct{}
	// QueryTables asks for the version a game node runs; the reply is
	// TablesStatus.
	QueryTables struct{}
	// TablesStatus reports the tables a node runs after a reload or query;
	// Error says why a reload was refused (the node keeps Version).
	TablesStatus struct {
		Node    string
		Version string
		Error   string
	}
)

// GameTablesActor is the actor on every game node that handles
// ReloadTables and QueryTables.
const GameTablesActor = "tables"

// Message IDs for tables.
const (
	IDReloadTables framework.MsgID = 210
	IDQueryTables  framework.MsgID = 211
	IDTablesStatus framework.MsgID = 212
)

// RegisterTables registers the tables contracts.
func RegisterTables(r *framework.Registry) error {
	return registerAll(r, map[framework.MsgID]any{
		IDReloadTables: (*ReloadTables)(nil), IDQueryTables: (*QueryTables)(nil), IDTablesStatus: (*TablesStatus)(nil),
	})
}
