package gate_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/citadel-go/citadel/client"
	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/framework/ticket"
	"github.com/citadel-go/citadel/framework/wire"
	"github.com/citadel-go/citadel/game"
	"github.com/citadel-go/citadel/game/sample"
	"github.com/citadel-go/citadel/gate"
	"github.com/citadel-go/citadel/mq"
	"github.com/citadel-go/citadel/services"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/time/rate"
)

// The gate is tested against the real sample game on a real game node and
// the embedded NSQ (this test imports game/sample; gate code does not).

type rig struct {
	t      *testing.T
	gate   *gate.Gate
	signer *ticket.Signer
	reg    *framework.Registry
	next   uint64
	broker *mq.Broker
	gnode  *framework.Node // the gate's node
}

func logger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("CITADEL_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func newRig(t *testing.T, tweak func(*gate.Config)) *rig {
	t.Helper()
	broker, err := mq.StartBroker(mq.BrokerConfig{DataDir: t.TempDir(), TCPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoLookupd: true, Logger: logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Close() })
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	node := func(service string, incarnation uint64) *framework.Node {
		bc := broker.BusConfig()
		n, err := framework.NewNode(framework.NodeConfig{Service: service, ID: service + "-1", Registry: framework.NewRegistry(),
			MQ: &bc, Logger: logger(), Incarnation: incarnation,
			// A loaded machine can delay heartbeats for seconds; these
			// tests are not about membership, so a node never expires.
			MemberTTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	saver, err := game.NewSaver(game.SaverConfig{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { saver.Stop(context.Background()) })
	lease, err := store.StartLease(context.Background(), st, "game-1", store.LeaseConfig{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lease.End(context.Background()) })
	gameNode := node(services.Game, lease.Owner().Incarnation)
	svc, err := sample.New(gameNode, st, sample.Options{Saver: saver, Lease: lease, Grace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := gameNode.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gameNode.Stop(context.Background()) })

	gateNode := node(services.Gate, 0)
	signer, _ := ticket.NewSigner(ticket.NewKey())
	reg := framework.NewRegistry()
	sample.Register(reg)
	sample.Register(gateNode.Registry())
	cfg := gate.Config{Node: gateNode, Tickets: signer, Registry: reg, TCPAddr: "127.0.0.1:0", WSAddr: "127.0.0.1:0",
		Logger: logger(), MaxFrame: 8 << 10}
	if tweak != nil {
		tweak(&cfg)
	}
	g, err := gate.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := gateNode.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.Stop(ctx)
		gateNode.Stop(ctx)
	})
	deadline := time.Now().Add(5 * time.Second)
	for len(gateNode.Members().Alive(services.Game)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("gate never saw the game node")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &rig{t: t, gate: g, signer: signer, reg: reg, next: 1000, broker: broker, gnode: gateNode}
}

// ticketFor issues a valid ticket for a new player.
func (r *rig) ticketFor() string {
	r.next++
	tok, _, err := r.signer.Issue(r.next, "gate-1", time.Minute)
	if err != nil {
		r.t.Fatal(err)
	}
	return tok
}

func (r *rig) login(tok string) *services.LoginResponse {
	return &services.LoginResponse{Ticket: tok, Gate: services.GateInfo{Node: "gate-1", TCP: r.gate.TCPAddr(), WS: r.gate.WSURL()}}
}

// witness is a well-behaved session that must keep working throughout.
func (r *rig) witness() *client.Conn {
	c, err := client.Connect(context.Background(), r.login(r.ticketFor()), client.Options{Registry: r.reg, MaxFrame: 8 << 10})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { c.Close() })
	return c
}

func (r *rig) stillWorks(c *client.Conn) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Call(ctx, &services.Echo{Data: []byte("ping")}); err != nil {
		r.t.Fatalf("witness session broken: %v", err)
	}
}

func frame(r *rig, seq uint32, msg any) []byte {
	id, payload, err := wire.Encode(r.reg, seq, msg)
	if err != nil {
		r.t.Fatal(err)
	}
	f, _ := wire.AppendTCP(nil, id, payload, 1<<20)
	return f
}

func rawFrame(id framework.MsgID, payload []byte) []byte {
	f, _ := wire.AppendTCP(nil, id, payload, 1<<20)
	return f
}

// kickedAfter dials raw TCP, writes the chunks, and returns the Kicked frame
// the gate sends before closing (other frames, e.g. AuthOK, are skipped).
func (r *rig) kickedAfter(chunks ...[]byte) *services.Kicked {
	r.t.Helper()
	conn, err := net.Dial("tcp", r.gate.TCPAddr())
	if err != nil {
		r.t.Fatal(err)
	}
	defer conn.Close()
	for _, c := range chunks {
		if _, err := conn.Write(c); err != nil {
			break // the gate may already have closed
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r.readKick(bufio.NewReader(conn), conn)
}

func (r *rig) readKick(br *bufio.Reader, conn net.Conn) *services.Kicked {
	r.t.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, _, err := wire.ReadTCP(br, 1<<20, nil)
		if err != nil {
			r.t.Fatalf("connection ended without a Kicked frame: %v", err)
		}
		_, msg, _, err := wire.Decode(r.reg, f.ID, f.Payload)
		if err != nil {
			r.t.Fatalf("undecodable frame from the gate: %v", err)
		}
		if k, ok := msg.(*services.Kicked); ok {
			// After the reason, the gate closes: EOF follows.
			if _, _, err := wire.ReadTCP(br, 1<<20, nil); err != io.EOF && !isReset(err) {
				r.t.Fatalf("after Kicked: %v, want EOF", err)
			}
			return k
		}
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne)
}

func expectKick(t *testing.T, k *services.Kicked, code string) {
	t.Helper()
	if k.Code != code || k.Reason == "" {
		t.Fatalf("kicked with %q (%s), want %q and a reason", k.Code, k.Reason, code)
	}
}

// Must show 3: bad input closes only the offending session, with a reason.
func TestBadInputClosesOnlyTheOffendingSession(t *testing.T) {
	r := newRig(t, nil)
	w := r.witness()
	r.stillWorks(w)
	auth := func() []byte {
		return frame(r, 1, &services.Auth{Ticket: r.ticketFor(), Protocol: services.ProtocolVersion})
	}
	rnd := rand.New(rand.NewPCG(7, 7))
	random := make([]byte, 256)
	for i := range random {
		random[i] = byte(rnd.IntN(256))
	}
	expired := r.signer.Sign(ticket.Ticket{PlayerID: 77, Gate: "gate-1", Expires: time.Now().Add(-time.Second)})
	reused := r.ticketFor()
	first, err := client.Connect(context.Background(), r.login(reused), client.Options{Registry: r.reg})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()

	cases := []struct {
		name   string
		chunks [][]byte
		code   string
	}{
		{"random bytes", [][]byte{random}, ""}, // code depends on the bytes; any reason will do
		{"HTTP request", [][]byte{[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")}, services.KickFrameTooLarge},
		{"length over the max", [][]byte{{0, 0x10, 0, 0, 0, 100}}, services.KickFrameTooLarge},
		{"length below the ID", [][]byte{{0, 0, 0, 1, 7}}, services.KickBadFrame},
		{"frame before Auth", [][]byte{frame(r, 1, &services.Move{X: 1, Y: 1})}, services.KickNotAuthenticated},
		{"Auth that does not decode", [][]byte{rawFrame(services.IDAuth, []byte{0x92, 0x01, 0xc1})}, services.KickBadPayload},
		{"forged ticket", [][]byte{frame(r, 1, &services.Auth{Ticket: forge(r.ticketFor()), Protocol: services.ProtocolVersion})}, services.KickBadTicket},
		{"garbage ticket", [][]byte{frame(r, 1, &services.Auth{Ticket: "not-a-ticket", Protocol: services.ProtocolVersion})}, services.KickBadTicket},
		{"ticket for another gate", [][]byte{frame(r, 1, &services.Auth{Ticket: mustIssue(r, "gate-9"), Protocol: services.ProtocolVersion})}, services.KickBadTicket},
		{"expired ticket", [][]byte{frame(r, 1, &services.Auth{Ticket: expired, Protocol: services.ProtocolVersion})}, services.KickTicketExpired},
		{"reused ticket", [][]byte{frame(r, 1, &services.Auth{Ticket: reused, Protocol: services.ProtocolVersion})}, services.KickTicketReused},
		{"unknown msgID", [][]byte{auth(), rawFrame(4242, []byte{0x92, 0x01, 0x80})}, services.KickUnknownMessage},
		{"server-only message", [][]byte{auth(), frame(r, 1, &services.AuthOK{})}, services.KickUnknownMessage},
		{"payload that does not decode", [][]byte{auth(), rawFrame(services.IDMove, []byte{0x92, 0x01, 0xa3, 'a', 'b', 'c'})}, services.KickBadPayload},
		{"payload without seq header", [][]byte{auth(), rawFrame(services.IDMove, mustPack(t, &services.Move{}))}, services.KickBadPayload},
		{"trailing bytes", [][]byte{auth(), rawFrame(services.IDEcho, append(wire.AppendPayload(nil, 1, mustPack(t, &services.Echo{})), 0))}, services.KickBadPayload},
		{"second Auth", [][]byte{auth(), frame(r, 2, &services.Auth{Ticket: r.ticketFor(), Protocol: services.ProtocolVersion})}, services.KickUnknownMessage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := r.kickedAfter(tc.chunks...)
			if tc.code == "" {
				if k.Code == "" || k.Reason == "" {
					t.Fatalf("kick without a reason: %+v", k)
				}
				t.Logf("random bytes: %s (%s)", k.Code, k.Reason)
			} else {
				expectKick(t, k, tc.code)
			}
			r.stillWorks(w)
		})
	}
	if w.Err() != nil {
		t.Fatalf("witness closed: %v", w.Err())
	}
}

func mustIssue(r *rig, gateName string) string {
	tok, _, err := r.signer.Issue(5, gateName, time.Minute)
	if err != nil {
		r.t.Fatal(err)
	}
	return tok
}

func mustPack(t *testing.T, v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// forge changes the player ID inside a valid ticket without re-signing it.
func forge(tok string) string {
	b := []byte(tok)
	if b[5] == 'A' {
		b[5] = 'B'
	} else {
		b[5] = 'A'
	}
	return string(b)
}

func TestWebSocketBadInput(t *testing.T) {
	r := newRig(t, func(c *gate.Config) { c.AllowedOrigins = []string{"https://play.example.com"} })
	w := r.witness()
	dial := func(h map[string][]string) (*websocket.Conn, error) {
		c, _, err := websocket.DefaultDialer.Dial(r.gate.WSURL(), h)
		return c, err
	}
	readClose := func(c *websocket.Conn) (kick *services.Kicked, closeErr *websocket.CloseError) {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			kind, msg, err := c.ReadMessage()
			if err != nil {
				errors.As(err, &closeErr)
				return kick, closeErr
			}
			if kind == websocket.BinaryMessage {
				f, _ := wire.DecodeWS(msg, 1<<20)
				if _, m, _, err := wire.Decode(r.reg, f.ID, f.Payload); err == nil {
					if k, ok := m.(*services.Kicked); ok {
						kick = k
					}
				}
			}
		}
	}
	t.Run("text frame", func(t *testing.T) {
		c, err := dial(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.WriteMessage(websocket.TextMessage, []byte(`{"hello":1}`))
		k, ce := readClose(c)
		if k == nil || k.Code != services.KickBadFrame || ce == nil || ce.Code != websocket.ClosePolicyViolation {
			t.Fatalf("text frame: kick %+v close %v", k, ce)
		}
	})
	t.Run("oversized message", func(t *testing.T) {
		c, err := dial(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.WriteMessage(websocket.BinaryMessage, make([]byte, 9<<10))
		if _, ce := readClose(c); ce == nil || ce.Code != websocket.CloseMessageTooBig {
			t.Fatalf("oversized: close %v, want 1009", ce)
		}
	})
	t.Run("frame before Auth", func(t *testing.T) {
		c, err := dial(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		id, p, _ := wire.Encode(r.reg, 1, &services.Move{})
		msg, _ := wire.AppendWS(nil, id, p, 1<<20)
		c.WriteMessage(websocket.BinaryMessage, msg)
		if k, _ := readClose(c); k == nil || k.Code != services.KickNotAuthenticated {
			t.Fatalf("kick %+v", k)
		}
	})
	t.Run("origin", func(t *testing.T) {
		if _, err := dial(map[string][]string{"Origin": {"https://evil.example.com"}}); err == nil {
			t.Fatal("foreign origin upgraded")
		}
		c, err := dial(map[string][]string{"Origin": {"https://play.example.com"}})
		if err != nil {
			t.Fatalf("allowed origin refused: %v", err)
		}
		c.Close()
	})
	r.stillWorks(w)
}

func TestTimeouts(t *testing.T) {
	r := newRig(t, func(c *gate.Config) {
		c.Heartbeat = 150 * time.Millisecond
		c.AuthTimeout = 200 * time.Millisecond
	})
	t.Run("no Auth in time", func(t *testing.T) {
		expectKick(t, r.kickedAfter(), services.KickNotAuthenticated)
	})
	t.Run("idle after Auth", func(t *testing.T) {
		c, err := client.Connect(context.Background(), r.login(r.ticketFor()), client.Options{Registry: r.reg, NoHeartbeat: true})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("idle session not closed")
		}
		var k *client.KickedError
		if !errors.As(c.Err(), &k) || k.Code != services.KickIdle {
			t.Fatalf("idle: %v", c.Err())
		}
	})
	t.Run("heartbeats keep a session", func(t *testing.T) {
		c, err := client.Connect(context.Background(), r.login(r.ticketFor()), client.Options{Registry: r.reg})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		time.Sleep(800 * time.Millisecond) // > 3 heartbeats
		if c.Err() != nil || c.RTT() == 0 {
			t.Fatalf("session with heartbeats closed: %v (rtt %v)", c.Err(), c.RTT())
		}
	})
}

func TestRateLimitAndSlowClients(t *testing.T) {
	r := newRig(t, func(c *gate.Config) {
		c.MsgRate, c.MsgBurst = rate.Every(time.Hour), 50
		c.SendQueue = 8
		c.WriteBuffer = 16 << 10
	})
	w := r.witness()
	t.Run("rate limit", func(t *testing.T) {
		// Moved has no handler and seq 0 asks for no answer: nothing comes
		// back, so only the rate limit can end this session.
		chunks := [][]byte{frame(r, 1, &services.Auth{Ticket: r.ticketFor(), Protocol: services.ProtocolVersion})}
		for i := 0; i < 60; i++ {
			chunks = append(chunks, frame(r, 0, &services.Moved{}))
		}
		expectKick(t, r.kickedAfter(bytes(chunks)), services.KickRateLimited)
	})
	t.Run("slow client", func(t *testing.T) {
		conn := r.dialSmallReceiveBuffer(2048)
		conn.Write(frame(r, 1, &services.Auth{Ticket: r.ticketFor(), Protocol: services.ProtocolVersion}))
		big := make([]byte, 7<<10)
		// Ask for echoes without reading: the socket fills, then the queue.
		for i := 0; i < 45; i++ {
			conn.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := conn.Write(frame(r, uint32(i+2), &services.Echo{Data: big})); err != nil {
				break
			}
		}
		time.Sleep(300 * time.Millisecond)
		expectKick(t, r.readKick(bufio.NewReader(conn), conn), services.KickSlowClient)
	})
	r.stillWorks(w)
}

// dialSmallReceiveBuffer connects to the gate over TCP with a kernel
// receive buffer of size bytes, so a client that does not read fills the
// gate's socket quickly.
func (r *rig) dialSmallReceiveBuffer(size int) net.Conn {
	r.t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size) })
		return nil
	}}
	conn, err := d.Dial("tcp", r.gate.TCPAddr())
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { conn.Close() })
	return conn
}

func bytes(chunks [][]byte) []byte {
	var out []byte
	for _, c := range chunks {
		out = append(out, c...)
	}
	return out
}

func TestStopClosesSessionsWithAReason(t *testing.T) {
	r := newRig(t, nil)
	c := r.witness()
	wsc, err := client.Connect(context.Background(), r.login(r.ticketFor()), client.Options{Registry: r.reg, Transport: client.WebSocket, MaxFrame: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.gate.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for _, conn := range []*client.Conn{c, wsc} {
		<-conn.Done()
		var k *client.KickedError
		if !errors.As(conn.Err(), &k) || k.Code != services.KickShutdown {
			t.Fatalf("on stop: %v", conn.Err())
		}
	}
	if _, err := net.DialTimeout("tcp", r.gate.TCPAddr(), time.Second); err == nil {
		t.Fatal("TCP still accepting after Stop")
	}
	if _, _, err := websocket.DefaultDialer.Dial(r.gate.WSURL(), nil); err == nil {
		t.Fatal("WebSocket still accepting after Stop")
	}
}

// Replies are written straight to the socket when nothing is queued; a
// socket that takes only part of a frame leaves the rest to the send
// goroutine. Whichever way each frame goes, the client reads whole frames
// in order.
func TestRepliesStayWholeAndOrderedWhenTheSocketFills(t *testing.T) {
	metrics := prometheus.NewRegistry()
	r := newRig(t, func(c *gate.Config) {
		c.WriteBuffer = 16 << 10
		c.SendQueueBytes = 1 << 20 // all 60 replies may wait
		c.Metrics = metrics
	})
	w := r.witness()
	conn := r.dialSmallReceiveBuffer(4096)
	br := bufio.NewReader(conn)
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	conn.Write(frame(r, 1, &services.Auth{Ticket: r.ticketFor(), Protocol: services.ProtocolVersion}))
	const n = 60
	payload := func(i int) []byte { return filled(byte(i), 6<<10) }
	// Paced so that each reply finds the send queue empty, the socket
	// ever fuller: direct writes, then split ones, then queued ones.
	for i := 0; i < n; i++ {
		if _, err := conn.Write(frame(r, uint32(i+2), &services.Echo{Data: payload(i)})); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	next := 0
	for next < n {
		f, _, err := wire.ReadTCP(br, 1<<20, nil)
		if err != nil {
			t.Fatalf("after %d echoes: %v", next, err)
		}
		seq, msg, _, err := wire.Decode(r.reg, f.ID, f.Payload)
		if err != nil {
			t.Fatalf("frame %d undecodable: %v", next, err)
		}
		e, ok := msg.(*services.Echo)
		if !ok {
			continue // AuthOK, pushes
		}
		if seq != uint32(next+2) || string(e.Data) != string(payload(next)) {
			t.Fatalf("echo %d: seq %d, %d bytes starting %v; want seq %d", next, seq, len(e.Data), e.Data[:1], next+2)
		}
		next++
	}
	counts := map[string]float64{}
	mfs, _ := metrics.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "citadel_gate_messages_out_total" {
			for _, m := range mf.Metric {
				counts[m.Label[0].GetValue()] = m.Counter.GetValue()
			}
		}
	}
	// The first frame the full socket could not take whole was split.
	if counts["direct"] == 0 || counts["split"] == 0 {
		t.Fatalf("frames out by write path %v: want some direct and at least one split", counts)
	}
	t.Logf("frames out by write path: %v", counts)
	r.stillWorks(w)
}

func filled(b byte, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}
