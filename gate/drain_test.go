package gate_test

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/wire"
	"github.com/citadel-go/citadel/services"
	"github.com/gorilla/websocket"
)

// A drain sends a client only to a gate that announced an address for the
// client's transport: a gate that is starting (or serves TCP only) is no
// place for a WebSocket client, which would get a Reconnect it cannot
// follow. (Found by the browser SDK's tests: a drain within a second of
// another gate's start sent Reconnect{WS: ""}.)
func TestDrainSendsClientsOnlyWhereTheirTransportIsServed(t *testing.T) {
	r := newRig(t, nil)
	// gate-2 serves TCP only.
	bc := r.broker.BusConfig()
	other, err := framework.NewNode(framework.NodeConfig{Service: services.Gate, ID: "gate-2", Registry: framework.NewRegistry(),
		MQ: &bc, Logger: logger(), MemberTTL: time.Minute, Meta: map[string]string{services.MetaTCP: "127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Stop(context.Background()) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, ok := r.gnode.Members().Get(services.Gate, other.Addr().Node)
		if ok && m.Meta[services.MetaTCP] != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the gate never saw gate-2")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// One client of each transport, read frame by frame.
	frames := func(read func() (id uint16, payload []byte, err error)) chan any {
		ch := make(chan any, 16)
		go func() {
			defer close(ch)
			for {
				id, payload, err := read()
				if err != nil {
					return
				}
				if _, msg, _, err := wire.Decode(r.reg, idOf(id), payload); err == nil {
					ch <- msg
				}
			}
		}()
		return ch
	}
	ws, _, err := websocket.DefaultDialer.Dial(r.gate.WSURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.WriteMessage(websocket.BinaryMessage, frame(r, 1, &services.Auth{Ticket: r.ticketFor(), Protocol: services.ProtocolVersion})[wire.LenSize:])
	wsFrames := frames(func() (uint16, []byte, error) {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return 0, nil, err
		}
		f, err := wire.DecodeWS(data, 1<<20)
		return uint16(f.ID), f.Payload, err
	})
	tcp, err := net.Dial("tcp", r.gate.TCPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	tcp.Write(frame(r, 1, &services.Auth{Ticket: r.ticketFor(), Protocol: services.ProtocolVersion}))
	br := bufio.NewReader(tcp)
	tcpFrames := frames(func() (uint16, []byte, error) {
		f, _, err := wire.ReadTCP(br, 1<<20, nil)
		return uint16(f.ID), f.Payload, err
	})
	for _, ch := range []chan any{wsFrames, tcpFrames} {
		if _, ok := (<-ch).(*services.AuthOK); !ok {
			t.Fatal("no AuthOK")
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := r.gate.Drain(ctx, 100); err == nil || !strings.Contains(err.Error(), "sessions left") {
		t.Fatalf("drain: %v, want it to end with clients left", err)
	}
	reconnect := func(ch chan any) *services.Reconnect {
		for {
			select {
			case msg, ok := <-ch:
				if !ok {
					return nil
				}
				if rc, ok := msg.(*services.Reconnect); ok {
					return rc
				}
			case <-time.After(500 * time.Millisecond):
				return nil
			}
		}
	}
	if rc := reconnect(wsFrames); rc != nil {
		t.Fatalf("a WebSocket client was sent to a gate without a WebSocket address: %+v", rc)
	}
	if rc := reconnect(tcpFrames); rc == nil || rc.Gate != other.Addr().Node || rc.TCP != "127.0.0.1:1" {
		t.Fatalf("the TCP client got %+v, want a Reconnect to gate-2's TCP address", rc)
	}
}

func idOf(v uint16) framework.MsgID { return framework.MsgID(v) }
