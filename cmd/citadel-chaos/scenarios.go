package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/services"
	"github.com/nsqio/go-nsq"
)

// Fault durations.
const (
	freezeFor   = 10 * time.Second // SIGSTOP to SIGCONT: a long GC pause or a partition
	foreignFor  = 5 * time.Second  // a foreign consumer on a node's channel
	shortFreeze = 3 * time.Second  // SIGSTOP shorter than the lease: the node is only suspect
	// rebalanceFor lets players move back to a restarted game node before
	// the next one restarts.
	rebalanceFor = 5 * time.Second
	drainLimit   = 90 * time.Second // SIGTERM to exit of a draining process
	nsqdDownFor  = 10 * time.Second // a killed nsqd stays down this long before its restart
)

// fault is one thing done to the cluster.
type fault struct {
	kind   string // one of the fault* names
	target string // the process
	at     time.Time
	end    time.Time // when it stopped acting (SIGCONT, consumer stopped); at for instant faults
	// losesState: the target was a game node that died or paused, so the
	// changes its players made in its last save interval may be lost.
	losesState bool
}

// Fault kinds.
const (
	faultKillGame    = "SIGKILL game"
	faultStopGame    = "SIGSTOP game"
	faultKillGate    = "SIGKILL gate"
	faultKillNSQD    = "SIGKILL nsqd"
	faultRestart     = "restart"
	faultForeignCons = "foreign consumer"
	faultDrain       = "SIGTERM (drain)"
)

// env is what a scenario's faults act on.
type env struct {
	c    *cluster
	cfg  *config
	logf func(string, ...any)

	mu     sync.Mutex
	faults []fault
}

func (e *env) record(f fault) {
	e.mu.Lock()
	e.faults = append(e.faults, f)
	e.mu.Unlock()
	e.logf("  fault: %s %s", f.kind, f.target)
}

// recoverWait is how long a scenario lets players fail over after a game
// node fault before it restarts the node: past the lease (a fenced owner's
// players wait for it) with room for logging in again.
func (e *env) recoverWait() time.Duration { return e.cfg.leaseTTL + 5*time.Second }

// killGame SIGKILLs game node i.
func (e *env) killGame(i int) error {
	p := e.c.proc("game", i)
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	now := time.Now()
	<-p.exited
	e.record(fault{kind: faultKillGame, target: p.name, at: now, end: now, losesState: true})
	return nil
}

// stopGame SIGSTOPs game node i for d, then SIGCONTs it.
func (e *env) stopGame(ctx context.Context, i int, d time.Duration) error {
	p := e.c.proc("game", i)
	if err := freeze(p); err != nil {
		return err
	}
	at := time.Now()
	e.logf("  fault: %s %s for %v", faultStopGame, p.name, d)
	sleep(ctx, d)
	err := unfreeze(p)
	e.mu.Lock()
	e.faults = append(e.faults, fault{kind: faultStopGame, target: p.name, at: at, end: time.Now(), losesState: true})
	e.mu.Unlock()
	return err
}

// killGate SIGKILLs gate i.
func (e *env) killGate(i int) error {
	p := e.c.proc("gate", i)
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	now := time.Now()
	<-p.exited
	e.record(fault{kind: faultKillGate, target: p.name, at: now, end: now})
	return nil
}

// killNSQD SIGKILLs nsqd i, waits d, and restarts it on its ports and data.
func (e *env) killNSQD(ctx context.Context, i int, d time.Duration) error {
	p := e.c.proc("nsqd", i)
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	now := time.Now()
	<-p.exited
	e.record(fault{kind: faultKillNSQD, target: p.name, at: now, end: now})
	sleep(ctx, d)
	return e.restart(ctx, p)
}

// restart starts a killed process again: failback.
func (e *env) restart(ctx context.Context, p *proc) error {
	np, err := e.c.restart(ctx, p)
	if err != nil {
		return fmt.Errorf("restart %s: %w", p.name, err)
	}
	now := time.Now()
	e.record(fault{kind: faultRestart, target: np.name, at: now, end: now})
	return nil
}

// foreign consumes game node i's own channel from outside the cluster for
// d: it takes (and throws away) a share of the messages sent to the node,
// as any NSQ client that can reach nsqd can. One consumer per nsqd, each
// with one connection: go-nsq gives a consumer's later connections their
// share of MaxInFlight only after a while.
func (e *env) foreign(ctx context.Context, i int, d time.Duration) error {
	p := e.c.proc("game", i)
	topic := framework.NodeTopic(services.Game, p.name)
	var taken atomic.Int64
	var consumers []*nsq.Consumer
	defer func() {
		for _, c := range consumers {
			c.Stop()
			<-c.StopChan
		}
	}()
	at := time.Now()
	for _, n := range e.c.list("nsqd") {
		if !n.alive() {
			continue
		}
		cfg := nsq.NewConfig()
		cfg.MaxInFlight = 1000
		c, err := nsq.NewConsumer(topic, "actors", cfg)
		if err != nil {
			return err
		}
		c.SetLogger(log.New(io.Discard, "", 0), nsq.LogLevelError)
		c.AddHandler(nsq.HandlerFunc(func(*nsq.Message) error {
			taken.Add(1)
			return nil
		}))
		if err := c.ConnectToNSQD(n.tcp); err != nil {
			return fmt.Errorf("foreign consumer on %s: %w", n.name, err)
		}
		consumers = append(consumers, c)
	}
	e.logf("  fault: %s on %s/actors for %v", faultForeignCons, topic, d)
	sleep(ctx, d)
	for _, c := range consumers {
		c.Stop()
		<-c.StopChan
	}
	consumers = nil
	e.logf("  the foreign consumer took %d messages", taken.Load())
	e.mu.Lock()
	e.faults = append(e.faults, fault{kind: faultForeignCons, target: p.name, at: at, end: time.Now()})
	e.mu.Unlock()
	return nil
}

// scenario is a named fault script; run returns after its last action.
// A live scenario moves players with their connections open: no player
// may lose a call or its session.
type scenario struct {
	name, desc string
	run        func(ctx context.Context, e *env) error
	live       bool
}

var scenarios = []scenario{
	{"kill-game", "SIGKILL a game node; its players log in again on the others", func(ctx context.Context, e *env) error {
		return e.killGame(0)
	}, false},
	{"stop-game", "SIGSTOP a game node for 10s, then SIGCONT (a long GC pause or partition)", func(ctx context.Context, e *env) error {
		return e.stopGame(ctx, 0, freezeFor)
	}, false},
	{"kill-gate", "SIGKILL a gate; its players log in again through the other", func(ctx context.Context, e *env) error {
		return e.killGate(0)
	}, false},
	{"kill-nsqd", "SIGKILL an nsqd, restart it 10s later", func(ctx context.Context, e *env) error {
		return e.killNSQD(ctx, 0, nsqdDownFor)
	}, false},
	{"restart-game", "SIGKILL a game node, restart it once its players moved (failback)", func(ctx context.Context, e *env) error {
		if err := e.killGame(0); err != nil {
			return err
		}
		sleep(ctx, e.recoverWait())
		return e.restart(ctx, e.c.proc("game", 0))
	}, false},
	{"foreign-consumer", "an NSQ consumer from outside takes a game node's messages for 5s", func(ctx context.Context, e *env) error {
		return e.foreign(ctx, 0, foreignFor)
	}, false},
	{"mixed", "every fault above, overlapping, in a random order (-seed)", runMixed, false},
	{"rolling-restart", "SIGTERM each game node in turn (it drains: its players move live), restart it (players rebalance back)", func(ctx context.Context, e *env) error {
		for i := range e.c.list("game") {
			if err := e.drainRestart(ctx, "game", i); err != nil {
				return err
			}
			sleep(ctx, rebalanceFor)
		}
		return nil
	}, true},
	{"join-game", "a game node drains away, then joins again: players rebalance to it live", func(ctx context.Context, e *env) error {
		return e.drainRestart(ctx, "game", len(e.c.list("game"))-1)
	}, true},
	{"stop-game-3s", "SIGSTOP a game node for 3s under load: suspect only, nobody kicked", func(ctx context.Context, e *env) error {
		return e.stopGame(ctx, 0, shortFreeze)
	}, true},
	{"drain-gate", "SIGTERM a gate (it drains: clients reconnect to the other gate and resume), restart it", func(ctx context.Context, e *env) error {
		return e.drainRestart(ctx, "gate", 0)
	}, true},
}

// drainRestart SIGTERMs process i of kind (it drains before it exits) and
// starts it again once it has.
func (e *env) drainRestart(ctx context.Context, kind string, i int) error {
	p := e.c.proc(kind, i)
	at := time.Now()
	if err := p.signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.exited:
	case <-time.After(drainLimit):
		return fmt.Errorf("%s did not exit within %v of SIGTERM", p.name, drainLimit)
	case <-ctx.Done():
		return ctx.Err()
	}
	e.mu.Lock()
	e.faults = append(e.faults, fault{kind: faultDrain, target: p.name, at: at, end: time.Now()})
	e.mu.Unlock()
	e.logf("  fault: %s %s (took %v)", faultDrain, p.name, time.Since(at).Round(10*time.Millisecond))
	return e.restart(ctx, p)
}

// shortScenarios run in -short mode (the test, CI).
var shortScenarios = []string{"kill-game", "stop-game", "kill-gate", "restart-game", "rolling-restart", "join-game", "stop-game-3s", "drain-gate"}

func findScenario(name string) (scenario, bool) {
	for _, s := range scenarios {
		if s.name == name {
			return s, true
		}
	}
	return scenario{}, false
}

func scenarioNames() string {
	var n []string
	for _, s := range scenarios {
		n = append(n, s.name)
	}
	return strings.Join(n, ", ")
}

// runMixed starts a fault every few seconds, each on a target no other
// fault holds, so faults overlap but the cluster always keeps a game node,
// a gate and an nsqd: a killed game node or gate is restarted once its
// players moved, a killed nsqd after nsqdDownFor.
func runMixed(ctx context.Context, e *env) error {
	rng := rand.New(rand.NewPCG(e.cfg.seed, 0))
	kinds := []string{faultKillGame, faultStopGame, faultKillGate, faultKillNSQD, faultForeignCons}
	var (
		mu    sync.Mutex
		busy  = map[string]bool{} // targets a fault holds
		wg    sync.WaitGroup
		first error
	)
	fail := func(err error) {
		mu.Lock()
		if first == nil && err != nil {
			first = err
		}
		mu.Unlock()
	}
	// free picks a target of a kind of which no fault holds any: at most
	// one game node, one gate and one nsqd are faulted at a time.
	free := func(prefix string, n int) int {
		var idx []int
		held := 0
		for i := 0; i < n; i++ {
			if busy[fmt.Sprintf("%s-%d", prefix, i+1)] {
				held++
			} else {
				idx = append(idx, i)
			}
		}
		if held > 0 {
			return -1
		}
		return idx[rng.IntN(len(idx))]
	}
	for round := 0; round < e.cfg.mixedFaults; round++ {
		if round > 0 {
			sleep(ctx, 3*time.Second+time.Duration(rng.Int64N(int64(3*time.Second))))
		}
		if ctx.Err() != nil {
			break
		}
		mu.Lock()
		order := rng.Perm(len(kinds))
		kind, target, i := "", "", -1
		for _, k := range order {
			prefix, n := "game", numGames
			switch kinds[k] {
			case faultKillGate:
				prefix, n = "gate", numGates
			case faultKillNSQD:
				prefix, n = "nsqd", numNSQD
			}
			if i = free(prefix, n); i >= 0 {
				kind, target = kinds[k], fmt.Sprintf("%s-%d", prefix, i+1)
				busy[target] = true
				break
			}
		}
		mu.Unlock()
		if kind == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { mu.Lock(); delete(busy, target); mu.Unlock() }()
			switch kind {
			case faultKillGame:
				if err := e.killGame(i); err != nil {
					fail(err)
					return
				}
				sleep(ctx, e.recoverWait())
				fail(e.restart(ctx, e.c.proc("game", i)))
			case faultStopGame:
				fail(e.stopGame(ctx, i, freezeFor))
			case faultKillGate:
				if err := e.killGate(i); err != nil {
					fail(err)
					return
				}
				sleep(ctx, e.recoverWait())
				fail(e.restart(ctx, e.c.proc("gate", i)))
			case faultKillNSQD:
				fail(e.killNSQD(ctx, i, nsqdDownFor))
			case faultForeignCons:
				fail(e.foreign(ctx, i, foreignFor))
			}
		}()
	}
	wg.Wait()
	return first
}

// faultsByTime returns the faults in the order they began.
func (e *env) faultsByTime() []fault {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := append([]fault(nil), e.faults...)
	sort.Slice(f, func(a, b int) bool { return f[a].at.Before(f[b].at) })
	return f
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
