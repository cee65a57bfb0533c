package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citadel-go/citadel/client"
	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/ticket"
	"github.com/citadel-go/citadel/game/sample"
	"github.com/citadel-go/citadel/services"
)

// status is what one process reports about its connections (a child
// writes it as a JSON line every second; the parent adds them up).
type status struct {
	Target     int               `json:"target"`     // connections this process opens
	Attempted  int64             `json:"attempted"`  // connected or failed so far
	Up         int64             `json:"up"`         // authenticated and open now
	AuthFailed map[string]int    `json:"authFailed"` // could not connect or authenticate, by cause
	Kicked     map[string]int    `json:"kicked"`     // closed by the gate with a Kicked frame, by code
	Lost       map[string]int    `json:"lost"`       // ended otherwise, by cause
	Pushes     uint64            `json:"pushes"`     // frames the server pushed (not read: idle clients)
	MaxRTTMs   float64           `json:"maxRttMs"`   // slowest last heartbeat among open connections
	Examples   map[string]string `json:"examples"`   // the first error of each cause
	Final      bool              `json:"final"`
}

func (s *status) add(o status) {
	s.Target += o.Target
	s.Attempted += o.Attempted
	s.Up += o.Up
	s.Pushes += o.Pushes
	s.MaxRTTMs = max(s.MaxRTTMs, o.MaxRTTMs)
	for k, v := range o.Examples {
		if s.Examples == nil {
			s.Examples = map[string]string{}
		}
		if _, ok := s.Examples[k]; !ok {
			s.Examples[k] = v
		}
	}
	for _, m := range []struct {
		to   *map[string]int
		from map[string]int
	}{{&s.AuthFailed, o.AuthFailed}, {&s.Kicked, o.Kicked}, {&s.Lost, o.Lost}} {
		for k, v := range m.from {
			if *m.to == nil {
				*m.to = map[string]int{}
			}
			(*m.to)[k] += v
		}
	}
}

// dropped counts connections that failed or ended before the run did.
func (s status) dropped() int { return total(s.AuthFailed) + total(s.Kicked) + total(s.Lost) }

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// Kinds of ended connections, prefixes of status.Examples keys.
const (
	kindFailed = "failed: "
	kindKicked = "kicked: "
	kindLost   = "lost: "
)

// runner opens and holds one process's share of the connections.
type runner struct {
	cfg    config
	first  int // index of this process's first connection
	reg    *framework.Registry
	signer *ticket.Signer // nil in login mode
	sem    chan struct{}

	attempted, up atomic.Int64
	mu            sync.Mutex
	conns         map[*client.Conn]struct{}
	authFailed    map[string]int
	kicked        map[string]int
	lost          map[string]int
	examples      map[string]string
	pushesGone    uint64 // pushes counted on connections that have ended
}

func newRunner(cfg config, first int, signer *ticket.Signer) (*runner, error) {
	reg := framework.NewRegistry()
	if err := sample.Register(reg); err != nil {
		return nil, err
	}
	return &runner{cfg: cfg, first: first, reg: reg, signer: signer, sem: make(chan struct{}, cfg.Concurrency),
		conns: map[*client.Conn]struct{}{}, authFailed: map[string]int{}, kicked: map[string]int{}, lost: map[string]int{}, examples: map[string]string{}}, nil
}

// run opens connections first..first+n-1 and holds them until stop is
// closed, then closes them.
func (r *runner) run(ctx context.Context, n int, stop <-chan struct{}) {
	var wg sync.WaitGroup
	for i := r.first; i < r.first+n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.hold(ctx, i, stop)
		}()
	}
	wg.Wait()
}

func (r *runner) hold(ctx context.Context, i int, stop <-chan struct{}) {
	select {
	case r.sem <- struct{}{}:
	case <-stop:
		r.attempted.Add(1)
		return
	}
	c, err := r.connect(ctx, i)
	<-r.sem
	r.attempted.Add(1)
	if err != nil {
		r.count(kindFailed, r.authFailed, client.Cause(err), err)
		return
	}
	r.mu.Lock()
	r.conns[c] = struct{}{}
	r.mu.Unlock()
	r.up.Add(1)
	var ended error
	select {
	case <-c.Done():
		ended = c.Err()
	case <-stop:
		c.Close()
	}
	r.up.Add(-1)
	r.mu.Lock()
	delete(r.conns, c)
	r.pushesGone += pushes(c)
	r.mu.Unlock()
	var ke *client.KickedError
	switch {
	case ended == nil:
	case errors.As(ended, &ke):
		r.count(kindKicked, r.kicked, ke.Code, ended)
	default:
		r.count(kindLost, r.lost, client.Cause(ended), ended)
	}
}

// connect authenticates connection i: with a ticket signed here for
// player FirstID+i at gate i mod len(Gates), or through the login service
// as account <Prefix>-<i>.
func (r *runner) connect(ctx context.Context, i int) (*client.Conn, error) {
	var lr *services.LoginResponse
	if r.signer != nil {
		g := r.cfg.Gates[i%len(r.cfg.Gates)]
		id := r.cfg.FirstID + uint64(i)
		tok, _, err := r.signer.Issue(id, g.node, time.Minute)
		if err != nil {
			return nil, err
		}
		lr = &services.LoginResponse{PlayerID: id, Ticket: tok, Gate: services.GateInfo{Node: g.node, TCP: g.addr}}
	} else {
		name := fmt.Sprintf("%s-%d", r.cfg.Prefix, i)
		var err error
		lr, err = client.Register(ctx, r.cfg.LoginURL, name, r.cfg.Password)
		var le *client.LoginError
		if errors.As(err, &le) && le.Code == services.LoginCodeNameTaken {
			lr, err = client.Login(ctx, r.cfg.LoginURL, name, r.cfg.Password)
		}
		if err != nil {
			return nil, err
		}
	}
	// Idle clients read no pushes: they are only counted, not decoded.
	return client.Connect(ctx, lr, client.Options{Registry: r.reg, IgnorePushes: true, PushBuffer: 1, DialTimeout: 30 * time.Second})
}

// count adds err to m under key and keeps the first error of each kind
// and key as an example.
func (r *runner) count(kind string, m map[string]int, key string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m[key]++
	if _, ok := r.examples[kind+key]; !ok {
		r.examples[kind+key] = err.Error()
	}
}

func pushes(c *client.Conn) uint64 { return c.DroppedPushes() + uint64(len(c.Pushes())) }

// status reports this process's connections now.
func (r *runner) status(target int) status {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := status{Target: target, Attempted: r.attempted.Load(), Up: r.up.Load(), Pushes: r.pushesGone,
		AuthFailed: clone(r.authFailed), Kicked: clone(r.kicked), Lost: clone(r.lost), Examples: clone(r.examples)}
	for c := range r.conns {
		s.Pushes += pushes(c)
		s.MaxRTTMs = max(s.MaxRTTMs, float64(c.RTT())/float64(time.Millisecond))
	}
	return s
}

func clone[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
