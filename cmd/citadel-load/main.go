// Command citadel-load opens many idle, authenticated client connections
// to Citadel gates and holds them, to measure what idle players cost the
// servers and to check that the cluster keeps them (no kicks, no lost
// connections) while bots (citadel-bot) play. Each connection pings at the
// heartbeat its gate announces and reads nothing else.
//
// Tickets come from the ticket signing key (CITADEL_TICKET_KEY, or
// -ticket-key-file; never a flag value), signed here for players
// -first-id, -first-id+1, ... at the gates given by -gate, in turn; or,
// with -login, from the login service for accounts <prefix>-<i> (password
// CITADEL_LOAD_PASSWORD, default "load-password").
//
// A process holds at most as many connections as its open-file limit
// allows, so for more citadel-load runs copies of itself (-procs; by
// default as many as the limit needs) and adds up their reports. It
// prints progress every -every and a summary at the end: connections up,
// connections that could not authenticate by cause, connections the gate
// closed with a Kicked frame by kick code, connections lost otherwise. It
// exits 1 if more connections than -max-dropped failed, were kicked or
// were lost.
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/citadel-go/citadel/framework/ticket"
)

const (
	envTicketKey = "CITADEL_TICKET_KEY"
	envPassword  = "CITADEL_LOAD_PASSWORD"
	// fdHeadroom is what a process keeps of its open-file limit for
	// anything but client connections.
	fdHeadroom = 500
)

type gateAddr struct{ node, addr string }

type config struct {
	N           int
	Procs       int
	Gates       []gateAddr
	LoginURL    string
	Password    string
	Prefix      string
	FirstID     uint64
	Concurrency int
	Duration    time.Duration
	Every       time.Duration
	MaxDropped  int
}

// gatesFlag collects -gate node=host:port values.
type gatesFlag []gateAddr

func (g *gatesFlag) String() string {
	var s []string
	for _, a := range *g {
		s = append(s, a.node+"="+a.addr)
	}
	return strings.Join(s, ",")
}

func (g *gatesFlag) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		node, addr, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || node == "" || addr == "" {
			return fmt.Errorf("%q: want node=host:port, such as gate-1=127.0.0.1:7000", p)
		}
		*g = append(*g, gateAddr{node, addr})
	}
	return nil
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	var cfg config
	var gates gatesFlag
	fs := flag.NewFlagSet("citadel-load", flag.ContinueOnError)
	fs.IntVar(&cfg.N, "n", 1000, "connections to open and hold")
	fs.Var(&gates, "gate", "gate node and its TCP address, node=host:port (repeat or comma list); connections go to them in turn with tickets signed here")
	keyFile := fs.String("ticket-key-file", "", "file with the hex ticket signing key the gates use ("+envTicketKey+" wins)")
	fs.StringVar(&cfg.LoginURL, "login", "", "login service URL: get tickets by registering (or logging in) accounts <prefix>-<i> instead of signing them")
	fs.StringVar(&cfg.Prefix, "prefix", "load", "account name prefix with -login")
	fs.Uint64Var(&cfg.FirstID, "first-id", 1_000_000_000, "player ID of the first connection with signed tickets (keep clear of the IDs real accounts have: a second login of a player kicks the first)")
	fs.IntVar(&cfg.Procs, "procs", 0, "processes to spread the connections over (0: as many as the open-file limit needs)")
	fs.IntVar(&cfg.Concurrency, "c", 100, "connections each process authenticates at the same time")
	fs.DurationVar(&cfg.Duration, "d", 0, "how long to hold the connections once all are open (0: until SIGINT or SIGTERM)")
	fs.DurationVar(&cfg.Every, "every", 5*time.Second, "how often to print progress")
	fs.IntVar(&cfg.MaxDropped, "max-dropped", 0, "connections that may fail, be kicked or be lost without failing the run")
	shard := fs.String("shard", "", "internal: set by citadel-load on the copies it runs (k/procs)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "citadel-load: unexpected argument %q: every setting is a flag (citadel-load -h lists them)\n", fs.Arg(0))
		return 2
	}
	cfg.Gates = gates
	cfg.Password = os.Getenv(envPassword)
	if cfg.Password == "" {
		cfg.Password = "load-password"
	}
	signer, err := cfg.check(*keyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "citadel-load:", strings.ReplaceAll(err.Error(), "\n", "\ncitadel-load: "))
		return 2
	}
	if *shard != "" {
		return child(cfg, *shard, signer)
	}
	return parent(cfg, signer, args, os.Stdout)
}

// check validates cfg and loads the signing key (ticket mode).
func (c *config) check(keyFile string) (*ticket.Signer, error) {
	var errs []error
	if c.N < 1 {
		errs = append(errs, fmt.Errorf("-n %d: want at least 1", c.N))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("-c %d: want at least 1", c.Concurrency))
	}
	if c.Procs < 0 || c.Procs > c.N {
		errs = append(errs, fmt.Errorf("-procs %d: want 0 (automatic) to -n (%d)", c.Procs, c.N))
	}
	if c.Duration < 0 || c.Every <= 0 {
		errs = append(errs, fmt.Errorf("-d %v, -every %v: want -d of 0 or more and -every above 0", c.Duration, c.Every))
	}
	if c.MaxDropped < 0 {
		errs = append(errs, fmt.Errorf("-max-dropped %d: want 0 or more", c.MaxDropped))
	}
	if (c.LoginURL == "") == (len(c.Gates) == 0) {
		errs = append(errs, errors.New("give either -gate (tickets signed with the ticket key) or -login (tickets from the login service)"))
	}
	if len(errs) > 0 || c.LoginURL != "" {
		return nil, errors.Join(errs...)
	}
	key := os.Getenv(envTicketKey)
	if key == "" {
		if keyFile == "" {
			return nil, fmt.Errorf("-gate needs the gates' ticket signing key: set %s or -ticket-key-file (the server's is <data>/ticket.key unless it was given one)", envTicketKey)
		}
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, fmt.Errorf("-ticket-key-file: %w", err)
		}
		key = string(b)
	}
	raw, err := hex.DecodeString(strings.TrimSpace(key))
	if err != nil {
		return nil, fmt.Errorf("the ticket key (%s or -ticket-key-file) is not hex: %v", envTicketKey, err)
	}
	return ticket.NewSigner(raw)
}

// raiseFileLimit lifts this process's open-file limit to its hard limit
// and returns it.
func raiseFileLimit() int {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return 1024
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	}
	return int(l.Cur)
}

// share is the range of connections process k of procs opens.
func share(n, k, procs int) (first, count int) {
	first = k * n / procs
	return first, (k+1)*n/procs - first
}

// child opens its share of the connections and writes its status as a
// JSON line every second until SIGTERM, SIGINT or the end of its stdin
// (the parent went away), then closes them and writes a final status.
func child(cfg config, shard string, signer *ticket.Signer) int {
	var k, procs int
	if _, err := fmt.Sscanf(shard, "%d/%d", &k, &procs); err != nil || procs < 1 || k < 0 || k >= procs {
		fmt.Fprintf(os.Stderr, "citadel-load: -shard %q: want k/procs\n", shard)
		return 2
	}
	first, n := share(cfg.N, k, procs)
	if limit := raiseFileLimit(); n+fdHeadroom > limit {
		fmt.Fprintf(os.Stderr, "citadel-load: a process would hold %d connections but may open %d files: use -procs %d or more\n",
			n, limit, (cfg.N+limit-fdHeadroom-1)/(limit-fdHeadroom))
		return 2
	}
	r, err := newRunner(cfg, first, signer)
	if err != nil {
		fmt.Fprintln(os.Stderr, "citadel-load:", err)
		return 2
	}
	stop := make(chan struct{})
	var once sync.Once
	end := func() { once.Do(func() { close(stop) }) }
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; end() }()
	go func() { io.Copy(io.Discard, os.Stdin); end() }()
	done := make(chan struct{})
	go func() {
		r.run(context.Background(), n, stop)
		close(done)
	}()
	enc := json.NewEncoder(os.Stdout)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			enc.Encode(r.status(n))
		case <-done:
			s := r.status(n)
			s.Final = true
			enc.Encode(s)
			return 0
		}
	}
}

// parent runs the copies, adds up their reports, ends the run after -d
// (or on a signal) and prints the summary. It returns the exit code.
func parent(cfg config, signer *ticket.Signer, args []string, out io.Writer) int {
	limit := raiseFileLimit()
	procs := cfg.Procs
	if procs == 0 {
		procs = (cfg.N + limit - fdHeadroom - 1) / (limit - fdHeadroom)
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "citadel-load: cannot find its own binary to run copies of:", err)
		return 2
	}
	var mu sync.Mutex
	latest := make([]status, procs)
	var children []*exec.Cmd
	var readers sync.WaitGroup
	for k := 0; k < procs; k++ {
		cmd := exec.Command(self, append(args, "-shard", fmt.Sprintf("%d/%d", k, procs))...)
		cmd.Stderr = os.Stderr
		// The pipe stays open until the child has exited: a child whose
		// stdin ends (this process died) closes its connections and exits.
		_, err := cmd.StdinPipe()
		stdout, err2 := cmd.StdoutPipe()
		if err = errors.Join(err, err2); err == nil {
			err = cmd.Start()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "citadel-load: start a copy:", err)
			for _, c := range children {
				c.Process.Kill()
			}
			return 2
		}
		children = append(children, cmd)
		readers.Add(1)
		go func() {
			defer readers.Done()
			sc := bufio.NewScanner(stdout)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				var s status
				if json.Unmarshal(sc.Bytes(), &s) == nil {
					mu.Lock()
					latest[k] = s
					mu.Unlock()
				}
			}
		}()
	}
	childrenDone := make(chan struct{})
	go func() { readers.Wait(); close(childrenDone) }()
	sum := func() status {
		mu.Lock()
		defer mu.Unlock()
		var s status
		for _, c := range latest {
			s.add(c)
		}
		return s
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	start := time.Now()
	printf(out, "citadel-load: %d connections over %d processes", cfg.N, procs)
	var opened time.Time // when every connection had been attempted
	var deadline <-chan time.Time
	tick := time.NewTicker(cfg.Every)
	poll := time.NewTicker(100 * time.Millisecond)
wait:
	for {
		select {
		case <-sig:
			break wait
		case <-deadline:
			break wait
		case <-childrenDone: // every connection failed or ended
			break wait
		case <-poll.C:
			if s := sum(); opened.IsZero() && s.Attempted == int64(cfg.N) {
				opened = time.Now()
				printf(out, "%d of %d connections up after %v", s.Up, cfg.N, time.Since(start).Round(time.Millisecond))
				if cfg.Duration > 0 {
					deadline = time.After(cfg.Duration)
				}
			}
		case <-tick.C:
			printf(out, "t=%-5s %s", time.Since(start).Round(time.Second), progress(sum(), cfg.N))
		}
	}
	tick.Stop()
	poll.Stop()
	held := time.Duration(0)
	if !opened.IsZero() {
		held = time.Since(opened)
	}
	before := sum() // what held until the end, before closing
	for _, c := range children {
		c.Process.Signal(syscall.SIGTERM)
	}
	readers.Wait()
	failed := false
	for _, c := range children {
		if err := c.Wait(); err != nil {
			fmt.Fprintln(os.Stderr, "citadel-load: a copy failed:", err)
			failed = true
		}
	}
	s := sum()
	printf(out, "summary: connections=%d up_at_end=%d auth_failed=%d kicked=%d lost=%d pushes=%d held=%v",
		cfg.N, before.Up, total(s.AuthFailed), total(s.Kicked), total(s.Lost), s.Pushes, held.Round(time.Second))
	printCounts(out, "could not authenticate", kindFailed, s.AuthFailed, s.Examples)
	printCounts(out, "kicked by the gate, by kick code", kindKicked, s.Kicked, s.Examples)
	printCounts(out, "lost otherwise", kindLost, s.Lost, s.Examples)
	switch {
	case failed || before.Attempted < int64(cfg.N):
		printf(out, "result: FAIL: not every connection was attempted")
	case s.dropped() > cfg.MaxDropped:
		printf(out, "result: FAIL: %d connections dropped out (-max-dropped %d)", s.dropped(), cfg.MaxDropped)
	default:
		printf(out, "result: ok")
		return 0
	}
	return 1
}

func progress(s status, n int) string {
	return fmt.Sprintf("up=%d/%d attempted=%d auth_failed=%d kicked=%d lost=%d pushes=%d max_rtt=%.1fms",
		s.Up, n, s.Attempted, total(s.AuthFailed), total(s.Kicked), total(s.Lost), s.Pushes, s.MaxRTTMs)
}

// printCounts writes one line per key, most frequent first, with the
// first error seen for it.
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
		printf(out, "  %6d  %s  (first: %s)", m[k], k, examples[kind+k])
	}
}

func printf(w io.Writer, format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
