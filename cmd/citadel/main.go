// Command citadel runs a Citadel server with the sample game. With no flags
// it runs every role in one process: embedded NSQ, embedded store (bbolt in
// -data), login, gate and a game node with the sample game, its tables and
// its combat plugin. -role runs some roles only, against an external NSQ
// cluster given by -nsqd/-lookupd. citadel -h lists every flag.
//
// A studio's own server is the same few lines with its own game: see
// docs/game.md and examples/standalone.
package main

import (
	"github.com/citadel-go/citadel"
	"github.com/citadel-go/citadel/game/sample"
)

func main() { citadel.Main(&sample.Game{}) }
