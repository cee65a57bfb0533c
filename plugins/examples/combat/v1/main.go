// Command v1 is the combat plugin with the v1 rules.
//
//	go build -o plugins/combat/v1 ./plugins/examples/combat/v1
package main

import (
	"github.com/citadel-go/citadel/plugins"
	"github.com/citadel-go/citadel/plugins/examples/combat"
)

// version is the build's version; override with -ldflags "-X main.version=...".
var version = "v1"

func main() { plugins.Serve(combat.Plugin(combat.V1, version)) }
