// Command citadel runs a Citadel server with the sample game. With no flags
// it runs every role in one process: embedded NSQ, embedded store (bbolt in
// -data), login, gate and a game node with the sample game, its tables and
// its combat plugin; -web serves the sample's browser client. -role runs
// some roles only, against an external NSQ cluster given by -nsqd/-lookupd.
// citadel -h lists every flag.
//
// A studio's own server is the same few lines with its own game: see
// docs/game.md and examples/standalone.
package main

import (
	"net/http"

	"github.com/citadel-go/citadel"
	"github.com/citadel-go/citadel/client/web"
	"github.com/citadel-go/citadel/game/sample"
)

// sampleGame is the sample game with its browser client (client/web,
// built from the TypeScript SDK) for -web.
type sampleGame struct{ *sample.Game }

// WebHandler implements citadel.WebClient.
func (sampleGame) WebHandler() http.Handler { return web.Handler() }

func main() { citadel.Main(sampleGame{&sample.Game{}}) }
