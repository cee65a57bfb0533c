// Package citadel is the Citadel server a studio imports: it wires login,
// gate and game nodes, NSQ (embedded or external), the store (bbolt or
// PostgreSQL), designer tables and plugins around a game, and runs them
// with flags, an admin HTTP port, signals and drains.
//
// A studio's game is a game.Game: its client messages and the service it
// builds on each game node (typically game.New with its handlers, with
// game.WithEnv filling in what the server prepared). Its main is:
//
//	package main
//
//	import "github.com/citadel-go/citadel"
//
//	func main() { citadel.Main(&mygame.Game{}) }
//
// cmd/citadel is that main for Citadel's sample game; examples/standalone
// is a studio's game in a module of its own; docs/game.md walks through
// one.
package citadel

import "github.com/citadel-go/citadel/game"

// Game is a whole game as the server runs it; see game.Game.
type Game = game.Game
