// Package plugins loads game logic from plugin binaries (hashicorp/go-plugin
// subprocesses) and swaps versions while players play.
//
// A plugin is a small Go main that registers handlers and calls Serve (the
// SDK half of this package). A handler is request in, result out: msgpack
// bytes, no state kept between calls (see docs/plugins.md for why). The
// Host (the other half) starts plugin processes, checks them with a canary
// call before any player's call reaches them, swaps versions atomically
// with calls in flight on the old version allowed to finish, rolls back,
// restarts a crashed plugin, and never leaves a process behind.
package plugins

import (
	"context"
	"errors"
	"github.com/citadel-go/citadel/framework/bounded"

	"github.com/hashicorp/go-plugin"
	"github.com/vmihailenco/msgpack/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
)

// Handshake is what host and plugin must agree on: the cookie tells a
// plugin binary it was started by Citadel; ProtocolVersion changes when
// this wire protocol does.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "CITADEL_PLUGIN",
	MagicCookieValue: "citadel-game-logic-v1",
}

// pluginKey is the name the plugin set is served and dispensed under.
const pluginKey = "citadel"

// Wire messages of the gRPC service, encoded with msgpack (no protoc).
type (
	callRequest struct {
		Method  string `msgpack:"m"`
		Payload []byte `msgpack:"p"`
	}
	callResponse struct {
		Payload []byte `msgpack:"p"`
		Error   string `msgpack:"e"` // the handler's error; empty on success
		Panic   bool   `msgpack:"x"` // the handler panicked (recovered)
	}
	infoRequest  struct{}
	infoResponse struct {
		Name    string   `msgpack:"n"`
		Version string   `msgpack:"v"`
		Methods []string `msgpack:"m"`
	}
	canaryRequest  struct{}
	canaryResponse struct {
		Error string `msgpack:"e"`
	}
)

// codec encodes the service's messages with msgpack. It is picked per call
// by content subtype, so go-plugin's own gRPC services keep protobuf.
type codec struct{}

func (codec) Marshal(v any) ([]byte, error)   { return msgpack.Marshal(v) }
func (codec) Unmarshal(b []byte, v any) error { return bounded.Unmarshal(b, v) }
func (codec) Name() string                    { return "msgpack" }

func init() { encoding.RegisterCodec(codec{}) }

var withCodec = grpc.CallContentSubtype("msgpack")

// logicServer is what a plugin serves.
type logicServer interface {
	call(context.Context, *callRequest) (*callResponse, error)
	info(context.Context, *infoRequest) (*infoResponse, error)
	canary(context.Context, *canaryRequest) (*canaryResponse, error)
}

const serviceName = "citadel.Logic"

func method[Req, Resp any](name string, f func(logicServer, context.Context, *Req) (*Resp, error)) grpc.MethodDesc {
	return grpc.MethodDesc{MethodName: name, Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
		in := new(Req)
		if err := dec(in); err != nil {
			return nil, err
		}
		s := srv.(logicServer)
		if ic == nil {
			return f(s, ctx, in)
		}
		info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + serviceName + "/" + name}
		return ic(ctx, in, info, func(ctx context.Context, r any) (any, error) { return f(s, ctx, r.(*Req)) })
	}}
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
	HandlerType: (*logicServer)(nil),
	Methods: []grpc.MethodDesc{
		method("Call", logicServer.call),
		method("Info", logicServer.info),
		method("Canary", logicServer.canary),
	},
	Metadata: "hand-written; messages are msgpack",
}

// rpcClient is the host's end of the service.
type rpcClient struct{ cc *grpc.ClientConn }

func (c *rpcClient) invoke(ctx context.Context, name string, in, out any) error {
	return c.cc.Invoke(ctx, "/"+serviceName+"/"+name, in, out, withCodec)
}

// goPlugin glues the service into go-plugin (gRPC only).
type goPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl logicServer // nil on the host side
}

func (p *goPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.impl == nil {
		return errors.New("plugins: no implementation to serve")
	}
	s.RegisterService(&serviceDesc, p.impl)
	return nil
}

func (p *goPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return &rpcClient{cc: cc}, nil
}
