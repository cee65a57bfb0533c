// Command sleeper is a test plugin: it sleeps, echoes, panics and reports
// its process ID on request.
package main

import (
	"context"
	"os"
	"time"

	"github.com/citadel-go/citadel/plugins"
)

type (
	Nap  struct{ Millis int }
	Text struct{ S string }
	PID  struct{ PID int }
)

var version = "dev"

func main() {
	plugins.Serve(plugins.Plugin{Name: "sleeper", Version: version, Handlers: map[string]plugins.Handler{
		"sleep": plugins.Handle(func(ctx context.Context, n *Nap) (*Nap, error) {
			select {
			case <-time.After(time.Duration(n.Millis) * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return n, nil
		}),
		"echo":  plugins.Handle(func(_ context.Context, t *Text) (*Text, error) { return &Text{S: version + ":" + t.S}, nil }),
		"panic": plugins.Handle(func(context.Context, *Text) (*Text, error) { var m map[string]int; m["x"] = 1; return nil, nil }),
		"pid":   plugins.Handle(func(context.Context, *Text) (*PID, error) { return &PID{PID: os.Getpid()}, nil }),
	}})
}
