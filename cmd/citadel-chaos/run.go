package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Scenario timing.
const (
	sampleEvery = 250 * time.Millisecond // store reads while the scenario runs
	scrapeEvery = time.Second            // game node metrics
	stopTimeout = 60 * time.Second       // a process's SIGTERM to its exit
	// affectWindow: a player's failure up to this long after a fault ended
	// is that fault's doing (for the failover times).
	affectWindow = 15 * time.Second
	// cutOff: a player whose first acknowledgement after a fault comes
	// later than this was cut off by it (players act every movePace).
	cutOff = time.Second
)

// runScenario runs one scenario on a fresh cluster and schema and checks
// the outcome. Whatever happens, every process it started is gone when it
// returns.
func runScenario(ctx context.Context, cfg *config, b bins, sc scenario, logf func(string, ...any)) *result {
	r := &result{name: sc.name, failures: map[string]int{}, live: sc.live}
	logf("scenario %s: %s", sc.name, sc.desc)
	dir := filepath.Join(cfg.dir, sc.name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		r.setupErr = err
		return r
	}
	dsn, drop, err := newSchema(ctx, cfg.pgDSN)
	if err != nil {
		r.setupErr = err
		return r
	}
	if cfg.keep {
		logf("  PostgreSQL: %s", maskDSN(dsn))
	} else {
		defer drop()
	}
	started := time.Now()
	c, err := startCluster(ctx, cfg, b, dir, dsn)
	if err != nil {
		r.setupErr = fmt.Errorf("start the cluster: %w", err)
		return r
	}
	defer c.killAll()
	logf("  cluster up in %v", time.Since(started).Round(100*time.Millisecond))

	l, err := newLedger(c.login.loginURL, cfg.players, cfg.churn)
	if err == nil {
		err = l.register(ctx)
	}
	if err != nil {
		r.setupErr = err
		c.stop(stopTimeout)
		return r
	}
	playCtx, stopPlay := context.WithCancel(ctx)
	defer stopPlay()
	players := l.run(playCtx)
	if err := waitPlaying(ctx, l); err != nil {
		r.setupErr = err
		stopPlay()
		players.Wait()
		c.stop(stopTimeout)
		return r
	}
	first := map[uint64]map[string]int32{}
	baseline := map[string]int32{}
	for _, p := range l.players {
		p.mu.Lock()
		first[p.id] = p.first
		for k, n := range p.first {
			baseline[k] += n
		}
		p.mu.Unlock()
	}
	playStart := time.Now()

	bg, stopBG := context.WithCancel(ctx)
	smp := newSampler(baseline, first)
	bgDone := make(chan struct{}, 2)
	go func() { smp.run(bg, dsn, sampleEvery); bgDone <- struct{}{} }()
	go func() {
		defer func() { bgDone <- struct{}{} }()
		t := time.NewTicker(scrapeEvery)
		defer t.Stop()
		for {
			c.scrapeGames(bg)
			select {
			case <-t.C:
			case <-bg.Done():
				return
			}
		}
	}()

	sleep(ctx, cfg.warmup)
	e := &env{c: c, cfg: cfg, logf: logf}
	if err := sc.run(ctx, e); err != nil {
		r.details = append(r.details, "a fault could not be applied: "+err.Error())
		r.setupErr = err
	}
	sleep(ctx, cfg.duration)
	playEnd := time.Now()
	stopPlay()
	players.Wait()
	c.scrapeGames(ctx)
	stopBG()
	<-bgDone
	<-bgDone

	logf("  stopping the cluster (SIGTERM)")
	r.unclean = c.stop(stopTimeout)
	if ctx.Err() != nil {
		r.setupErr = errors.New("interrupted")
		return r
	}
	recs, epochs, err := finalRecords(ctx, dsn)
	if err != nil {
		r.setupErr = fmt.Errorf("read the store after the stop: %w", err)
		return r
	}
	r.epochs = epochs
	check(r, cfg, l, e.faultsByTime(), smp, recs, playStart, playEnd)
	r.errLogs, r.errQuote = c.errorLogs()
	var counters []string
	all := c.counters()
	r.holdP50, r.holdP99, r.holds = holdQuantiles(all)
	for k, v := range all {
		if strings.HasPrefix(k, holdBuckets) {
			continue
		}
		counters = append(counters, fmt.Sprintf("%s %g", k, v))
	}
	sort.Strings(counters)
	r.counters = strings.Join(counters, ", ")
	verdict := "ok"
	if len(r.violations()) > 0 {
		verdict = fmt.Sprintf("FAIL (%d violations)", len(r.violations()))
	}
	logf("  %s in %v", verdict, time.Since(started).Round(time.Second))
	return r
}

// holdQuantiles reads the gates' hold histogram (summed over processes):
// the upper bound of the bucket holding the 50th and 99th percentile.
func holdQuantiles(m map[string]float64) (p50, p99 time.Duration, n int) {
	type bucket struct{ le, count float64 }
	var bs []bucket
	for k, v := range m {
		rest, ok := strings.CutPrefix(k, holdBuckets+`{le="`)
		if !ok {
			continue
		}
		le, _, _ := strings.Cut(rest, `"`)
		var f float64
		if _, err := fmt.Sscan(le, &f); err != nil {
			f = 1e9 // +Inf
		}
		bs = append(bs, bucket{f, v})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) == 0 || bs[len(bs)-1].count == 0 {
		return 0, 0, 0
	}
	total := bs[len(bs)-1].count
	at := func(q float64) time.Duration {
		for _, b := range bs {
			if b.count >= q*total {
				return time.Duration(b.le * float64(time.Second))
			}
		}
		return 0
	}
	return at(0.5), at(0.99), int(total)
}

// waitPlaying waits until every player has logged in and made a move.
func waitPlaying(ctx context.Context, l *ledger) error {
	deadline := time.Now().Add(startTimeout)
	for {
		waiting := 0
		for _, p := range l.players {
			p.mu.Lock()
			if p.nMoves == 0 {
				waiting++
			}
			p.mu.Unlock()
		}
		if waiting == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d players could not log in and move within %v", waiting, len(l.players), startTimeout)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// finalRecords reads every player record after the cluster stopped.
func finalRecords(ctx context.Context, dsn string) (map[uint64]record, bool, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, false, err
	}
	defer conn.Close(context.Background())
	epochs := hasEpochColumn(ctx, conn)
	recs, err := readRecords(ctx, conn, epochs)
	return recs, epochs, err
}

// check compares the ledger with the store and fills in r.
func check(r *result, cfg *config, l *ledger, faults []fault, smp *sampler, recs map[uint64]record, playStart, playEnd time.Time) {
	// Changes a crash may lose: those made within a save interval (and the
	// commit's slack) before a game node died or paused, or whose answer
	// was on its way when it did.
	allowed := func(s *state) bool {
		for _, f := range faults {
			if f.losesState && !s.ack.Before(f.at.Add(-cfg.saveInterval-lossSlack)) && !s.ack.After(f.at.Add(time.Second)) {
				return true
			}
		}
		return false
	}
	// The store after SIGTERM is the players' last observation; a player
	// never saved shows its first state.
	for _, p := range l.players {
		rec, ok := recs[p.id]
		p.mu.Lock()
		root := p.root
		p.mu.Unlock()
		if !ok {
			rec = record{moves: root.moves, x: root.x, y: root.y}
		}
		p.observe(rec.moves, rec.x, rec.y, "store", nil, time.Now())
	}
	stuckAfter := cfg.leaseTTL + 2*time.Second
	from := playStart
	if len(faults) > 0 {
		from = faults[0].at
	}
	for _, p := range l.players {
		p.mu.Lock()
		r.acked += len(p.acks)
		r.trades += p.nTrades
		r.disorder += len(p.disorder)
		for _, d := range p.disorder {
			r.details = append(r.details, p.name+": "+d)
		}
		for _, ev := range p.losses {
			var bad []*state
			for _, s := range ev.lost {
				switch {
				case ev.source == "store":
					r.lostAtTerm++
				case allowed(s):
					r.lostAllowed++
				default:
					r.lostBad++
					bad = append(bad, s)
				}
			}
			if ev.resurrected || ev.unknown {
				r.olderCopy++
			}
			if len(bad) > 0 || ev.source == "store" && len(ev.lost) > 0 || ev.resurrected || ev.unknown {
				r.details = append(r.details, describeLoss(p, ev, bad, faults))
			}
		}
		for _, f := range p.failures {
			r.failures[f.cause]++
			if !f.at.Before(playStart) {
				r.lostCall++
			}
		}
		var longest, before time.Duration
		for _, w := range p.waits {
			switch {
			case !w.at.Before(from) && !w.at.After(playEnd):
				longest = max(longest, w.d)
			case w.at.Before(from) && !w.at.Before(playStart):
				before = max(before, w.d)
			}
		}
		r.pauses = append(r.pauses, longest)
		r.calm = append(r.calm, before)
		gap, from := maxGap(p.acks, playStart, playEnd)
		r.maxGap = max(r.maxGap, gap)
		if gap > stuckAfter {
			r.stuck++
			var during []string
			for _, f := range p.failures {
				if !f.at.Before(from) && !f.at.After(from.Add(gap)) {
					during = append(during, f.at.Format("15:04:05.000")+" "+f.cause)
				}
			}
			r.details = append(r.details, fmt.Sprintf("%s (player %d) could not play for %v from %s; failures: %s", p.name, p.id,
				gap.Round(100*time.Millisecond), from.Format("15:04:05.000"), strings.Join(during, ", ")))
		}
		r.failover = append(r.failover, failovers(p, faults, playEnd)...)
		p.mu.Unlock()
	}
	r.itemsDelta = itemDiff(smp.baseline, totals(recs, smp.first))
	if r.itemsDelta != 0 {
		r.details = append(r.details, fmt.Sprintf("items at the start %v, in the store after the stop %v", smp.baseline, totals(recs, smp.first)))
	}
	smp.mu.Lock()
	r.itemsUnequal = smp.unequal
	if smp.unequal > 0 {
		r.details = append(r.details, fmt.Sprintf("%d of %d store reads during the run had item totals off by up to %d", smp.unequal, smp.reads, smp.maxDiff))
	}
	r.staleCommits = smp.nBack
	r.details = append(r.details, smp.back...)
	if smp.errs > 0 {
		r.details = append(r.details, fmt.Sprintf("%d store reads failed during the run (last: %v)", smp.errs, smp.lastErr))
	}
	smp.mu.Unlock()
}

// describeLoss says what a loss event was, for the details.
func describeLoss(p *player, ev lossEvent, bad []*state, faults []fault) string {
	what := "lost"
	switch {
	case ev.unknown:
		what = "was shown a state it never reached, losing"
	case ev.resurrected:
		what = "was shown a state lost earlier (an older copy), losing"
	}
	var ages string
	if len(ev.lost) > 0 {
		newest, oldest := ev.lost[0], ev.lost[len(ev.lost)-1]
		ages = fmt.Sprintf(" acknowledged %s–%s", oldest.ack.Format("15:04:05.000"), newest.ack.Format("15:04:05.000"))
	}
	var near string
	for _, f := range faults {
		if !f.at.After(ev.at) {
			near = fmt.Sprintf("; last fault before: %s %s at %s", f.kind, f.target, f.at.Format("15:04:05.000"))
		}
	}
	outside := fmt.Sprintf(" (%d outside the allowed window)", len(bad))
	if ev.source == "store" {
		outside = "" // after SIGTERM nothing may be lost
	}
	return fmt.Sprintf("%s (player %d) at %s (%s) %s %d acknowledged moves%s%s%s",
		p.name, p.id, ev.at.Format("15:04:05.000"), ev.source, what, len(ev.lost), outside, ages, near)
}

// maxGap is the longest time between acknowledged operations from the
// first one after start until end, and when it began.
func maxGap(acks []time.Time, start, end time.Time) (time.Duration, time.Time) {
	var gap time.Duration
	var from, prev time.Time
	for _, a := range acks {
		if a.Before(start) {
			prev = a
			continue
		}
		if !prev.IsZero() && a.Sub(prev) > gap {
			gap, from = a.Sub(prev), prev
		}
		prev = a
	}
	if !prev.IsZero() && end.Sub(prev) > gap {
		gap, from = end.Sub(prev), prev
	}
	return gap, from
}

// failovers are, for each fault that cut the player off, the time from
// the fault to the player's next acknowledged operation. Cut off: a call
// or session failed during the fault or affectWindow after it, or the
// player's next acknowledgement came more than cutOff after the fault (a
// session moved to another copy without failing).
func failovers(p *player, faults []fault, end time.Time) []time.Duration {
	firstAfter := func(t time.Time) time.Time {
		for _, a := range p.acks {
			if a.After(t) {
				return a
			}
		}
		return end
	}
	var out []time.Duration
	for i, f := range faults {
		until := f.end.Add(affectWindow)
		if i+1 < len(faults) && faults[i+1].at.Before(until) {
			until = faults[i+1].at // the next fault's failures are its own
		}
		var cut time.Time
		for _, fl := range p.failures {
			if !fl.at.Before(f.at) && fl.at.Before(until) {
				cut = fl.at
				break
			}
		}
		switch next := firstAfter(f.at); {
		case !cut.IsZero():
			out = append(out, firstAfter(cut).Sub(f.at))
		case next.Sub(f.at) > cutOff:
			out = append(out, next.Sub(f.at))
		}
	}
	return out
}
