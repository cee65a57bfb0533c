// Command v2 is the combat plugin with the v2 rules.
//
//	go build -o plugins/combat/v2 ./plugins/examples/combat/v2
package main

import (
	"github.com/citadel-go/citadel/plugins"
	"github.com/citadel-go/citadel/plugins/examples/combat"
)

// version is the build's version; override with -ldflags "-X main.version=...".
var version = "v2"

func main() { plugins.Serve(combat.Plugin(combat.V2, version)) }
