package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/citadel-go/citadel/mq"
)

// The cluster of one scenario: nsqlookupd and two nsqd (the real daemons,
// go.mod's tools), one login, two gates and three game nodes, each a
// citadel process of its own, all on one fresh PostgreSQL schema.
const (
	numNSQD  = 2
	numGates = 2
	numGames = 3
)

// bins are the programs the cluster runs.
type bins struct {
	citadel, nsqd, nsqlookupd string
	// leaseFlag: the citadel binary has -lease-ttl (ownership leases).
	leaseFlag bool
}

// findBins builds cmd/citadel unless a binary is given, and finds the NSQ
// daemons (go tool -n builds them into the build cache).
func findBins(citadel, dir string) (bins, error) {
	var b bins
	if citadel == "" {
		b.citadel = filepath.Join(dir, "citadel")
		out, err := exec.Command("go", "build", "-o", b.citadel, "github.com/citadel-go/citadel/cmd/citadel").CombinedOutput()
		if err != nil {
			return b, fmt.Errorf("build citadel: %v\n%s(run inside the Citadel module, or give a binary with -citadel)", err, out)
		}
	} else {
		b.citadel = citadel
	}
	for _, t := range []struct {
		name string
		path *string
	}{{"nsqd", &b.nsqd}, {"nsqlookupd", &b.nsqlookupd}} {
		out, err := exec.Command("go", "tool", "-n", t.name).Output()
		if err != nil {
			return b, fmt.Errorf("go tool -n %s: %v (run inside the Citadel module: go.mod lists the NSQ daemons as tools)", t.name, err)
		}
		*t.path = strings.TrimSpace(string(out))
	}
	help, _ := exec.Command(b.citadel, "-h").CombinedOutput()
	b.leaseFlag = strings.Contains(string(help), "-lease-ttl")
	return b, nil
}

// cluster is a running cluster and every process it ever started.
type cluster struct {
	cfg  *config
	bins bins
	dir  string
	dsn  string // the scenario's schema

	clusterKey, ticketKey string // files

	lookupd *proc
	nsqd    []*proc
	login   *proc
	gates   []*proc
	games   []*proc

	mu  sync.Mutex
	all []*proc // every incarnation, for cleanup and the report
}

// startCluster starts every process of the cluster and waits until login
// hands out gates and both gates see all three game nodes.
func startCluster(ctx context.Context, cfg *config, b bins, dir, dsn string) (c *cluster, err error) {
	c = &cluster{cfg: cfg, bins: b, dir: dir, dsn: dsn}
	defer func() {
		if err != nil {
			c.killAll()
		}
	}()
	// Secrets are files, never flags.
	c.clusterKey = filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(c.clusterKey, []byte(mq.GenerateKeyring()), 0o600); err != nil {
		return c, err
	}
	key := make([]byte, 32)
	rand.Read(key)
	c.ticketKey = filepath.Join(dir, "ticket.key")
	if err := os.WriteFile(c.ticketKey, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		return c, err
	}

	if c.lookupd, err = c.start(ctx, "nsqlookupd", b.nsqlookupd, []string{"--tcp-address=127.0.0.1:0",
		"--http-address=127.0.0.1:0", "--broadcast-address=127.0.0.1"}, true); err != nil {
		return c, err
	}
	c.nsqd = make([]*proc, numNSQD)
	if err := parallel(numNSQD, func(i int) error {
		data := filepath.Join(dir, fmt.Sprintf("nsqd-%d", i+1))
		if err := os.MkdirAll(data, 0o700); err != nil {
			return err
		}
		p, err := c.start(ctx, fmt.Sprintf("nsqd-%d", i+1), b.nsqd, nsqdArgs(data, "127.0.0.1:0", "127.0.0.1:0", c.lookupd.tcp), true)
		if err != nil {
			return err
		}
		// A restart reuses the ports: the citadel processes know them.
		p.args = nsqdArgs(data, p.tcp, p.http, c.lookupd.tcp)
		c.nsqd[i] = p
		return nil
	}); err != nil {
		return c, err
	}

	c.games = make([]*proc, numGames)
	c.gates = make([]*proc, numGates)
	type role struct {
		slot **proc
		args []string
	}
	var roles []role
	for i := range c.games {
		roles = append(roles, role{&c.games[i], c.citadelArgs("game", i+1)})
	}
	for i := range c.gates {
		roles = append(roles, role{&c.gates[i], c.citadelArgs("gate", i+1)})
	}
	roles = append(roles, role{&c.login, c.citadelArgs("login", 1)})
	if err := parallel(len(roles), func(i int) error {
		r := roles[i]
		p, err := c.startCitadel(ctx, r.args)
		*r.slot = p
		return err
	}); err != nil {
		return c, err
	}
	return c, c.waitSettled(ctx)
}

// waitSettled waits until every citadel process answers /readyz and both
// gates see every running game node (so every player hashes over the same
// ring from the first login).
func (c *cluster) waitSettled(ctx context.Context) error {
	procs := append(append([]*proc{c.login}, c.gates...), c.games...)
	for _, p := range procs {
		if err := p.waitReady(ctx); err != nil {
			return err
		}
	}
	var names []string
	for _, g := range c.games {
		if g.alive() {
			names = append(names, g.name)
		}
	}
	deadline := time.Now().Add(startTimeout)
	for _, g := range c.gates {
		for !g.sees(names) {
			if time.Now().After(deadline) {
				return fmt.Errorf("%s does not see every game node (%s) within %v", g.name, strings.Join(names, ", "), startTimeout)
			}
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

func nsqdArgs(data, tcp, httpAddr, lookupd string) []string {
	return []string{"--tcp-address=" + tcp, "--http-address=" + httpAddr, "--data-path=" + data,
		"--broadcast-address=127.0.0.1", "--lookupd-tcp-address=" + lookupd}
}

// citadelArgs are the flags of one citadel process with role, node ID id.
func (c *cluster) citadelArgs(role string, id int) []string {
	var tcp, httpAddr []string
	for _, n := range c.nsqd {
		tcp, httpAddr = append(tcp, n.tcp), append(httpAddr, n.http)
	}
	args := []string{"-role", role, "-id", fmt.Sprint(id), "-data", filepath.Join(c.dir, fmt.Sprintf("%s-%d", role, id)),
		"-nsqd", strings.Join(tcp, ","), "-nsqd-http", strings.Join(httpAddr, ","), "-lookupd", c.lookupd.http,
		"-cluster-key-file", c.clusterKey, "-admin", "127.0.0.1:0", "-plugins", "-",
		"-log-format", "json", "-log-level", "info"}
	switch role {
	case "login":
		args = append(args, "-store", "postgres", "-pg", c.dsn, "-login", "127.0.0.1:0", "-bcrypt-cost", "4",
			"-ticket-key-file", c.ticketKey)
	case "gate":
		args = append(args, "-gate-tcp", "127.0.0.1:0", "-gate-ws", "", "-ticket-key-file", c.ticketKey)
	case "game":
		args = append(args, "-store", "postgres", "-pg", c.dsn,
			"-save-interval", c.cfg.saveInterval.String(), "-grace", c.cfg.grace.String())
		if c.bins.leaseFlag {
			args = append(args, "-lease-ttl", c.cfg.leaseTTL.String())
		}
	}
	return args
}

// startCitadel starts a citadel process; its name is role-id.
func (c *cluster) startCitadel(ctx context.Context, args []string) (*proc, error) {
	name := args[1] + "-" + args[3]
	return c.start(ctx, name, c.bins.citadel, args, false)
}

func (c *cluster) start(ctx context.Context, name, bin string, args []string, daemon bool) (*proc, error) {
	p, err := startProc(ctx, name, bin, args, filepath.Join(c.dir, name+".log"), daemon)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.all = append(c.all, p)
	c.mu.Unlock()
	return p, nil
}

// restart starts a new incarnation of p with the same arguments (and so
// the same node ID, data directory and, for nsqd, ports) and waits until
// it is ready.
func (c *cluster) restart(ctx context.Context, p *proc) (*proc, error) {
	if p.alive() {
		return nil, fmt.Errorf("%s is still running", p.name)
	}
	daemon := p.bin != c.bins.citadel
	var np *proc
	var err error
	for attempt := 0; ; attempt++ {
		np, err = c.start(ctx, p.name, p.bin, p.args, daemon)
		// An nsqd's port may be held for a moment by the kernel or taken
		// by another process's outgoing connection: retry a few times.
		if err == nil || !daemon || attempt == 10 {
			break
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	if !daemon {
		if err := np.waitReady(ctx); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	for _, list := range [][]*proc{c.nsqd, c.games, c.gates} {
		for i, q := range list {
			if q == p {
				list[i] = np
			}
		}
	}
	c.mu.Unlock()
	return np, nil
}

// proc is the current incarnation of the i-th process of a kind: game,
// gate or nsqd (restarts replace them while other faults run).
func (c *cluster) proc(kind string, i int) *proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kind(kind)[i]
}

// list is the current incarnations of a kind's processes.
func (c *cluster) list(kind string) []*proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*proc(nil), c.kind(kind)...)
}

func (c *cluster) kind(kind string) []*proc {
	switch kind {
	case "game":
		return c.games
	case "gate":
		return c.gates
	case "nsqd":
		return c.nsqd
	}
	panic("citadel-chaos: no process kind " + kind)
}

// liveGames are the game processes running now.
func (c *cluster) liveGames() []*proc {
	var live []*proc
	for _, g := range c.list("game") {
		if g.alive() {
			live = append(live, g)
		}
	}
	return live
}

// scrapeGames reads the counters of every live game node.
func (c *cluster) scrapeGames(ctx context.Context) {
	for _, g := range c.liveGames() {
		g.scrape(ctx)
	}
	for _, g := range c.list("gate") {
		if g.alive() {
			g.scrape(ctx)
		}
	}
}

// stop ends the scenario's cluster as an operator would: SIGTERM to login
// and the gates, then to every game node (each saves its players), then
// to the NSQ daemons. It returns the processes that did not exit cleanly.
func (c *cluster) stop(timeout time.Duration) []string {
	var mu sync.Mutex
	var problems []string
	term := func(ps []*proc) {
		var wg sync.WaitGroup
		for _, p := range ps {
			if !p.alive() {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := p.term(timeout); err != nil {
					mu.Lock()
					problems = append(problems, err.Error())
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	term(append([]*proc{c.login}, c.list("gate")...))
	term(c.list("game"))
	term(append(c.list("nsqd"), c.lookupd))
	c.killAll()
	return problems
}

// killAll SIGKILLs every process the cluster started that is still
// running (a stopped one too) and waits until each is reaped.
func (c *cluster) killAll() {
	c.mu.Lock()
	all := append([]*proc(nil), c.all...)
	c.mu.Unlock()
	for _, p := range all {
		p.kill()
	}
}

// errorLogs are the ERROR lines the citadel processes logged, per process.
func (c *cluster) errorLogs() (total int, quotes []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.all {
		p.mu.Lock()
		total += p.nErrors
		for _, l := range p.errLogs {
			quotes = append(quotes, p.name+": "+l)
		}
		p.mu.Unlock()
	}
	return total, quotes
}

// counters sums the scraped counters over every game node incarnation.
func (c *cluster) counters() map[string]float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	sum := map[string]float64{}
	for _, p := range c.all {
		p.mu.Lock()
		for k, v := range p.metrics {
			sum[k] += v
		}
		p.mu.Unlock()
	}
	return sum
}

// parallel runs f(0..n-1) at once and returns the first error.
func parallel(n int, f func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = f(i) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// freeze pauses a process (a long GC pause, a partition); unfreeze
// resumes it.
func freeze(p *proc) error   { return p.signal(syscall.SIGSTOP) }
func unfreeze(p *proc) error { return p.signal(syscall.SIGCONT) }
