// Command citadel-chaos is a Jepsen-style chaos suite for a Citadel
// cluster. For each scenario it starts a real multi-process cluster (the
// NSQ daemons nsqlookupd and two nsqd, one login, two gates and three game
// nodes as separate citadel processes, all on one fresh PostgreSQL schema),
// lets simulated players play the sample game through the Go SDK while it
// injects faults (SIGKILL, SIGSTOP, restarts, a foreign NSQ consumer), then
// stops the cluster with SIGTERM and compares what the players were
// acknowledged with what the store holds. It prints a table per run and
// exits 1 on any violation (2 when it could not run).
//
//	. .ci/postgres   # or CITADEL_PG_DSN=... / -pg DSN
//	go run ./cmd/citadel-chaos -short
//	go run ./cmd/citadel-chaos -scenario stop-game -players 32 -duration 1m
//
// docs/reliability.md says what each scenario does and each check means.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// config is what the flags set.
type config struct {
	scenarios    []string
	short        bool
	players      int
	duration     time.Duration // play after a scenario's last fault action
	warmup       time.Duration // play before the first fault
	keep         bool
	citadel      string
	pgDSN        string
	saveInterval time.Duration
	grace        time.Duration
	leaseTTL     time.Duration
	churn        time.Duration
	seed         uint64
	mixedFaults  int
	dir          string // where the run's data goes (-keep leaves it)
}

// lossSlack is how much older than the save interval a change lost in a
// crash may be: the commit's own time on a loaded machine.
const lossSlack = 500 * time.Millisecond

func main() {
	code, err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		code = exitOK // -h: the usage went to stderr
	case err != nil:
		fmt.Fprintln(os.Stderr, "citadel-chaos:", strings.ReplaceAll(err.Error(), "\n", "\ncitadel-chaos: "))
	}
	os.Exit(code)
}

// Exit codes.
const (
	exitOK        = 0
	exitViolation = 1 // a scenario broke a rule
	exitCannotRun = 2 // bad flags, no PostgreSQL, a cluster that would not start
)

// run parses args, runs the scenarios and prints the table to out and the
// progress to progress. It returns the exit code.
func run(ctx context.Context, args []string, out, progress io.Writer) (int, error) {
	cfg, err := parseFlags(args, progress)
	if err != nil {
		return exitCannotRun, err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf := func(format string, a ...any) {
		fmt.Fprintf(progress, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, a...)...)
	}
	if cfg.dir == "" {
		if cfg.dir, err = os.MkdirTemp("", "citadel-chaos-"); err != nil {
			return exitCannotRun, err
		}
	} else if err := os.MkdirAll(cfg.dir, 0o700); err != nil {
		return exitCannotRun, err
	}
	if !cfg.keep {
		defer os.RemoveAll(cfg.dir)
	}
	b, err := findBins(cfg.citadel, cfg.dir)
	if err != nil {
		return exitCannotRun, err
	}
	if !b.leaseFlag {
		logf("note: %s has no -lease-ttl flag (no ownership leases yet); the stuck check still uses -lease-ttl %v", b.citadel, cfg.leaseTTL)
	}
	logf("citadel-chaos: %s, %d players, seed %d, data in %s", strings.Join(cfg.scenarios, ", "), cfg.players, cfg.seed, cfg.dir)
	var results []*result
	code := exitOK
	for _, name := range cfg.scenarios {
		sc, _ := findScenario(name)
		r := runScenario(ctx, cfg, b, sc, logf)
		results = append(results, r)
		switch {
		case r.setupErr != nil:
			code = exitCannotRun
		case len(r.violations()) > 0 && code == exitOK:
			code = exitViolation
		}
		if ctx.Err() != nil {
			break
		}
	}
	printTable(out, results, cfg)
	for _, r := range results {
		if len(r.violations()) > 0 {
			printDetails(out, r)
		}
	}
	if cfg.keep {
		fmt.Fprintf(out, "\ndata, logs and PostgreSQL schemas kept: %s\n", cfg.dir)
	}
	if ctx.Err() != nil {
		return exitCannotRun, errors.New("interrupted")
	}
	if code != exitOK {
		return code, fmt.Errorf("%d of %d scenarios failed", failed(results), len(results))
	}
	return exitOK, nil
}

func failed(results []*result) int {
	n := 0
	for _, r := range results {
		if len(r.violations()) > 0 {
			n++
		}
	}
	return n
}

func parseFlags(args []string, usage io.Writer) (*config, error) {
	fs := flag.NewFlagSet("citadel-chaos", flag.ContinueOnError)
	fs.SetOutput(usage)
	cfg := &config{}
	scen := fs.String("scenario", "", "scenarios to run, comma-separated: "+scenarioNames()+", or all (default: all; with -short: "+strings.Join(shortScenarios, ",")+")")
	fs.BoolVar(&cfg.short, "short", false, "short mode: fewer players and scenarios, shorter runs (the test and CI run this)")
	fs.IntVar(&cfg.players, "players", 0, "players (default 12, or 32 without -short); in pairs that trade")
	fs.DurationVar(&cfg.duration, "duration", 0, "play after a scenario's last fault (default 12s, or 30s without -short)")
	fs.BoolVar(&cfg.keep, "keep", false, "keep the data directories, process logs and PostgreSQL schemas")
	fs.StringVar(&cfg.dir, "dir", "", "directory for the run's data and logs (default: a new temporary one)")
	fs.StringVar(&cfg.citadel, "citadel", "", "citadel binary to test (default: build ./cmd/citadel)")
	fs.StringVar(&cfg.pgDSN, "pg", os.Getenv("CITADEL_PG_DSN"), "PostgreSQL DSN (default $CITADEL_PG_DSN); each scenario gets a fresh schema in it. Put a password in PGPASSWORD, not here")
	fs.DurationVar(&cfg.saveInterval, "save-interval", time.Second, "the game nodes' -save-interval: what a crash may lose")
	fs.DurationVar(&cfg.grace, "grace", 2*time.Second, "the game nodes' -grace: how long a logged-out player's actor lingers")
	fs.DurationVar(&cfg.leaseTTL, "lease-ttl", 5*time.Second, "the ownership lease TTL (passed as -lease-ttl to game nodes that have it); players may be stuck at most this + 2s")
	fs.DurationVar(&cfg.churn, "churn", 6*time.Second, "mean time between a player's voluntary log-out-and-in")
	fs.Uint64Var(&cfg.seed, "seed", uint64(time.Now().UnixNano()), "seed of the mixed scenario's fault order")
	fs.IntVar(&cfg.mixedFaults, "mixed-faults", 6, "faults in the mixed scenario")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (citadel-chaos -h lists the flags)", fs.Arg(0))
	}
	if cfg.players == 0 {
		cfg.players = 32
		if cfg.short {
			cfg.players = 12
		}
	}
	if cfg.duration == 0 {
		cfg.duration = 30 * time.Second
		if cfg.short {
			cfg.duration = 12 * time.Second
		}
	}
	cfg.warmup = 10 * time.Second
	if cfg.short {
		cfg.warmup = 4 * time.Second
	}
	var problems []string
	switch {
	case *scen == "" && cfg.short:
		cfg.scenarios = shortScenarios
	case *scen == "" || *scen == "all":
		for _, s := range scenarios {
			cfg.scenarios = append(cfg.scenarios, s.name)
		}
	default:
		for _, n := range strings.Split(*scen, ",") {
			n = strings.TrimSpace(n)
			if _, ok := findScenario(n); !ok {
				problems = append(problems, fmt.Sprintf("-scenario %s: no such scenario (want %s, or all)", n, scenarioNames()))
			}
			cfg.scenarios = append(cfg.scenarios, n)
		}
	}
	if cfg.players < 2 || cfg.players > 1000 {
		problems = append(problems, fmt.Sprintf("-players %d: want 2 to 1000", cfg.players))
	}
	if cfg.duration < 5*time.Second {
		problems = append(problems, fmt.Sprintf("-duration %v: want at least 5s, for players to fail over", cfg.duration))
	}
	if cfg.saveInterval < 100*time.Millisecond {
		problems = append(problems, fmt.Sprintf("-save-interval %v: want at least 100ms (citadel's minimum)", cfg.saveInterval))
	}
	if cfg.grace < time.Second {
		problems = append(problems, fmt.Sprintf("-grace %v: want at least 1s (citadel's minimum)", cfg.grace))
	}
	if cfg.leaseTTL <= 0 || cfg.churn < time.Second {
		problems = append(problems, "-lease-ttl must be positive and -churn at least 1s")
	}
	if cfg.mixedFaults < 1 {
		problems = append(problems, fmt.Sprintf("-mixed-faults %d: want at least 1", cfg.mixedFaults))
	}
	if cfg.pgDSN == "" {
		problems = append(problems, "no PostgreSQL: set CITADEL_PG_DSN (`. .ci/postgres` starts a throwaway one) or give -pg DSN")
	}
	if cfg.dir != "" {
		cfg.dir, _ = filepath.Abs(cfg.dir)
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	return cfg, nil
}
