package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// result is what one scenario showed.
type result struct {
	name   string
	acked  int // acknowledged operations: moves, trade offers and accepts
	trades int // acknowledged trades

	lostAllowed int // acknowledged moves lost within a save interval before a game node died or paused
	lostBad     int // acknowledged moves lost otherwise (seen by a new session)
	lostAtTerm  int // acknowledged moves missing from the store after the cluster stopped with SIGTERM
	olderCopy   int // sessions that were shown a state lost earlier (an older copy served it)
	disorder    int // acknowledgements that broke the move counter's order

	itemsDelta   int32 // items created plus destroyed, in the store after the stop
	itemsUnequal int   // store reads during the run whose item totals were off
	staleCommits int   // records that went back between two reads: an older copy's (fenced epoch's) save won
	epochs       bool  // the records carry an epoch (the check covered it)

	// live: the scenario moves players with their connections open, so
	// no player may lose a call or its session.
	live     bool
	lostCall int             // calls or sessions players lost (live scenarios)
	pauses   []time.Duration // per player: the longest acknowledged move during the scenario
	calm     []time.Duration // per player: the longest before the first fault (the baseline)
	// holds: sessions the gates held (a handoff, a suspect node), and the
	// bucket bounds of the 50th and 99th percentile of how long.
	holds            int
	holdP50, holdP99 time.Duration
	stuck            int // players who could not play longer than the lease TTL + 2s
	maxGap           time.Duration
	failover         []time.Duration

	counters string   // the game nodes' save conflict counters (and fenced saves, once counted)
	unclean  []string // processes that did not stop cleanly on SIGTERM
	errLogs  int
	errQuote []string
	failures map[string]int // why players lost calls or sessions
	details  []string       // what each violation was, for the reader

	setupErr error // the scenario could not run
}

// violations lists what broke the suite's rules.
func (r *result) violations() []string {
	var v []string
	add := func(n int, what string) {
		if n > 0 {
			v = append(v, fmt.Sprintf("%d %s", n, what))
		}
	}
	if r.setupErr != nil {
		v = append(v, "could not run: "+r.setupErr.Error())
	}
	add(r.lostBad, "acknowledged moves lost that were older than the save interval at a game node fault, or with no such fault")
	add(r.lostAtTerm, "acknowledged moves missing from the store after SIGTERM")
	add(r.olderCopy, "sessions served by an older copy of their player")
	add(r.disorder, "acknowledgements out of the move counter's order")
	add(int(r.itemsDelta), "items created or destroyed (store after the stop)")
	add(r.itemsUnequal, "store reads whose item totals were off")
	add(r.staleCommits, "stale commits (a stored record went back: an older copy's save, or an epoch after it was fenced)")
	add(r.stuck, "players unable to play for longer than the lease TTL + 2s")
	if r.live {
		add(r.lostCall, "calls or sessions players lost (a live move, drain or pause must not cost any)")
	}
	add(len(r.unclean), "processes that did not stop cleanly on SIGTERM")
	return v
}

// quantile of d (nearest rank); 0 for none.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(len(s)-1, i))]
}

func fmtDur(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// printTable writes one line per scenario and a legend.
func printTable(w io.Writer, results []*result, cfg *config) {
	fmt.Fprintf(w, "\n%-17s %7s %6s %7s %5s %5s %5s %5s %7s %5s %5s %7s %-16s %s\n",
		"scenario", "acked", "trades", "lost≤SI", "LOST", "@TERM", "older", "order", "items", "stale", "stuck", "max-gap", "failover p50/max", "result")
	for _, r := range results {
		verdict := "ok"
		if len(r.violations()) > 0 {
			verdict = "FAIL"
		}
		if r.setupErr != nil {
			fmt.Fprintf(w, "%-17s %s: %v\n", r.name, verdict, r.setupErr)
			continue
		}
		fmt.Fprintf(w, "%-17s %7d %6d %7d %5d %5d %5d %5d %7s %5d %5d %7s %-16s %s\n",
			r.name, r.acked, r.trades, r.lostAllowed, r.lostBad, r.lostAtTerm, r.olderCopy, r.disorder,
			fmt.Sprintf("%d/%d", r.itemsDelta, r.itemsUnequal), r.staleCommits, r.stuck, fmtDur(r.maxGap),
			fmtDur(quantile(r.failover, 0.5))+" / "+fmtDur(quantile(r.failover, 1)), verdict)
	}
	for _, r := range results {
		if r.live && r.setupErr == nil {
			fmt.Fprintf(w, "%-17s %s\n", r.name, r.pauseLine())
		}
	}
	epochs := false
	for _, r := range results {
		epochs = epochs || r.epochs
	}
	if epochs {
		fmt.Fprintf(w, "\nstale commits checked by the records' %s column and their move counters\n", epochColumn)
	} else {
		fmt.Fprintf(w, "\nstale commits checked by the move counters only: citadel_players has no %s column yet\n", epochColumn)
	}
	fmt.Fprintf(w, `
  acked     acknowledged operations (moves, trade offers, trades); trades: acknowledged trades
  lost≤SI   acknowledged moves lost that were made within -save-interval (%v) + %v before a game node
            was killed or stopped: what a crash may lose (allowed)
  LOST      acknowledged moves lost otherwise, as a new session showed them (must be 0)
  @TERM     acknowledged moves missing from the store after every process stopped on SIGTERM (must be 0)
  older     sessions that were shown a state lost earlier: an older copy of the player served them (must be 0)
  order     Move acknowledgements whose counter was not the previous one + 1 (must be 0)
  items     items created or destroyed by trades: |stored totals - starting totals| after the stop, and
            the number of store reads during the run whose totals were off (must be 0/0)
  stale     stored records that went back between two reads: an older copy's save won, or an epoch
            committed after it was fenced (must be 0)
  stuck     players who could not play for longer than the lease TTL + 2s (%v) (must be 0); max-gap: the longest
  failover  from a fault to the first acknowledged operation of each player it cut off
`, cfg.saveInterval, lossSlack, cfg.leaseTTL+2*time.Second)
}

// pauseLine reports a live scenario's per-player pauses.
func (r *result) pauseLine() string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }
	return fmt.Sprintf("per-player pause (longest acknowledged move of each of %d players, from the first fault on): p50 %s, p99 %s, max %s "+
		"(before the first fault: p50 %s, p99 %s, max %s); gates held %d sessions, hold p50 ≤ %s, p99 ≤ %s; lost calls or sessions: %d",
		len(r.pauses), ms(quantile(r.pauses, 0.5)), ms(quantile(r.pauses, 0.99)), ms(quantile(r.pauses, 1)),
		ms(quantile(r.calm, 0.5)), ms(quantile(r.calm, 0.99)), ms(quantile(r.calm, 1)), r.holds, ms(r.holdP50), ms(r.holdP99), r.lostCall)
}

// printDetails writes what each failed scenario's violations were.
func printDetails(w io.Writer, r *result) {
	fmt.Fprintf(w, "\n%s:\n", r.name)
	if r.live {
		fmt.Fprintf(w, "  %s\n", r.pauseLine())
	}
	for _, v := range r.violations() {
		fmt.Fprintf(w, "  VIOLATION %s\n", v)
	}
	for _, d := range r.details {
		fmt.Fprintf(w, "    %s\n", d)
	}
	if r.counters != "" {
		fmt.Fprintf(w, "  game node counters: %s\n", r.counters)
	}
	if len(r.failures) > 0 {
		var causes []string
		for c, n := range r.failures {
			causes = append(causes, fmt.Sprintf("%s ×%d", c, n))
		}
		sort.Strings(causes)
		fmt.Fprintf(w, "  players' failed calls and sessions: %s\n", strings.Join(causes, ", "))
	}
	for _, u := range r.unclean {
		fmt.Fprintf(w, "  %s\n", u)
	}
	if r.errLogs > 0 {
		fmt.Fprintf(w, "  %d ERROR log lines, the first:\n", r.errLogs)
		for i, q := range r.errQuote {
			if i == 8 {
				break
			}
			fmt.Fprintf(w, "    %s\n", q)
		}
	}
}
