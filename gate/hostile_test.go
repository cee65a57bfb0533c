package gate_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/citadel-go/citadel/client"
	"github.com/citadel-go/citadel/framework/wire"
	"github.com/citadel-go/citadel/gate"
	"github.com/citadel-go/citadel/services"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// gathered reads one metric's value (summed over labels matching want).
func gathered(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if v, ok := want[l.GetName()]; ok && v != l.GetValue() {
					continue metric
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

// eventually polls cond for up to 20s (a loaded machine is slow; the
// condition, not the time, is what is tested).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wsAuth opens a WebSocket session and authenticates it.
func wsAuth(t *testing.T, r *rig) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(r.gate.WSURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	f := frame(r, 1, &services.Auth{Ticket: r.ticketFor(), Protocol: services.ProtocolVersion})
	if err := c.WriteMessage(websocket.BinaryMessage, f[wire.LenSize:]); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, msg, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("no AuthOK: %v", err)
		}
		fr, _ := wire.DecodeWS(msg, 1<<20)
		if fr.ID == services.IDAuthOK {
			return c
		}
	}
}

// A WebSocket client that goes silent (or whose network drops) is closed
// once, with the idle reason; the gate never reads the failed connection
// again (gorilla panics on the thousandth read of a failed connection,
// which used to end the whole process), and its slot is given back.
func TestSilentWebSocketIsClosedOnce(t *testing.T) {
	metrics := prometheus.NewRegistry()
	r := newRig(t, func(c *gate.Config) {
		c.Heartbeat = 100 * time.Millisecond
		c.Metrics = metrics
	})
	w := r.witness()
	for range 3 {
		c := wsAuth(t, r)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var ce *websocket.CloseError
		for {
			_, _, err := c.ReadMessage()
			if err != nil {
				if !errors.As(err, &ce) || !strings.Contains(ce.Text, services.KickIdle) {
					t.Fatalf("silent session ended with %v, want a close frame with %s", err, services.KickIdle)
				}
				break
			}
		}
		c.Close()
	}
	eventually(t, "the kicked connections to be released", func() bool {
		return gathered(t, metrics, "citadel_gate_connections", nil) == 1 // the witness
	})
	if n := gathered(t, metrics, "citadel_gate_kicks_total", map[string]string{"code": services.KickIdle}); n != 3 {
		t.Fatalf("%v idle kicks, want exactly 3 (one per connection)", n)
	}
	r.stillWorks(w)
}

// A TCP client kicked for idleness that keeps sending gets no new session
// on the same connection: its Auth is discarded, never answered.
func TestKickedConnectionGetsNoSecondSession(t *testing.T) {
	metrics := prometheus.NewRegistry()
	r := newRig(t, func(c *gate.Config) {
		c.Heartbeat = 100 * time.Millisecond
		c.Metrics = metrics
	})
	w := r.witness()
	conn, err := net.Dial("tcp", r.gate.TCPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write(frame(r, 1, &services.Auth{Ticket: r.ticketFor(), Protocol: services.ProtocolVersion}))
	time.Sleep(600 * time.Millisecond) // idle: kicked after 3 heartbeats
	conn.Write(frame(r, 1, &services.Auth{Ticket: r.ticketFor(), Protocol: services.ProtocolVersion}))
	conn.Write(frame(r, 2, &services.Echo{Data: []byte("again")}))
	br := bufio.NewReader(conn)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	auths := 0
	for {
		f, _, err := wire.ReadTCP(br, 1<<20, nil)
		if err != nil {
			break // closed
		}
		switch f.ID {
		case services.IDAuthOK:
			auths++
		case services.IDEcho:
			t.Fatal("an echo was answered after the kick")
		}
	}
	if auths != 1 {
		t.Fatalf("%d AuthOK on one connection, want 1", auths)
	}
	// The client cannot see an AuthOK after the kick (the gate has shut its
	// side for writing); the gate must not have accepted the late Auth.
	eventually(t, "the kicked connection to close", func() bool {
		return gathered(t, metrics, "citadel_gate_connections", nil) == 1 // the witness
	})
	if n := gathered(t, metrics, "citadel_gate_auth_total", map[string]string{"result": "ok"}); n != 2 {
		t.Fatalf("%v logins accepted, want 2 (the witness and the connection's first)", n)
	}
	r.stillWorks(w)
}

// Connections over the caps are refused with a reason and counted; the
// caps free up as connections close or log in.
func TestConnectionCaps(t *testing.T) {
	metrics := prometheus.NewRegistry()
	r := newRig(t, func(c *gate.Config) {
		c.MaxConns, c.MaxPending = 4, 2
		c.Metrics = metrics
	})
	w := r.witness() // 1 of 4, logged in
	pending := make([]net.Conn, 2)
	for i := range pending {
		c, err := net.Dial("tcp", r.gate.TCPAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		pending[i] = c
	}
	// Make sure the gate has seen both (a TCP session starts at its first
	// read): a Ping before Auth would be kicked, so wait on the metric.
	eventually(t, "two pending connections", func() bool {
		return gathered(t, metrics, "citadel_gate_connections", nil) == 3
	})
	expectKick(t, r.kickedAfter(), services.KickServerFull)
	if n := gathered(t, metrics, "citadel_gate_refused_total", map[string]string{"reason": "max_pending"}); n < 1 {
		t.Fatalf("refusals at max_pending: %v", n)
	}
	// WebSocket counts against the same caps: refused before HTTP.
	if c, _, err := websocket.DefaultDialer.Dial(r.gate.WSURL(), nil); err == nil {
		c.Close()
		t.Fatal("WebSocket connection over the pending cap was upgraded")
	}
	// One pending connection logs in: a pending slot frees, the total is
	// then at its cap.
	pending[0].Write(frame(r, 1, &services.Auth{Ticket: r.ticketFor(), Protocol: services.ProtocolVersion}))
	eventually(t, "the login", func() bool {
		return gathered(t, metrics, "citadel_gate_sessions", map[string]string{"state": "active"}) == 2
	})
	fourth, err := client.Connect(context.Background(), r.login(r.ticketFor()), client.Options{Registry: r.reg, MaxFrame: 8 << 10})
	if err != nil {
		t.Fatalf("a connection within the caps: %v", err)
	}
	defer fourth.Close()
	expectKick(t, r.kickedAfter(), services.KickServerFull) // the 5th
	if n := gathered(t, metrics, "citadel_gate_refused_total", map[string]string{"reason": "max_conns"}); n < 1 {
		t.Fatalf("refusals at max_conns: %v", n)
	}
	r.stillWorks(w)
}

// Connections that never finish their WebSocket handshake, or idle on
// keep-alive without upgrading, are dropped after HandshakeTimeout; a
// client trickling its Auth frame is dropped at AuthTimeout from accept.
func TestHandshakeAndAuthDeadlines(t *testing.T) {
	r := newRig(t, func(c *gate.Config) {
		c.HandshakeTimeout = 300 * time.Millisecond
		c.AuthTimeout = 500 * time.Millisecond
	})
	w := r.witness()
	host := strings.TrimPrefix(strings.TrimSuffix(r.gate.WSURL(), "/ws"), "ws://")
	half, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	half.Write([]byte("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: web"))
	idle, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idle.Write([]byte("GET /other HTTP/1.1\r\nHost: x\r\n\r\n")) // a 404, then keep-alive
	for name, c := range map[string]net.Conn{"half-sent header": half, "idle keep-alive": idle} {
		c.SetReadDeadline(time.Now().Add(15 * time.Second))
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("%s: still open after 15s", name)
				}
				break
			}
		}
	}
	// Auth trickled a byte at a time, slower than AuthTimeout allows.
	conn, err := net.Dial("tcp", r.gate.TCPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	auth := frame(r, 1, &services.Auth{Ticket: r.ticketFor(), Protocol: services.ProtocolVersion})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, b := range auth {
			if _, err := conn.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	expectKick(t, r.readKick(bufio.NewReader(conn), conn), services.KickNotAuthenticated)
	conn.Close()
	<-done
	r.stillWorks(w)
}

// The send queue is bounded in bytes as well as frames: a client that
// asks for large replies and never reads is disconnected before the gate
// holds more than SendQueueBytes for it.
func TestSendQueueBoundedInBytes(t *testing.T) {
	metrics := prometheus.NewRegistry()
	r := newRig(t, func(c *gate.Config) {
		c.SendQueue = 10000 // frames are not the limit here
		c.SendQueueBytes = 64 << 10
		c.WriteBuffer = 16 << 10
		c.Metrics = metrics
	})
	w := r.witness()
	conn := r.dialSmallReceiveBuffer(2048)
	conn.Write(frame(r, 1, &services.Auth{Ticket: r.ticketFor(), Protocol: services.ProtocolVersion}))
	big := make([]byte, 7<<10)
	for i := 0; i < 40; i++ {
		conn.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := conn.Write(frame(r, uint32(i+2), &services.Echo{Data: big})); err != nil {
			break
		}
	}
	// The client reads nothing until the gate has given up on it (reading
	// earlier, on a slow machine, could keep up with the echoes).
	eventually(t, "the slow client to be kicked", func() bool {
		return gathered(t, metrics, "citadel_gate_kicks_total", map[string]string{"code": services.KickSlowClient}) == 1
	})
	expectKick(t, r.readKick(bufio.NewReader(conn), conn), services.KickSlowClient)
	r.stillWorks(w)
}

// Stopping a gate with WebSocket sessions and HTTP connections that never
// upgraded leaves nothing behind.
func TestStopWithHalfOpenHandshakes(t *testing.T) {
	r := newRig(t, nil)
	host := strings.TrimPrefix(strings.TrimSuffix(r.gate.WSURL(), "/ws"), "ws://")
	half, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	half.Write([]byte("GET /ws HTTP/1.1\r\n"))
	c, err := client.Connect(context.Background(), r.login(r.ticketFor()), client.Options{Registry: r.reg, Transport: client.WebSocket, MaxFrame: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.gate.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	half.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := half.Read(make([]byte, 1)); err == nil {
		t.Fatal("half-open handshake still served after Stop")
	}
}

// WebSocket pings count against the session's frame rate: a ping flood
// is kicked like any other flood (each ping makes the gate write a pong).
func TestWebSocketPingFloodIsRateLimited(t *testing.T) {
	r := newRig(t, func(c *gate.Config) { c.MsgRate, c.MsgBurst = 10, 20 })
	w := r.witness()
	c := wsAuth(t, r)
	for i := 0; i < 200; i++ {
		if err := c.WriteControl(websocket.PingMessage, []byte("x"), time.Now().Add(time.Second)); err != nil {
			break
		}
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := c.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || !strings.Contains(ce.Text, services.KickRateLimited) {
				t.Fatalf("ping flood ended with %v, want a close frame with %s", err, services.KickRateLimited)
			}
			break
		}
	}
	r.stillWorks(w)
}
