// Command panicky is a test plugin whose canary panics: a host must refuse it.
package main

import (
	"context"

	"github.com/citadel-go/citadel/plugins"
)

func main() {
	plugins.Serve(plugins.Plugin{Name: "combat", Version: "broken", Canary: func(context.Context) error {
		panic("this build is broken")
	}})
}
