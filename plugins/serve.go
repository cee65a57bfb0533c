package plugins

import (
	"context"
	"fmt"
	"github.com/citadel-go/citadel/framework/bounded"
	"log/slog"
	"os"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/hashicorp/go-plugin"
	"github.com/vmihailenco/msgpack/v5"
	"google.golang.org/grpc/status"
)

// Handler handles one method of a plugin: msgpack request bytes in, msgpack
// result bytes out. It must not keep state between calls.
type Handler func(ctx context.Context, req []byte) ([]byte, error)

// Handle adapts a typed function into a Handler: the request is decoded
// into Req and the result encoded from Resp, both with msgpack.
func Handle[Req, Resp any](fn func(context.Context, *Req) (*Resp, error)) Handler {
	return func(ctx context.Context, raw []byte) ([]byte, error) {
		req := new(Req)
		if err := bounded.Unmarshal(raw, req); err != nil {
			return nil, fmt.Errorf("decode %T: %w", req, err)
		}
		resp, err := fn(ctx, req)
		if err != nil {
			return nil, err
		}
		return msgpack.Marshal(resp)
	}
}

// Plugin describes a plugin binary for Serve.
type Plugin struct {
	// Name must match the name the host loads it under.
	Name string
	// Version is reported to the host (logs, admin, metrics); set it at
	// build time, e.g. -ldflags "-X main.version=v2".
	Version string
	// Handlers by method name.
	Handlers map[string]Handler
	// Canary runs when the host starts this binary, before it sends any
	// player's call: return an error (or panic) to be refused and leave the
	// running version in place. Optional.
	Canary func(ctx context.Context) error
}

// Serve runs the plugin until the host stops it. Call it from main. A
// panic in a handler or the canary is recovered and returned to the host
// as an error: the process keeps serving.
func Serve(p Plugin) {
	if os.Getenv(Handshake.MagicCookieKey) != Handshake.MagicCookieValue {
		fmt.Fprintf(os.Stderr, "%s %s is a Citadel plugin: a game server starts it (citadel -plugins DIR); it does nothing on its own.\n", p.Name, p.Version)
		os.Exit(1)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         map[string]plugin.Plugin{pluginKey: &goPlugin{impl: &server{p: p}}},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          newHCLog(Logger(), 0),
	})
}

// Logger returns a logger for plugin code: its lines reach the host's log
// at their level, tagged with the plugin.
func Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			// The keys go-plugin's host reads a JSON line with.
			switch a.Key {
			case slog.TimeKey:
				a.Key = "@timestamp"
			case slog.LevelKey:
				a = slog.String("@level", strings.ToLower(a.Value.String()))
			case slog.MessageKey:
				a.Key = "@message"
			}
			return a
		}}))
}

type server struct{ p Plugin }

func (s *server) call(ctx context.Context, r *callRequest) (resp *callResponse, err error) {
	h, ok := s.p.Handlers[r.Method]
	if !ok {
		return &callResponse{Error: fmt.Sprintf("no method %q (has: %s)", r.Method, strings.Join(s.methods(), ", "))}, nil
	}
	defer func() {
		if v := recover(); v != nil {
			resp = &callResponse{Error: fmt.Sprintf("panic in %s: %v\n%s", r.Method, v, debug.Stack()), Panic: true}
		}
	}()
	out, err := h(ctx, r.Payload)
	if err != nil && ctx.Err() != nil {
		// The caller's deadline (or cancel) ended the handler: report it as
		// such, so the host returns the context error and not a handler error.
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if err != nil {
		return &callResponse{Error: err.Error()}, nil
	}
	return &callResponse{Payload: out}, nil
}

func (s *server) methods() []string {
	out := make([]string, 0, len(s.p.Handlers))
	for m := range s.p.Handlers {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

func (s *server) info(context.Context, *infoRequest) (*infoResponse, error) {
	return &infoResponse{Name: s.p.Name, Version: s.p.Version, Methods: s.methods()}, nil
}

func (s *server) canary(ctx context.Context, _ *canaryRequest) (resp *canaryResponse, err error) {
	if s.p.Canary == nil {
		return &canaryResponse{}, nil
	}
	defer func() {
		if v := recover(); v != nil {
			resp = &canaryResponse{Error: fmt.Sprintf("canary panicked: %v", v)}
		}
	}()
	if err := s.p.Canary(ctx); err != nil {
		return &canaryResponse{Error: err.Error()}, nil
	}
	return &canaryResponse{}, nil
}
