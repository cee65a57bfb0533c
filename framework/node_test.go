package framework

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/citadel-go/citadel/mq"
	"github.com/prometheus/client_golang/prometheus"
)

func TestNodeConfigValidation(t *testing.T) {
	reg := NewRegistry()
	for _, tc := range []struct {
		cfg  NodeConfig
		frag string
	}{
		{NodeConfig{ID: "n", Registry: reg}, "service name is empty"},
		{NodeConfig{Service: "game", ID: "n.1", Registry: reg}, `invalid character '.'`},
		{NodeConfig{Service: "game", ID: strings.Repeat("x", 47), Registry: reg}, "at most 50"},
		{NodeConfig{Service: "game", ID: "n"}, "Registry is required"},
		{NodeConfig{Service: "game", ID: "n", Registry: reg, MQ: &mq.BusConfig{}}, "at least one nsqd"},
	} {
		if _, err := NewNode(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.frag) {
			t.Errorf("%+v: got %v, want %q", tc.cfg, err, tc.frag)
		}
	}
}

// Stop drains: everything already queued is handled, then each actor gets
// Stopped, and afterwards the node refuses work.
func TestGracefulStopDrainsMailboxes(t *testing.T) {
	broker := startBroker(t, mq.BrokerConfig{})
	src := newNode(t, broker, "gate", "gate-1", nil)
	n := newNode(t, broker, "game", "game-1", nil)
	var handled []int
	stopped := make(chan []int, 1)
	a, _ := n.Spawn("slow", func() Actor {
		return ActorFunc(func(c *Context) {
			switch m := c.Message().(type) {
			case *Seq:
				time.Sleep(time.Millisecond)
				handled = append(handled, m.N)
			case Stopped:
				stopped <- handled
			}
		})
	}, SpawnOptions{})
	for i := 0; i < 100; i++ {
		if err := n.Send(a, &Seq{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 100; i < 150; i++ {
		if err := src.Send(a, &Seq{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	src.Bus().Flush(context.Background())
	eventually(t, 5*time.Second, "remote messages queued", func() bool { return n.Stats().RemoteReceived >= 50 })
	if err := n.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := <-stopped
	if len(got) != 150 {
		t.Fatalf("handled %d of 150 before stopping", len(got))
	}
	if err := n.Send(a, &Seq{}); !errors.Is(err, ErrNodeStopped) {
		t.Fatalf("send after stop: %v", err)
	}
	if _, err := n.Spawn("late", func() Actor { return ActorFunc(func(*Context) {}) }, SpawnOptions{}); !errors.Is(err, ErrNodeStopped) {
		t.Fatalf("spawn after stop: %v", err)
	}
}

func TestMetricsAreExported(t *testing.T) {
	broker := startBroker(t, mq.BrokerConfig{})
	reg := prometheus.NewRegistry()
	n := newNode(t, broker, "game", "game-1", func(c *NodeConfig) { c.Metrics = reg })
	src := newNode(t, broker, "gate", "gate-1", nil)
	seqs := spawnEcho(t, n, "echo")
	src.Send(n.ActorAddr("echo"), &Seq{N: 1})
	receive(t, seqs, 5*time.Second)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
			found[mf.GetName()] += v
		}
	}
	for _, name := range []string{"citadel_node_remote_received_total", "citadel_actor_messages_total",
		"citadel_node_remote_latency_seconds", "citadel_actors", "citadel_mq_received_total"} {
		if found[name] < 1 {
			t.Errorf("metric %s = %v, want >= 1 (have %d families)", name, found[name], len(mfs))
		}
	}
	if _, ok := found["citadel_actor_mailbox_overflow_total"]; !ok {
		t.Error("overflow counter missing")
	}
}
