package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
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
	// MaxDropped is how many bots may drop out (fail to connect, be
	// kicked, lose their connection) before the run counts as failed.
	MaxDropped int
}

// validate refuses settings that cannot make a run, naming the flag.
func (c botConfig) validate() error {
	var errs []error
	if u, err := url.Parse(c.LoginURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("-login %s: want the login service's URL, such as http://127.0.0.1:8000", c.LoginURL))
	}
	if c.N <= 0 {
		errs = append(errs, fmt.Errorf("-n %d: want at least 1 bot", c.N))
	}
	if c.Duration <= 0 {
		errs = append(errs, fmt.Errorf("-d %v: want a duration above 0", c.Duration))
	}
	if c.Think < 0 {
		errs = append(errs, fmt.Errorf("-think %v: want 0 or more", c.Think))
	}
	if c.LoginConcurrency <= 0 {
		errs = append(errs, fmt.Errorf("-login-concurrency %d: want at least 1", c.LoginConcurrency))
	}
	if c.MaxDropped < 0 || c.N > 0 && c.MaxDropped > c.N {
		errs = append(errs, fmt.Errorf("-max-dropped %d: want 0 to -n (%d)", c.MaxDropped, c.N))
	}
	if c.Transport != client.TCP && c.Transport != client.WebSocket {
		errs = append(errs, fmt.Errorf("transport %q: want %s or %s", c.Transport, client.TCP, client.WebSocket))
	}
	return errors.Join(errs...)
}

// stats are shared by all bots.
type stats struct {
	connected           atomic.Int64
	dropped             atomic.Int64 // failed + kicked + lost, for progress lines
	calls, errs, pushes atomic.Int64

	mu        sync.Mutex
	window    []time.Duration // latencies since the last progress line
	all       []time.Duration
	errKinds  map[string]int // failed calls by cause
	failed    map[string]int // bots that never played, by stage and cause
	kicked    map[string]int // bots the gate closed while playing, by kick code
	lost      map[string]int // bots whose connection ended otherwise, by cause
	examples  map[string]string
	lastError string
}

func newStats() *stats {
	return &stats{errKinds: map[string]int{}, failed: map[string]int{}, kicked: map[string]int{}, lost: map[string]int{},
		examples: map[string]string{}}
}

func (s *stats) observe(d time.Duration, err error) {
	if err != nil {
		s.errs.Add(1)
		s.mu.Lock()
		s.errKinds[cause(err)]++
		s.lastError = err.Error()
		s.mu.Unlock()
		return
	}
	s.calls.Add(1)
	s.mu.Lock()
	s.window = append(s.window, d)
	s.mu.Unlock()
}

// drop counts a bot that dropped out, under key in one of the maps, and
// keeps the first error of each kind as an example for the summary.
func (s *stats) drop(m map[string]int, kind, key string, err error) {
	s.dropped.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	m[key]++
	if _, ok := s.examples[kind+key]; !ok {
		s.examples[kind+key] = err.Error()
	}
}

// errNoPlayerInfo: the server did not send the push every attached player
// gets first.
var errNoPlayerInfo = errors.New("no PlayerInfo within 5s of connecting")

// cause names why err happened, in few enough words to count by.
func cause(err error) string {
	if errors.Is(err, errNoPlayerInfo) {
		return "no PlayerInfo"
	}
	return client.Cause(err)
}

// summary is the final result.
type summary struct {
	Connected, Calls, Errors, Pushes int64
	// Failed bots never played, Kicked ones were closed by the gate while
	// playing, Lost ones lost their connection otherwise; the maps count
	// them by cause ("login: refused", "gate: kicked bad_ticket"), kick
	// code ("rate_limited") and cause.
	Failed, Kicked, Lost       int64
	FailedBy, KickedBy, LostBy map[string]int
	P50, P99, Max              time.Duration
	Elapsed                    time.Duration
	ErrKinds                   map[string]int
}

// Dropped counts bots that did not play to the end.
func (s summary) Dropped() int64 { return s.Failed + s.Kicked + s.Lost }

// verdict is why the run failed, or "" if it passed: more bots dropped out
// than maxDropped allows, or more than 1% of calls failed.
func (s summary) verdict(maxDropped int) string {
	var why []string
	if d := s.Dropped(); d > int64(maxDropped) {
		why = append(why, fmt.Sprintf("%d bots dropped out (-max-dropped %d)", d, maxDropped))
	}
	if s.Errors*100 > s.Calls {
		why = append(why, fmt.Sprintf("%d of %d calls failed (more than 1%%)", s.Errors, s.Calls+s.Errors))
	}
	return strings.Join(why, "; ")
}

func total(m map[string]int) int64 {
	var n int64
	for _, v := range m {
		n += int64(v)
	}
	return n
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

// runBots runs cfg.N bots and returns the summary.
func runBots(ctx context.Context, cfg botConfig, out io.Writer) (summary, error) {
	if cfg.LoginConcurrency == 0 {
		cfg.LoginConcurrency = 32
	}
	if cfg.Transport == "" {
		cfg.Transport = client.TCP
	}
	if err := cfg.validate(); err != nil {
		return summary{}, err
	}
	reg := framework.NewRegistry()
	if err := sample.Register(reg); err != nil {
		return summary{}, err
	}
	st := newStats()
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
			if n := st.dropped.Load(); n > 0 {
				line += fmt.Sprintf(" dropped=%d", n)
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
			name := fmt.Sprintf("%s-%d", cfg.Prefix, i)
			conn, stage, err := connect(ctx, cfg, reg, name)
			<-sem
			if err != nil {
				st.drop(st.failed, "failed", stage+": "+cause(err), fmt.Errorf("%s: %w", name, err))
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
	st.mu.Lock()
	defer st.mu.Unlock()
	res := summary{Connected: st.connected.Load(), Calls: st.calls.Load(), Errors: st.errs.Load(), Pushes: st.pushes.Load(),
		FailedBy: st.failed, KickedBy: st.kicked, LostBy: st.lost, Failed: total(st.failed), Kicked: total(st.kicked), Lost: total(st.lost),
		P50: percentile(all, 0.5), P99: percentile(all, 0.99), Elapsed: time.Since(start), ErrKinds: st.errKinds}
	if len(all) > 0 {
		res.Max = all[len(all)-1]
	}
	printf(out, "summary: bots=%d connected=%d failed=%d kicked=%d lost=%d calls=%d errors=%d pushes=%d p50=%v p99=%v max=%v elapsed=%v",
		cfg.N, res.Connected, res.Failed, res.Kicked, res.Lost, res.Calls, res.Errors, res.Pushes,
		res.P50.Round(time.Microsecond), res.P99.Round(time.Microsecond), res.Max.Round(time.Microsecond), res.Elapsed.Round(time.Millisecond))
	printCounts(out, "could not connect", "failed", res.FailedBy, st.examples)
	printCounts(out, "kicked while playing, by kick code", "kicked", res.KickedBy, st.examples)
	printCounts(out, "lost their connection while playing", "lost", res.LostBy, st.examples)
	printCounts(out, "failed calls", "", res.ErrKinds, nil)
	if why := res.verdict(cfg.MaxDropped); why != "" {
		printf(out, "result: FAIL: %s", why)
	} else {
		printf(out, "result: ok")
	}
	return res, nil
}

// printCounts writes one line per cause, most frequent first, with the
// first error seen for it when there is one.
func printCounts(out io.Writer, title, kind string, m map[string]int, examples map[string]string) {
	if len(m) == 0 {
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || m[keys[i]] == m[keys[j]] && keys[i] < keys[j] })
	printf(out, "%s: %d", title, total(m))
	for _, k := range keys {
		if ex, ok := examples[kind+k]; ok {
			printf(out, "  %6d  %s  (first: %s)", m[k], k, ex)
		} else {
			printf(out, "  %6d  %s", m[k], k)
		}
	}
}

// connect registers the bot's account, or logs in if it exists, and
// connects to the gate login chose. On error it says at which stage:
// "login" (the HTTP API) or "gate" (connecting and authenticating).
func connect(ctx context.Context, cfg botConfig, reg *framework.Registry, name string) (*client.Conn, string, error) {
	lr, err := client.Register(ctx, cfg.LoginURL, name, cfg.Password)
	var le *client.LoginError
	if errors.As(err, &le) && le.Code == services.LoginCodeNameTaken {
		lr, err = client.Login(ctx, cfg.LoginURL, name, cfg.Password)
	}
	if err != nil {
		return nil, "login", err
	}
	c, err := client.Connect(ctx, lr, client.Options{Registry: reg, Transport: cfg.Transport})
	if err != nil {
		return nil, "gate", err
	}
	return c, "", nil
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
			st.observe(0, errNoPlayerInfo)
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
	// game, like an empty bag) count as answered calls, not failures. A
	// call cut short by the end of the connection is not counted: the bot
	// is, as kicked or lost.
	do := func(msg any, expected ...string) (any, error) {
		cctx, cancel := callCtx()
		defer cancel()
		t0 := time.Now()
		r, err := c.Call(cctx, msg)
		var se *client.ServerError
		switch {
		case errors.As(err, &se) && slices.Contains(expected, se.Code):
			st.observe(time.Since(t0), nil)
		case err != nil && c.Err() != nil:
		default:
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
			// We close the connection only after returning: whatever
			// ended it came from the other side.
			var ke *client.KickedError
			if err := c.Err(); errors.As(err, &ke) {
				st.drop(st.kicked, "kicked", ke.Code, err)
			} else {
				st.drop(st.lost, "lost", cause(err), err)
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
