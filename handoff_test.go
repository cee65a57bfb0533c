package citadel

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citadel-go/citadel/client"
	"github.com/citadel-go/citadel/services"
)

// Players move between game nodes with their connections open: to a node
// that joins (rebalance), and back when it drains. Every request of every
// player is answered, none fails, and the move counter, saved with the
// state, goes up by exactly one per acknowledged move: nothing is lost or
// applied twice across a handoff.
func TestPlayersMoveLiveOnJoinAndDrain(t *testing.T) {
	shared := clusterStore(t)
	srv1 := startTestServer(t, func(c *config) { shared(c); c.RebalanceRate, c.ClientRate = 200, 1000 })
	const players = 16
	conns := make([]*client.Conn, players)
	for i := range conns {
		conns[i] = player(t, srv1, fmt.Sprintf("mover%d", i), client.TCP, true)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var calls atomic.Int64
	errs := make(chan error, 2*players)
	for i, c := range conns {
		var info *services.PlayerInfo
		select {
		case m := <-c.Pushes():
			info, _ = m.(*services.PlayerInfo)
		case <-time.After(10 * time.Second):
		}
		if info == nil {
			t.Fatalf("player %d: no PlayerInfo pushed on attach", i)
		}
		// A second stream of requests on the same connection, so that
		// frames arrive back to back while a session is held: each echo
		// must come back as it was sent.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				data := []byte(fmt.Sprintf("player %d echo %d", i, n))
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				r, err := c.Call(ctx, &services.Echo{Data: data})
				cancel()
				if e, ok := r.(*services.Echo); err != nil || !ok || string(e.Data) != string(data) {
					errs <- fmt.Errorf("player %d echo %d: sent %q, got %+v, %v", i, n, data, r, err)
					return
				}
				time.Sleep(3 * time.Millisecond)
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last int64 = -1
			x, y := info.X, info.Y
			step := int32(1)
			if x > 0 {
				step = -1
			}
			tx := x
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				if tx == x {
					tx = x + step
				} else {
					tx = x
				}
				r, err := c.Call(ctx, &services.Move{X: tx, Y: y})
				cancel()
				if err != nil {
					errs <- fmt.Errorf("player %d move %d: %v", i, n, err)
					return
				}
				mv := r.(*services.Moved)
				if last >= 0 && mv.Moves != last+1 {
					errs <- fmt.Errorf("player %d: move counter went from %d to %d on one acknowledged move", i, last, mv.Moves)
					return
				}
				last = mv.Moves
				calls.Add(1)
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	attached := func(srv *server) float64 {
		return metricValue(t, srv.Admin, `citadel_game_players{state="attached"}`)
	}
	waitCalls := func(n int64) {
		for deadline := time.Now().Add(30 * time.Second); calls.Load() < n; time.Sleep(20 * time.Millisecond) {
			if len(errs) > 0 {
				t.Fatal(<-errs)
			}
			if time.Now().After(deadline) {
				t.Fatalf("only %d moves answered, want %d", calls.Load(), n)
			}
		}
	}
	waitCalls(players * 5)

	// A second game node joins: the players the ring maps to it move there.
	srv2 := startTestServer(t, func(c *config) {
		shared(c)
		c.Roles, c.NodeID, c.RebalanceRate = []string{services.Game}, "2", 200
		c.NSQD, c.NSQDHTTPExt = []string{srv1.broker.TCPAddr()}, []string{srv1.broker.HTTPAddr()}
		c.ClusterKeyFile = srv1.cfg.ClusterKeyFile
	})
	eventuallyTrue(t, "players rebalanced to game-2", func() bool { return attached(srv2) > 0 })
	moved := attached(srv2)
	at := calls.Load()
	waitCalls(at + players*5)

	// It drains: every player goes back, connections open.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	srv2.drain(ctx)
	cancel()
	if got := attached(srv2); got != 0 {
		t.Fatalf("%v players still on game-2 after its drain", got)
	}
	if srv2.readiness() == nil {
		t.Fatal("/readyz must fail while a node drains")
	}
	at = calls.Load()
	waitCalls(at + players*5)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := attached(srv1); got != players {
		t.Fatalf("game-1 has %v attached players, want all %d", got, players)
	}
	handoffs := metricValue(t, srv1.Admin, `citadel_gate_handoffs_total{outcome="moved"}`)
	kicks := metricValue(t, srv1.Admin, `citadel_gate_kicks_total{code="game_unavailable"}`)
	t.Logf("%v players rebalanced to game-2 and back; %v handoffs; %d moves answered", moved, handoffs, calls.Load())
	if handoffs < 2*moved || kicks > 0 {
		t.Fatalf("handoffs %v (want ≥ %v), kicks %v (want none)", handoffs, 2*moved, kicks)
	}
}

// A draining gate sends its clients to another gate (Reconnect); the SDK
// follows with no error for the caller: requests in flight are answered,
// the same player resumes on the other gate with its state, and the old
// connection closes. Clients of the other gate notice nothing.
func TestGateDrainMovesClientsToAnotherGate(t *testing.T) {
	srv1 := startTestServer(t, func(c *config) { c.ClientRate = 1000 })
	startTestServer(t, func(c *config) {
		c.Roles, c.NodeID = []string{services.Gate}, "2"
		c.NSQD, c.NSQDHTTPExt = []string{srv1.broker.TCPAddr()}, []string{srv1.broker.HTTPAddr()}
		c.ClusterKeyFile, c.TicketKeyFile = srv1.cfg.ClusterKeyFile, srv1.cfg.TicketKeyFile
	})
	eventuallyTrue(t, "every node sees two gates with addresses", func() bool {
		for _, n := range srv1.nodes {
			gates := n.Members().Alive(services.Gate)
			if len(gates) != 2 || gates[0].Meta[services.MetaTCP] == "" || gates[1].Meta[services.MetaTCP] == "" {
				return false
			}
		}
		return true
	})
	const players = 8
	conns := make([]*client.Conn, players)
	for i := range conns {
		conns[i] = player(t, srv1, fmt.Sprintf("traveller%d", i), client.TCP, true)
	}
	onFirst := srv1.gate.Sessions()
	if onFirst == 0 {
		t.Fatalf("login put none of %d players on gate-1", players)
	}
	infos := make([]*services.PlayerInfo, players)
	for i, c := range conns {
		infos[i] = (<-c.Pushes()).(*services.PlayerInfo)
	}
	// Each step moves every player where it stands: the counter, saved
	// with the state, must go up by one on whichever gate it is.
	step := func() {
		for i, c := range conns {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			r, err := c.Call(ctx, &services.Move{X: infos[i].X, Y: infos[i].Y})
			cancel()
			if err != nil {
				t.Fatalf("player %d: %v", i, err)
			}
			if m, ok := r.(*services.Moved); !ok || m.Moves != infos[i].Moves+1 {
				t.Fatalf("player %d: after %d moves, Move answered %+v", i, infos[i].Moves, r)
			}
			infos[i].Moves++
		}
	}
	step()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv1.gate.Drain(ctx, 100); err != nil {
		t.Fatalf("gate drain: %v", err)
	}
	if n := srv1.gate.Sessions(); n != 0 {
		t.Fatalf("%d sessions left on the drained gate", n)
	}
	step()
	moved := 0
	for i, c := range conns {
		if c.Err() != nil {
			t.Fatalf("player %d's connection ended: %v", i, c.Err())
		}
		moved += int(c.Moves())
	}
	if moved != onFirst {
		t.Fatalf("%d clients moved to gate-2, want the %d that were on gate-1", moved, onFirst)
	}
}

// A second gate process under a name a running gate uses refuses to
// start, saying how to fix it: the two would split the name's messages.
func TestDuplicateGateNameRefused(t *testing.T) {
	srv1 := startTestServer(t, nil)
	cfg := testConfig(t)
	cfg.Roles, cfg.NodeID = []string{services.Gate}, "1"
	cfg.NSQD, cfg.NSQDHTTPExt = []string{srv1.broker.TCPAddr()}, []string{srv1.broker.HTTPAddr()}
	cfg.ClusterKeyFile, cfg.TicketKeyFile = srv1.cfg.ClusterKeyFile, srv1.cfg.TicketKeyFile
	srv2, err := start(context.Background(), cfg)
	if srv2 != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv2.stop(ctx)
	}
	if err == nil || !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), "-id") {
		t.Fatalf("a second gate-1 started (err %v); want a refusal naming -id", err)
	}
	// The first one still serves.
	player(t, srv1, "still-here", client.TCP, true)
}

// The only game node stops: its players are saved and their clients told
// why at once (server_shutdown), not left waiting for a node that may not
// come back.
func TestLastGameNodeStoppingKicksWithAReason(t *testing.T) {
	fcfg := testConfig(t)
	fcfg.Roles = []string{services.Login, services.Gate}
	front, err := start(context.Background(), fcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		front.stop(ctx)
	})
	cfg := testConfig(t)
	cfg.Roles, cfg.NodeID = []string{services.Game}, "2"
	cfg.NSQD, cfg.NSQDHTTPExt = []string{front.broker.TCPAddr()}, []string{front.broker.HTTPAddr()}
	cfg.ClusterKeyFile = front.cfg.ClusterKeyFile
	back, err := start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, front)
	waitReady(t, back)
	c := player(t, front, "last-one", client.TCP, true)
	<-c.Pushes() // PlayerInfo: attached
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := back.stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the client was not told its only game node stopped")
	}
	var ke *client.KickedError
	if !errors.As(c.Err(), &ke) || ke.Code != services.KickShutdown {
		t.Fatalf("client saw %v, want a %s kick", c.Err(), services.KickShutdown)
	}
}
