package citadel

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/citadel-go/citadel/client"
	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/store/storetest"
	"github.com/citadel-go/citadel/framework/ticket"
	"github.com/citadel-go/citadel/game/sample"
	"github.com/citadel-go/citadel/services"
)

func testConfig(t testing.TB) config {
	level := slog.LevelWarn
	if os.Getenv("CITADEL_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return config{
		Roles: []string{services.Login, services.Gate, services.Game}, DataDir: t.TempDir(), NodeID: "1",
		NSQDTCP: "127.0.0.1:0", NSQDHTTP: "127.0.0.1:0", LookupdTCP: "127.0.0.1:0", LookupdHTTP: "127.0.0.1:0",
		LoginAddr: "127.0.0.1:0", GateTCP: "127.0.0.1:0", GateWS: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		BcryptCost: 4, Grace: 2 * time.Second, SaveInterval: time.Second, Heartbeat: 10 * time.Second, MaxFrame: 64 << 10, ClientRate: 100,
		MaxConns: 10000, MaxPending: 1024, AuthTimeout: 10 * time.Second, HandshakeTimeout: 5 * time.Second,
		SendQueueBytes: 256 << 10, LeaseTTL: 5 * time.Second, Game: &sample.Game{},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}
}

// clusterStore points a test's game nodes at one fresh PostgreSQL schema:
// every game node of a cluster shares its store (a bbolt file serves one
// process, and a second game node on another store refuses to run).
// Skips without PostgreSQL.
func clusterStore(t *testing.T) func(*config) {
	t.Helper()
	dsn := os.Getenv("CITADEL_PG_DSN")
	if dsn == "" {
		t.Skip("two game nodes share one store: needs PostgreSQL (CITADEL_PG_DSN); run `. .ci/postgres` or .ci/run")
	}
	dsn = storetest.PostgresSchema(t, dsn)
	return func(c *config) { c.Store, c.PostgresDSN = "postgres", dsn }
}

func startTestServer(t testing.TB, tweak func(*config)) *server {
	t.Helper()
	cfg := testConfig(t)
	if tweak != nil {
		tweak(&cfg)
	}
	srv, err := start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := srv.stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	waitReady(t, srv)
	return srv
}

func waitReady(t testing.TB, srv *server) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for srv.readiness() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("server not ready: %v", srv.readiness())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func clientRegistry(t testing.TB) *framework.Registry {
	r := framework.NewRegistry()
	if err := sample.Register(r); err != nil {
		t.Fatal(err)
	}
	return r
}

// player registers (or logs in) and connects.
func player(t testing.TB, srv *server, name, transport string, register bool) *client.Conn {
	t.Helper()
	ctx := context.Background()
	var lr *services.LoginResponse
	var err error
	if register {
		lr, err = client.Register(ctx, srv.LoginURL, name, "password-"+name)
	} else {
		lr, err = client.Login(ctx, srv.LoginURL, name, "password-"+name)
	}
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	c, err := client.Connect(ctx, lr, client.Options{Registry: clientRegistry(t), Transport: transport})
	if err != nil {
		t.Fatalf("%s connect over %s: %v", name, transport, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// push waits for a push of type T, skipping others.
func push[T any](t testing.TB, c *client.Conn, match func(T) bool) T {
	t.Helper()
	deadline := time.After(30 * time.Second) // generous: a loaded machine is slow, a passing test is not
	for {
		select {
		case m := <-c.Pushes():
			if v, ok := m.(T); ok && (match == nil || match(v)) {
				return v
			}
		case <-c.Done():
			t.Fatalf("connection ended while waiting for %T: %v", *new(T), c.Err())
		case <-deadline:
			var zero T
			t.Fatalf("no %T push within 30s", zero)
			return zero
		}
	}
}

func call[T any](t testing.TB, c *client.Conn, msg any) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := c.Call(ctx, msg)
	if err != nil {
		t.Fatalf("call %T: %v", msg, err)
	}
	v, ok := r.(T)
	if !ok {
		t.Fatalf("call %T: got %T, want %T", msg, r, *new(T))
	}
	return v
}

// Must show 1: the all-in-one server in-process: register, login, TCP and
// WebSocket, move and chat between two players, a second login kicks the
// first, a reconnect within the grace period keeps the actor and its state.
func TestEndToEnd(t *testing.T) {
	srv := startTestServer(t, nil)
	alice := player(t, srv, "alice", client.TCP, true)
	bob := player(t, srv, "bob", client.WebSocket, true)
	if alice.Resumed() || bob.Resumed() {
		t.Fatal("fresh players reported as resumed")
	}
	aInfo := push[*services.PlayerInfo](t, alice, nil)
	bInfo := push[*services.PlayerInfo](t, bob, nil)
	if aInfo.ID != alice.PlayerID() || aInfo.Items["potion"] != 3 {
		t.Fatalf("alice's info: %+v", aInfo)
	}

	// Channel chat across transports.
	call[*services.Joined](t, alice, &services.JoinChannel{Channel: "general"})
	call[*services.Joined](t, bob, &services.JoinChannel{Channel: "general"})
	call[*services.SayOK](t, alice, &services.Say{Channel: "general", Text: "hello bob"})
	got := push[*services.ChatMessage](t, bob, func(m *services.ChatMessage) bool { return m.Channel == "general" })
	if got.From != alice.PlayerID() || got.Text != "hello bob" {
		t.Fatalf("bob heard %+v", got)
	}
	// Nearby chat and movement: both spawn near the map's centre.
	call[*services.SayOK](t, bob, &services.Say{Text: "anyone near?"})
	near := push[*services.ChatMessage](t, alice, func(m *services.ChatMessage) bool { return m.Channel == "" })
	if near.From != bob.PlayerID() || near.Text != "anyone near?" {
		t.Fatalf("alice heard %+v", near)
	}
	moved := call[*services.Moved](t, alice, &services.Move{X: aInfo.X + 3, Y: aInfo.Y - 2})
	if moved.X != aInfo.X+3 || moved.Y != aInfo.Y-2 {
		t.Fatalf("moved to %+v", moved)
	}
	pm := push[*services.PlayerMoved](t, bob, func(m *services.PlayerMoved) bool { return m.PlayerID == alice.PlayerID() })
	if pm.X != moved.X || pm.Y != moved.Y {
		t.Fatalf("bob saw alice at %+v", pm)
	}
	var se *client.ServerError
	if _, err := alice.Call(context.Background(), &services.Move{X: 0, Y: 0}); !errors.As(err, &se) || se.Code != sample.CodeBadMove {
		t.Fatalf("teleport: %v", err)
	}
	// Inventory.
	inv := call[*services.Inventory](t, alice, &services.PickUp{Item: "sword", Count: 1})
	if inv.Items["sword"] != 1 {
		t.Fatalf("inventory %+v", inv.Items)
	}
	used := call[*services.ItemUsed](t, alice, &services.UseItem{Item: "potion"})
	if used.Left != 2 || used.XP != 5 { // the item table gives 5 XP per potion
		t.Fatalf("potion used: %+v", used)
	}
	// Hunting: the monster table's XP, the level table's curve.
	hunted := call[*services.Hunted](t, alice, &services.Hunt{Monster: 204})
	if hunted.XPGain != 400 || hunted.XP != 405 || hunted.Level != 8 {
		t.Fatalf("lich hunted: %+v (want 400 XP, 405 in all, level 8)", hunted)
	}
	if _, err := alice.Call(context.Background(), &services.Hunt{Monster: 101}); !errors.As(err, &se) || se.Code != sample.CodeTooSoon {
		t.Fatalf("hunting again at once: %v", err)
	}
	if _, err := alice.Call(context.Background(), &services.Hunt{Monster: 999}); !errors.As(err, &se) || se.Code != sample.CodeNoMonster {
		t.Fatalf("hunting a monster not in the table: %v", err)
	}
	if _, err := alice.Call(context.Background(), &services.PickUp{Item: "dragon", Count: 1}); !errors.As(err, &se) || se.Code != sample.CodeBadItem {
		t.Fatalf("picking up an item not in the table: %v", err)
	}
	if _, err := alice.Call(context.Background(), &services.UseItem{Item: "dragon"}); !errors.As(err, &se) || se.Code != sample.CodeNoItem {
		t.Fatalf("using a missing item: %v", err)
	}
	_ = bInfo

	// A second login of alice (over WebSocket) kicks the first session.
	alice2 := player(t, srv, "alice", client.WebSocket, false)
	select {
	case <-alice.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("first session was not kicked")
	}
	var kicked *client.KickedError
	if !errors.As(alice.Err(), &kicked) || kicked.Code != services.KickElsewhere {
		t.Fatalf("first session ended with %v, want %s", alice.Err(), services.KickElsewhere)
	}
	if !alice2.Resumed() {
		t.Fatal("second login did not resume the live actor")
	}
	info2 := push[*services.PlayerInfo](t, alice2, nil)
	if info2.X != moved.X || info2.Items["sword"] != 1 || info2.Items["potion"] != 2 || info2.Items["bread"] != 5 {
		t.Fatalf("second session sees %+v", info2)
	}
	// bob is unaffected.
	call[*services.Echo](t, bob, &services.Echo{Data: []byte("still here")})

	// Disconnect and reconnect within the grace period: same actor, same state.
	moved2 := call[*services.Moved](t, alice2, &services.Move{X: moved.X + 5, Y: moved.Y})
	alice2.Close()
	time.Sleep(300 * time.Millisecond)
	alice3 := player(t, srv, "alice", client.TCP, false)
	if !alice3.Resumed() {
		t.Fatal("reconnect within grace did not resume")
	}
	if info := push[*services.PlayerInfo](t, alice3, nil); info.X != moved2.X {
		t.Fatalf("after reconnect alice is at %d, want %d", info.X, moved2.X)
	}

	// After the grace period the actor saves and stops; the next login
	// starts a new actor from the saved state.
	alice3.Close()
	rec := waitSaved(t, srv, alice3.PlayerID())
	alice4 := player(t, srv, "alice", client.TCP, false)
	if alice4.Resumed() {
		t.Fatal("login after grace resumed an actor that should have stopped")
	}
	if info := push[*services.PlayerInfo](t, alice4, nil); info.X != moved2.X || info.Items["sword"] != 1 {
		t.Fatalf("state after reload: %+v (saved record version %d)", info, rec)
	}
	// Channels were saved too: alice still hears general.
	call[*services.SayOK](t, bob, &services.Say{Channel: "general", Text: "welcome back"})
	if m := push[*services.ChatMessage](t, alice4, func(m *services.ChatMessage) bool { return m.Text == "welcome back" }); m.From != bob.PlayerID() {
		t.Fatalf("chat after reload: %+v", m)
	}
}

// The client SDK's fire-and-forget Send reaches the game, and a client that
// does not read its pushes loses the overflow (counted), not its
// connection.
func TestClientSendAndUnreadPushes(t *testing.T) {
	srv := startTestServer(t, nil)
	carol := player(t, srv, "carol", client.TCP, true)
	lr, err := client.Register(context.Background(), srv.LoginURL, "dave", "password-dave")
	if err != nil {
		t.Fatal(err)
	}
	dave, err := client.Connect(context.Background(), lr, client.Options{Registry: clientRegistry(t), PushBuffer: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dave.Close() })
	call[*services.Joined](t, carol, &services.JoinChannel{Channel: "flood"})
	call[*services.Joined](t, dave, &services.JoinChannel{Channel: "flood"})
	const says = 20
	for i := 0; i < says; i++ {
		if err := carol.Send(&services.Say{Channel: "flood", Text: fmt.Sprintf("line %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	// dave's login PlayerInfo and the 20 lines: what the buffer holds plus
	// what was dropped accounts for every one (rather than counting lines,
	// which would need reading).
	deadline := time.Now().Add(5 * time.Second)
	for dave.DroppedPushes()+uint64(len(dave.Pushes())) < says+1 {
		if time.Now().After(deadline) {
			t.Fatalf("dave: %d pushes dropped, %d buffered; want %d in all", dave.DroppedPushes(), len(dave.Pushes()), says+1)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(dave.Pushes()) != 2 || dave.DroppedPushes() < says-1 {
		t.Fatalf("dave: %d buffered, %d dropped; want 2 buffered (PushBuffer) and the rest dropped", len(dave.Pushes()), dave.DroppedPushes())
	}
	call[*services.Inventory](t, dave, &services.GetInventory{}) // still connected and served
}

// waitSaved waits until the player's actor has retired (grace over) and
// its record is in the store; it returns the record's version.
func waitSaved(t testing.TB, srv *server, id uint64) uint64 {
	t.Helper()
	deadline := time.Now().Add(srv.cfg.Grace + 5*time.Second)
	for {
		rec, err := srv.store.Load(context.Background(), id)
		stopped := true
		for _, n := range srv.nodes {
			if n.Addr().Service == services.Game {
				if _, ok := n.Stats().Kinds["player"]; ok && n.Stats().Kinds["player"].Actors > 0 {
					stopped = actorGone(n, id)
				}
			}
		}
		if err == nil && stopped {
			return rec.Version
		}
		if time.Now().After(deadline) {
			t.Fatalf("player %d not saved and retired after the grace period: %v", id, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func actorGone(n *framework.Node, id uint64) bool {
	err := n.Send(n.ActorAddr(fmt.Sprintf("player-%d", id)), &services.Echo{})
	return errors.Is(err, framework.ErrActorNotFound)
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// srvSigner signs tickets with the server's key (read from its data dir).
func srvSigner(t testing.TB, srv *server) *ticket.Signer {
	key, _, err := loadTicketKey(srv.cfg, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ticket.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Optional TLS: login over HTTPS and the gate over wss.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSignedCert(t, dir)
	srv := startTestServer(t, func(c *config) { c.TLSCert, c.TLSKey = certFile, keyFile })
	if !strings.HasPrefix(srv.LoginURL, "https://") || !strings.HasPrefix(srv.GateWS, "wss://") {
		t.Fatalf("TLS endpoints: %s %s", srv.LoginURL, srv.GateWS)
	}
	tlsConf := &tls.Config{RootCAs: pool}
	api := client.LoginAPI{URL: srv.LoginURL, HTTP: &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf}}}
	lr, err := api.Register(context.Background(), "tlsuser", "password-tls")
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Connect(context.Background(), lr, client.Options{Registry: clientRegistry(t), Transport: client.WebSocket, TLS: tlsConf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	call[*services.Echo](t, c, &services.Echo{Data: []byte("over wss")})
	// Plain HTTP to the TLS listener is refused.
	if _, err := client.Login(context.Background(), strings.Replace(srv.LoginURL, "https", "http", 1), "tlsuser", "password-tls"); err == nil {
		t.Fatal("plain HTTP accepted on the TLS login listener")
	}
}

func selfSignedCert(t testing.TB, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "citadel-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
