// Package services holds the contracts between Citadel's services and
// clients: service names, message structs with their stable IDs, and error
// codes. It has no logic; login, gate and game share only this package and
// talk over the mq.
//
// The envelope and system messages the runtime itself needs (remote
// envelopes, heartbeats) live in framework, which services builds on.
package services

// Service names: the framework.NodeConfig.Service of each role.
const (
	Login = "login"
	Gate  = "gate"
	Game  = "game"
)

// Message ID ranges (see framework.MsgID). IDs are assigned by hand and
// never reused, so old clients and nodes keep working across releases.
const (
	// FrameworkIDs are reserved for the framework: 1–99.
	FrameworkIDs = 1
	// ServiceIDs are Citadel's own contracts (login, gate, game): 100–9999.
	ServiceIDs = 100
	// GameIDs are free for a studio's game messages: 10000 and up.
	GameIDs = 10000
)
