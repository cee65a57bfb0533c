package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citadel-go/citadel/client"
	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/game/sample"
	"github.com/citadel-go/citadel/services"
)

type botConfig struct {
	LoginURL         string
	N                int
	Duration         time.Duration
	Transport        string
	Prefix           string
	Password         string
	Think            time.Duration
	LoginConcurrency int
	EchoOnly         bool
}

// stats are shared by all bots.
type stats struct {
	connected, failed, kicked atomic.Int64
	calls, errs, pushes       atomic.Int64

	mu        sync.Mutex
	window    []time.Duration // latencies since the last progress line
	all       []time.Duration
	errKinds  map[string]int
	lastError string
}

func (s *stats) observe(d time.Duration, err error) {
	if err != nil {
		s.errs.Add(1)
		s.mu.Lock()
		kind := errKind(err)
		s.errKinds[kind]++
		s.lastError = err.Error()
		s.mu.Unlock()
		return
	}
	s.calls.Add(1)
	s.mu.Lock()
	s.window = append(s.window, d)
	s.mu.Unlock()
}

func errKind(err error) string {
	var se *client.ServerError
	var ke *client.KickedError
	var le *client.LoginError
	switch {
	case errors.As(err, &se):
		return "server:" + se.Code
	case errors.As(err, &ke):
		return "kicked:" + ke.Code
	case errors.As(err, &le):
		return "login:" + le.Code
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "other"
}

// summary is the final result.
type summary struct {
	Connected, Failed, Kicked, Calls, Errors, Pushes int64
	P50, P99, Max                                    time.Duration
	Elapsed                                          time.Duration
	ErrKinds                                         map[string]int
}

func (s summary) ok(n int) bool {
	return s.Connected == int64(n) && s.Errors*100 <= s.Calls
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

// runBots runs cfg.N bots and returns the summary.
func runBots(ctx context.Context, cfg botConfig, out io.Writer) (summary, error) {
	if cfg.N <= 0 {
		return summary{}, errors.New("-n must be positive")
	}
	if cfg.LoginConcurrency <= 0 {
		cfg.LoginConcurrency = 32
	}
	reg := framework.NewRegistry()
	if err := sample.Register(reg); err != nil {
		return summary{}, err
	}
	st := &stats{errKinds: make(map[string]int)}
	start := time.Now()
	playUntil := make(chan struct{})
	var once sync.Once
	endPlay := func() { once.Do(func() { close(playUntil) }) }

	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var lastCalls, lastPushes int64
		for {
			select {
			case <-playUntil:
				return
			case <-t.C:
			}
			st.mu.Lock()
			w := st.window
			st.window = nil
			st.all = append(st.all, w...)
			last := st.lastError
			st.mu.Unlock()
			sort.Slice(w, func(i, j int) bool { return w[i] < w[j] })
			calls, pushes := st.calls.Load(), st.pushes.Load()
			line := fmt.Sprintf("t=%-4s connected=%d/%d calls/s=%d pushes/s=%d p50=%v p99=%v errors=%d",
				time.Since(start).Round(time.Second), st.connected.Load(), cfg.N, calls-lastCalls, pushes-lastPushes,
				percentile(w, 0.5).Round(time.Microsecond), percentile(w, 0.99).Round(time.Microsecond), st.errs.Load())
			if n := st.failed.Load(); n > 0 {
				line += fmt.Sprintf(" connect_failed=%d", n)
			}
			if last != "" && st.errs.Load() > 0 {
				line += " last_error=" + strings.ReplaceAll(last, " ", "_")
			}
			printf(out, "%s", line)
			lastCalls, lastPushes = calls, pushes
		}
	}()

	sem := make(chan struct{}, cfg.LoginConcurrency)
	var wg sync.WaitGroup
	var attempts atomic.Int64
	// Bots play as soon as they connect; the -d clock starts once every bot
	// has tried to connect, so a slow ramp-up does not eat the play time.
	attempted := func() {
		if attempts.Add(1) == int64(cfg.N) {
			printf(out, "%d of %d bots connected after %v; playing for %v more", st.connected.Load(), cfg.N,
				time.Since(start).Round(time.Millisecond), cfg.Duration)
			time.AfterFunc(cfg.Duration, endPlay)
		}
	}
	for i := 0; i < cfg.N; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			conn, err := connect(ctx, cfg, reg, fmt.Sprintf("%s-%d", cfg.Prefix, i))
			<-sem
			if err != nil {
				st.failed.Add(1)
				st.observe(0, err)
				attempted()
				return
			}
			defer conn.Close()
			st.connected.Add(1)
			attempted()
			play(ctx, cfg, conn, st, playUntil, int64(i))
		}(i)
	}
	go func() {
		select {
		case <-ctx.Done():
			endPlay()
		case <-playUntil:
		}
	}()
	wg.Wait()
	endPlay()
	<-progressDone

	st.mu.Lock()
	all := append(st.all, st.window...)
	st.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	sum := summary{Connected: st.connected.Load(), Failed: st.failed.Load(), Kicked: st.kicked.Load(),
		Calls: st.calls.Load(), Errors: st.errs.Load(), Pushes: st.pushes.Load(),
		P50: percentile(all, 0.5), P99: percentile(all, 0.99), Elapsed: time.Since(start), ErrKinds: st.errKinds}
	if len(all) > 0 {
		sum.Max = all[len(all)-1]
	}
	printf(out, "summary: bots=%d connected=%d connect_failed=%d calls=%d errors=%d pushes=%d p50=%v p99=%v max=%v elapsed=%v",
		cfg.N, sum.Connected, sum.Failed, sum.Calls, sum.Errors, sum.Pushes,
		sum.P50.Round(time.Microsecond), sum.P99.Round(time.Microsecond), sum.Max.Round(time.Microsecond), sum.Elapsed.Round(time.Millisecond))
	if len(sum.ErrKinds) > 0 {
		printf(out, "errors by kind: %v", sum.ErrKinds)
	}
	return sum, nil
}

// connect registers the bot's account, or logs in if it exists, and
// connects to the gate login chose.
func connect(ctx context.Context, cfg botConfig, reg *framework.Registry, name string) (*client.Conn, error) {
	lr, err := client.Register(ctx, cfg.LoginURL, name, cfg.Password)
	var le *client.LoginError
	if errors.As(err, &le) && le.Code == services.LoginCodeNameTaken {
		lr, err = client.Login(ctx, cfg.LoginURL, name, cfg.Password)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return client.Connect(ctx, lr, client.Options{Registry: reg, Transport: cfg.Transport})
}

// play runs one bot's game loop.
func play(ctx context.Context, cfg botConfig, c *client.Conn, st *stats, stop <-chan struct{}, seed int64) {
	rnd := rand.New(rand.NewPCG(uint64(seed), uint64(time.Now().UnixNano())))
	// Our position comes with PlayerInfo, the first push after attaching;
	// after that only Move replies change it.
	var x, y int32
wait:
	for {
		select {
		case m := <-c.Pushes():
			st.pushes.Add(1)
			if info, ok := m.(*services.PlayerInfo); ok {
				x, y = info.X, info.Y
				break wait
			}
		case <-c.Done():
			break wait
		case <-time.After(5 * time.Second):
			st.observe(0, errors.New("no PlayerInfo within 5s of connecting"))
			break wait
		}
	}
	go func() { // count pushes
		for {
			select {
			case <-c.Pushes():
				st.pushes.Add(1)
			case <-c.Done():
				return
			}
		}
	}()
	callCtx := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 10*time.Second) }
	// do makes one call; server errors with an expected code (part of the
	// game, like an empty bag) count as answered calls, not failures.
	do := func(msg any, expected ...string) (any, error) {
		cctx, cancel := callCtx()
		defer cancel()
		t0 := time.Now()
		r, err := c.Call(cctx, msg)
		var se *client.ServerError
		if errors.As(err, &se) && slices.Contains(expected, se.Code) {
			st.observe(time.Since(t0), nil)
		} else {
			st.observe(time.Since(t0), err)
		}
		return r, err
	}
	channel := fmt.Sprintf("bots-%d", seed%20) // chat channels of ~N/20 bots
	if !cfg.EchoOnly {
		do(&services.JoinChannel{Channel: channel})
		if r, err := do(&services.GetInventory{}); err == nil {
			_ = r
		}
	}
	echo := &services.Echo{Data: []byte("citadel-bot")}
	for {
		select {
		case <-stop:
			return
		case <-c.Done():
			var ke *client.KickedError
			if errors.As(c.Err(), &ke) {
				st.kicked.Add(1)
				st.observe(0, c.Err())
			}
			return
		default:
		}
		var (
			err error
			r   any
		)
		// Mix: 60% moves, 10% nearby chat, 5% channel chat, 5% pick up,
		// 5% hunt, 10% use an item, 5% echo.
		switch k := rnd.IntN(20); {
		case cfg.EchoOnly || k == 0:
			_, err = do(echo)
		case k <= 12:
			nx := clamp(x+int32(rnd.IntN(2*services.MaxStep+1)-services.MaxStep), 0, services.MapSize-1)
			ny := clamp(y+int32(rnd.IntN(2*services.MaxStep+1)-services.MaxStep), 0, services.MapSize-1)
			if r, err = do(&services.Move{X: nx, Y: ny}); err == nil {
				m := r.(*services.Moved)
				x, y = m.X, m.Y
			}
		case k <= 14:
			_, err = do(&services.Say{Text: "hello from a bot"})
		case k == 15:
			_, err = do(&services.Say{Channel: channel, Text: "bots unite"})
		case k == 16:
			_, err = do(&services.PickUp{Item: "apple", Count: 1})
		case k == 17:
			_, err = do(&services.Hunt{Monster: 101 + rnd.Int32N(4)}, sample.CodeTooSoon)
		default:
			_, err = do(&services.UseItem{Item: "apple"}, sample.CodeNoItem)
		}
		if err != nil && c.Err() != nil {
			continue // the loop top reports why the connection ended
		}
		if cfg.Think > 0 {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(rnd.Int64N(int64(2 * cfg.Think)))):
			}
		}
	}
}

func clamp(v, lo, hi int32) int32 { return max(lo, min(hi, v)) }
