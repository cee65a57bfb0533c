package framework

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/citadel-go/citadel/mq"
)

// Test message types.
type (
	Ping struct{ N int }
	Pong struct{ N int }
	Seq  struct {
		From string
		N    int
	}
	Blob  struct{ Data []byte }
	Boom  struct{}
	Tick  struct{}
	Unreg struct{}
)

func testRegistry(t testing.TB) *Registry {
	t.Helper()
	r := NewRegistry()
	for id, m := range map[MsgID]any{10001: (*Ping)(nil), 10002: (*Pong)(nil), 10003: (*Seq)(nil), 10004: (*Blob)(nil), 10005: (*Boom)(nil), 10006: (*Tick)(nil)} {
		if err := r.Register(id, m); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func testLogger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("CITADEL_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// testKeys is the cluster keyring of every test broker, so nodes on
// different brokers (or a broker restarted) understand each other.
var testKeys = func() *mq.Keyring {
	k, err := mq.ParseKeyring(mq.GenerateKeyring())
	if err != nil {
		panic(err)
	}
	return k
}()

func startBroker(t testing.TB, cfg mq.BrokerConfig) *mq.Broker {
	t.Helper()
	if cfg.Keys == nil {
		cfg.Keys = testKeys
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	cfg.TCPAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.NoLookupd = true
	cfg.Logger = testLogger()
	b, err := mq.StartBroker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// newNode creates and starts a node on broker b (nil: local-only).
func newNode(t testing.TB, b *mq.Broker, service, id string, tweak func(*NodeConfig)) *Node {
	t.Helper()
	cfg := NodeConfig{Service: service, ID: id, Registry: testRegistry(t), Logger: testLogger()}
	if b != nil {
		bc := b.BusConfig()
		cfg.MQ = &bc
		cfg.HeartbeatInterval = 100 * time.Millisecond
	}
	if tweak != nil {
		tweak(&cfg)
	}
	n, err := NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop(context.Background()) })
	if b != nil {
		meetPeers(t, b, n)
	}
	return n
}

// peers lists the running nodes of each test broker, so a new node and the
// ones before it can wait to know each other: a node sends only to nodes
// it knows.
var (
	peersMu sync.Mutex
	peers   = map[*mq.Broker][]*Node{}
)

// meet waits until a and b know each other's incarnation.
func meet(t testing.TB, a, b *Node) {
	t.Helper()
	eventually(t, 15*time.Second, fmt.Sprintf("%s and %s to know each other", a.addr.Node, b.addr.Node), func() bool {
		return a.members.epochOf(b.addr.Service, b.addr.Node) == b.epoch && b.members.epochOf(a.addr.Service, a.addr.Node) == a.epoch
	})
}

func meetPeers(t testing.TB, b *mq.Broker, n *Node) {
	t.Helper()
	peersMu.Lock()
	var others []*Node
	for _, o := range peers[b] {
		if o.state.Load() == stateRunning {
			others = append(others, o)
		}
	}
	peers[b] = append(others, n)
	peersMu.Unlock()
	t.Cleanup(func() {
		peersMu.Lock()
		defer peersMu.Unlock()
		list := peers[b]
		for i, o := range list {
			if o == n {
				peers[b] = append(list[:i:i], list[i+1:]...)
				break
			}
		}
	})
	for _, o := range others {
		if o.cfg.MQ == nil || o.addr == n.addr {
			continue
		}
		meet(t, n, o)
	}
}

func receive[T any](t testing.TB, ch chan T, timeout time.Duration) T {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(timeout):
		t.Fatalf("nothing received within %v", timeout)
		var zero T
		return zero
	}
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
