package citadel

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/citadel-go/citadel/client"
	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/framework/store/storetest"
	"github.com/citadel-go/citadel/game/sample"
	"github.com/citadel-go/citadel/services"
	"github.com/vmihailenco/msgpack/v5"
)

// The persistence tests drive the built binary with movers: bots that walk
// and remember every state the server acknowledged (Moved carries the
// player's move count, so each acknowledged state has a number), then kill
// or stop the server and compare the store with what the players saw.

// step is one Move: the state it leads to and when it was sent and acked.
type step struct {
	moves     int64
	x, y      int32
	sent, ack time.Time
}

// mover is one bot and what it saw.
type mover struct {
	name string
	id   uint64

	mu      sync.Mutex
	first   step   // the state at login (moves from PlayerInfo)
	steps   []step // acknowledged, in order
	pending *step  // sent, not (yet) acknowledged
	err     error  // why it stopped
}

// lastAcked is the last acknowledged state (or the login state).
func (m *mover) lastAcked() step {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.steps) == 0 {
		return m.first
	}
	return m.steps[len(m.steps)-1]
}

// reached reports whether the player was ever in state s: the login state,
// an acknowledged one, or the one in flight (the server may have applied it
// without the ack reaching the bot). It returns the step after it, if any.
func (m *mover) reached(s sample.State) (ok bool, next *step) {
	m.mu.Lock()
	defer m.mu.Unlock()
	all := append([]step{m.first}, m.steps...)
	if m.pending != nil {
		all = append(all, *m.pending)
	}
	for i, st := range all {
		if st.moves == s.Moves {
			if st.x != s.X || st.y != s.Y {
				return false, nil
			}
			if i+1 < len(all) {
				n := all[i+1]
				return true, &n
			}
			return true, nil
		}
	}
	return false, nil
}

// startMovers logs n players in (registering them the first time) and
// starts them walking until ctx ends (already ended: log in only) or their
// connection does.
func startMovers(ctx context.Context, t *testing.T, p *process, prefix string, n int, register bool) ([]*mover, *sync.WaitGroup) {
	t.Helper()
	reg := clientRegistry(t)
	movers := make([]*mover, n)
	conns := make([]*client.Conn, n)
	for i := range movers {
		m := &mover{name: fmt.Sprintf("%s%03d", prefix, i)}
		var lr *services.LoginResponse
		var err error
		for deadline := time.Now().Add(15 * time.Second); ; {
			if register {
				lr, err = client.Register(context.Background(), p.loginURL, m.name, "pw-"+m.name)
			} else {
				lr, err = client.Login(context.Background(), p.loginURL, m.name, "pw-"+m.name)
			}
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond) // login waits for a gate heartbeat
		}
		if err != nil {
			t.Fatalf("login %s: %v", m.name, err)
		}
		c, err := client.Connect(context.Background(), lr, client.Options{Registry: reg})
		if err != nil {
			t.Fatalf("connect %s: %v", m.name, err)
		}
		t.Cleanup(func() { c.Close() })
		info := push[*services.PlayerInfo](t, c, nil)
		m.id = c.PlayerID()
		m.first = step{moves: info.Moves, x: info.X, y: info.Y}
		movers[i], conns[i] = m, c
	}
	var wg sync.WaitGroup
	for i, m := range movers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.walk(ctx, conns[i])
		}()
	}
	return movers, &wg
}

func (m *mover) walk(ctx context.Context, c *client.Conn) {
	go func() { // pushes (other players moving) are not needed
		for {
			select {
			case <-c.Pushes():
			case <-c.Done():
				return
			}
		}
	}()
	cur := m.first
	for ctx.Err() == nil {
		next := step{moves: cur.moves + 1, x: walkTo(cur.x), y: walkTo(cur.y), sent: time.Now()}
		m.mu.Lock()
		m.pending = &next
		m.mu.Unlock()
		r, err := c.Call(ctx, &services.Move{X: next.x, Y: next.y})
		if err != nil {
			m.mu.Lock()
			m.err = err
			m.mu.Unlock()
			return
		}
		moved, ok := r.(*services.Moved)
		if !ok || moved.Moves != next.moves || moved.X != next.x || moved.Y != next.y {
			m.mu.Lock()
			m.err = fmt.Errorf("move %d: got %+v", next.moves, r)
			m.mu.Unlock()
			return
		}
		next.ack = time.Now()
		m.mu.Lock()
		m.steps = append(m.steps, next)
		m.pending = nil
		m.mu.Unlock()
		cur = next
		select { // a player's pace, well under the gate's rate limit
		case <-time.After(movePace):
		case <-ctx.Done():
		}
	}
}

// movePace is the pause between a mover's steps.
const movePace = 20 * time.Millisecond

// stillWalking fails the test if a mover stopped before the fault.
func stillWalking(t *testing.T, movers []*mover) {
	t.Helper()
	for _, m := range movers {
		m.mu.Lock()
		err := m.err
		m.mu.Unlock()
		if err != nil {
			t.Fatalf("%s stopped before the fault: %v", m.name, err)
		}
	}
}

// walkTo takes a random step from v that stays on the map.
func walkTo(v int32) int32 {
	d := rand.Int32N(2*services.MaxStep+1) - services.MaxStep
	if v+d < 0 || v+d >= services.MapSize {
		return v - d
	}
	return v + d
}

// loadStates reads every mover's record from st.
func loadStates(t *testing.T, st store.Store, movers []*mover) map[uint64]sample.State {
	t.Helper()
	states := make(map[uint64]sample.State, len(movers))
	for _, m := range movers {
		rec, err := st.Load(context.Background(), m.id)
		if errors.Is(err, store.ErrNotFound) {
			continue // never saved
		}
		if err != nil {
			t.Fatalf("load player %d (%s): %v", m.id, m.name, err)
		}
		var s sample.State
		if err := msgpack.Unmarshal(rec.Data, &s); err != nil {
			t.Fatalf("decode player %d: %v", m.id, err)
		}
		states[m.id] = s
	}
	return states
}

// lossReport compares the store with what the movers saw at time end (the
// kill): every stored state must be one the player reached; for each player
// whose acknowledged changes are not all stored, the lost window is how long
// before end the first lost change was made (between its send and its ack).
type lossReport struct {
	players, acked, lost int
	// windows hold, per player that lost changes, end minus the first lost
	// change's ack (a lower bound on its age) and minus its send (an
	// upper bound).
	lower, upper []time.Duration
}

func checkStore(t *testing.T, states map[uint64]sample.State, movers []*mover, end time.Time) lossReport {
	t.Helper()
	var r lossReport
	for _, m := range movers {
		r.players++
		last := m.lastAcked()
		r.acked += int(last.moves - m.first.moves)
		s, ok := states[m.id]
		if !ok {
			s = sample.State{Moves: m.first.moves, X: m.first.x, Y: m.first.y} // nothing saved yet
			if m.first.moves != 0 {
				t.Errorf("%s (player %d): no record, but the player logged in with %d moves", m.name, m.id, m.first.moves)
				continue
			}
		}
		reached, next := m.reached(s)
		if !reached {
			t.Errorf("%s (player %d): stored state moves=%d at %d,%d is not a state the player reached", m.name, m.id, s.Moves, s.X, s.Y)
			continue
		}
		if s.Moves >= last.moves {
			continue
		}
		r.lost += int(last.moves - s.Moves)
		r.lower = append(r.lower, end.Sub(next.ack))
		r.upper = append(r.upper, end.Sub(next.sent))
	}
	return r
}

func (r lossReport) String() string {
	q := func(d []time.Duration, f float64) time.Duration {
		if len(d) == 0 {
			return 0
		}
		s := slices.Clone(d)
		slices.Sort(s)
		return s[min(len(s)-1, int(f*float64(len(s))))]
	}
	return fmt.Sprintf("%d players, %d acknowledged changes, %d lost by %d players; lost window (age of the oldest lost change at the kill) p50 %v max %v (upper bounds from send times: p50 %v max %v)",
		r.players, r.acked, r.lost, len(r.lower), q(r.lower, 0.5).Round(time.Millisecond), q(r.lower, 1).Round(time.Millisecond),
		q(r.upper, 0.5).Round(time.Millisecond), q(r.upper, 1).Round(time.Millisecond))
}

// waitExit waits for the process to exit after a signal.
func waitExit(t *testing.T, p *process, wantClean bool) {
	t.Helper()
	select {
	case err := <-p.exited:
		if wantClean && err != nil {
			t.Fatalf("exit: %v\n%s", err, p.stderr)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("no exit within 60s\n%s", p.stderr)
	}
}

const (
	persistPlayers = 64
	persistSave    = 2 * time.Second
)

// Must show 2: SIGKILL under load. Every stored state is one the player
// reached; what is lost is at most the save interval old; after a restart
// every player resumes from the stored state.
func TestCrashLosesAtMostTheSaveInterval(t *testing.T) {
	dataDir := t.TempDir()
	p := startProcess(t, dataDir, "-save-interval", persistSave.String())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	movers, wg := startMovers(ctx, t, p, "crash", persistPlayers, true)
	// Several save periods, then the kill at a random point of one.
	time.Sleep(2*persistSave + time.Duration(rand.Int64N(int64(persistSave))))
	stillWalking(t, movers)
	killed := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(t, p, false)
	cancel()
	wg.Wait()

	st, err := store.OpenBolt(filepath.Join(dataDir, "citadel.db"))
	if err != nil {
		t.Fatal(err)
	}
	states := loadStates(t, st, movers)
	st.Close()
	r := checkStore(t, states, movers, killed)
	t.Logf("SIGKILL with -save-interval %v: %v", persistSave, r)
	if r.acked < persistPlayers*10 {
		t.Fatalf("only %d changes acknowledged: the load did not run", r.acked)
	}
	for i, w := range r.lower {
		if w > persistSave {
			t.Errorf("a player lost a change acknowledged %v before the kill (save interval %v; send-time bound %v)", w, persistSave, r.upper[i])
		}
	}

	// Restart on the same data: players resume from the stored state.
	p2 := startProcess(t, dataDir, "-save-interval", persistSave.String())
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2() // log in only
	again, _ := startMovers(ctx2, t, p2, "crash", persistPlayers, false)
	for i, m := range again {
		s := states[m.id]
		if m.id != movers[i].id || m.first.moves != s.Moves || m.first.x != s.X || m.first.y != s.Y {
			t.Errorf("%s after restart: moves=%d at %d,%d, stored moves=%d at %d,%d", m.name, m.first.moves, m.first.x, m.first.y, s.Moves, s.X, s.Y)
		}
	}
	p2.cmd.Process.Signal(syscall.SIGTERM)
	waitExit(t, p2, true)
}

// Must show 3: SIGTERM under load loses nothing: every acknowledged change
// is in the store.
func TestSIGTERMLosesNothing(t *testing.T) {
	dataDir := t.TempDir()
	p := startProcess(t, dataDir, "-save-interval", persistSave.String())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	movers, wg := startMovers(ctx, t, p, "term", persistPlayers, true)
	time.Sleep(persistSave + time.Duration(rand.Int64N(int64(persistSave))))
	stillWalking(t, movers)
	stopped := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitExit(t, p, true)
	wg.Wait() // every session was kicked

	st, err := store.OpenBolt(filepath.Join(dataDir, "citadel.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := checkStore(t, loadStates(t, st, movers), movers, stopped)
	t.Logf("SIGTERM: %v", r)
	if r.acked < persistPlayers*10 {
		t.Fatalf("only %d changes acknowledged: the load did not run", r.acked)
	}
	if r.lost != 0 {
		t.Fatalf("SIGTERM lost %d acknowledged changes", r.lost)
	}
}

// Must show 4: PostgreSQL restarted while players play. Saves fail while it
// is down, are retried, resume after it is back (the stored states move on
// before any shutdown), and a SIGTERM afterwards loses nothing.
func TestPostgresRestartMidRunLosesNothing(t *testing.T) {
	dsn, restart := os.Getenv("CITADEL_PG_FAULT_DSN"), os.Getenv("CITADEL_PG_FAULT_RESTART")
	if dsn == "" || restart == "" {
		t.Skip("needs a PostgreSQL this test may restart (CITADEL_PG_FAULT_DSN, CITADEL_PG_FAULT_RESTART); run `. .ci/postgres` or .ci/run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dsn = storetest.PostgresSchema(t, dsn)

	p := startProcess(t, t.TempDir(), "-store", "postgres", "-pg", dsn, "-save-interval", "1s", "-log-level", "info")
	movers, wg := startMovers(ctx, t, p, "pg", 32, true)
	time.Sleep(1500 * time.Millisecond)

	out, err := exec.Command("sh", "-c", restart).CombinedOutput()
	if err != nil {
		t.Fatalf("restart PostgreSQL: %v\n%s", err, out)
	}
	restarted := time.Now()
	// Saves resume without a shutdown: each player's stored state reaches
	// a change acknowledged after the restart.
	st, err := store.OpenPostgres(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	target := make(map[uint64]int64)
	for _, m := range movers {
		target[m.id] = m.lastAcked().moves
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		behind := 0
		for id, s := range loadStates(t, st, movers) {
			if s.Moves <= target[id] {
				behind++
			}
		}
		if behind == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d players' saves did not resume within 30s of the restart\n%s", behind, p.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("saves resumed %v after PostgreSQL was back", time.Since(restarted).Round(time.Millisecond))

	stillWalking(t, movers)
	stopped := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	waitExit(t, p, true)
	wg.Wait()
	r := checkStore(t, loadStates(t, st, movers), movers, stopped)
	t.Logf("PostgreSQL restart, then SIGTERM: %v; %d failed commit attempts logged",
		r, strings.Count(p.stderr.String(), "save commit failed"))
	if r.lost != 0 {
		t.Fatalf("lost %d acknowledged changes", r.lost)
	}
}
