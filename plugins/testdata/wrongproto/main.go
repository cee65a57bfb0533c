// Command wrongproto speaks a newer protocol version than the host.
package main

import (
	"github.com/citadel-go/citadel/plugins"
	"github.com/hashicorp/go-plugin"
)

func main() {
	hs := plugins.Handshake
	hs.ProtocolVersion++
	plugin.Serve(&plugin.ServeConfig{HandshakeConfig: hs, Plugins: map[string]plugin.Plugin{}, GRPCServer: plugin.DefaultGRPCServer})
}
