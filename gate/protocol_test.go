package gate_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/citadel-go/citadel/client"
	"github.com/citadel-go/citadel/framework/wire"
	"github.com/citadel-go/citadel/services"
)

// A client of an older or a newer protocol gets a reply that says so,
// naming both versions and what to update, before the gate closes the
// connection; its ticket stays usable. (Before versioning, the gate
// accepted any Auth: these clients got AuthOK.)
func TestProtocolVersionMismatchIsAnsweredClearly(t *testing.T) {
	r := newRig(t, nil)
	w := r.witness()
	cases := []struct {
		name    string
		version int32
		want    []string // in Error.Message
	}{
		{"no version (before versioning)", 0, []string{"no protocol version", fmt.Sprint(services.ProtocolVersion), "update the client"}},
		{"older", services.MinProtocolVersion - 1, []string{fmt.Sprint(services.ProtocolVersion), "update the client"}},
		{"newer", services.ProtocolVersion + 1, []string{fmt.Sprint(services.ProtocolVersion + 1), fmt.Sprint(services.ProtocolVersion), "update the server"}},
	}
	for _, tc := range cases {
		t.Run(tc.name+"/raw TCP", func(t *testing.T) {
			tok := r.ticketFor()
			conn, err := net.Dial("tcp", r.gate.TCPAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.Write(frame(r, 7, &services.Auth{Ticket: tok, Protocol: tc.version}))
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(conn)
			next := func() (uint32, any) {
				t.Helper()
				f, _, err := wire.ReadTCP(br, 1<<20, nil)
				if err != nil {
					t.Fatalf("connection ended early: %v", err)
				}
				seq, msg, _, err := wire.Decode(r.reg, f.ID, f.Payload)
				if err != nil {
					t.Fatal(err)
				}
				return seq, msg
			}
			seq, msg := next()
			e, ok := msg.(*services.Error)
			if !ok || seq != 7 || e.Code != services.ErrCodeProtocol {
				t.Fatalf("first frame: seq %d %T %+v, want the Auth's seq 7 and Error{%s}", seq, msg, msg, services.ErrCodeProtocol)
			}
			for _, s := range tc.want {
				if !strings.Contains(e.Message, s) {
					t.Errorf("message %q does not say %q", e.Message, s)
				}
			}
			// Then the connection closes: no kick.
			if f, _, err := wire.ReadTCP(br, 1<<20, nil); err != io.EOF && !isReset(err) {
				t.Fatalf("after the Error: frame %+v, err %v; want the connection closed", f, err)
			}
			// The refused Auth did not use the ticket up.
			c, err := client.Connect(context.Background(), r.login(tok), client.Options{Registry: r.reg})
			if err != nil {
				t.Fatalf("the ticket of a refused Auth: %v", err)
			}
			c.Close()
		})
		for _, transport := range []string{client.TCP, client.WebSocket} {
			t.Run(tc.name+"/SDK "+transport, func(t *testing.T) {
				_, err := client.Connect(context.Background(), r.login(r.ticketFor()),
					client.Options{Registry: r.reg, Transport: transport, Protocol: tc.version})
				if tc.version == 0 {
					// The SDK sends its own version when none is set:
					// nothing to refuse.
					if err != nil {
						t.Fatalf("default version refused: %v", err)
					}
					return
				}
				var se *client.ServerError
				if !errors.As(err, &se) || se.Code != services.ErrCodeProtocol || !strings.Contains(se.Message, tc.want[len(tc.want)-1]) {
					t.Fatalf("Connect: %v, want a ServerError %s saying %q", err, services.ErrCodeProtocol, tc.want[len(tc.want)-1])
				}
			})
		}
	}
	r.stillWorks(w)
}
