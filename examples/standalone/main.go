// Command standalone runs the farm game's server: a studio's whole main.
package main

import (
	"example.com/standalone/farm"

	"github.com/citadel-go/citadel"
)

func main() { citadel.Main(&farm.Game{}) }
