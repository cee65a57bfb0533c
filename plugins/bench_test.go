package plugins_test

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/citadel-go/citadel/plugins"
	"github.com/citadel-go/citadel/plugins/examples/combat"
	"github.com/citadel-go/citadel/plugins/plugintest"
	"github.com/vmihailenco/msgpack/v5"
)

func percentile(d []time.Duration, p float64) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[min(len(d)-1, int(p*float64(len(d))))]
}

// timed runs n calls of fn on each of conc goroutines and returns calls
// per second and every call's latency.
func timed(n, conc int, fn func() error) (float64, []time.Duration, error) {
	lat := make([][]time.Duration, conc)
	errs := make(chan error, conc)
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < conc; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, n)
			for i := 0; i < n; i++ {
				t := time.Now()
				if err := fn(); err != nil {
					errs <- err
					return
				}
				mine = append(mine, time.Since(t))
			}
			lat[g] = mine
		}()
	}
	wg.Wait()
	rate := float64(n*conc) / time.Since(start).Seconds()
	close(errs)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	return rate, all, <-errs
}

// BenchmarkPluginCall: the combat plugin's "fight" through the host
// (msgpack request, gRPC over a Unix socket to the plugin process, msgpack
// result) vs an in-process call of the same function with the same msgpack
// encoding of request and result, same run; 1 and 8 concurrent callers.
// And the swap: start the new version, canary, switch, drain and stop the
// old one. Each b.N is 2,000 calls per caller.
func BenchmarkPluginCall(b *testing.B) {
	bins := plugintest.Build(b)
	dir := b.TempDir()
	v1, v2 := plugintest.Install(b, dir, "combat", "v1", bins.CombatV1), plugintest.Install(b, dir, "combat", "v2", bins.CombatV2)
	h := newHost(b, plugins.Config{Dir: dir})
	if _, err := h.Swap("combat", v1); err != nil {
		b.Fatal(err)
	}
	req := &combat.Request{Monster: 7, HP: 90, Defense: 3, XP: 20, Drops: []int32{1, 2, 3}, DropChance: 50, Level: 4, Power: 6, Seed: 42}
	viaPlugin := func() error {
		_, err := plugins.CallMsg[combat.Result](context.Background(), h, "combat", "fight", req)
		return err
	}
	inProcess := func() error {
		raw, err := msgpack.Marshal(req)
		if err != nil {
			return err
		}
		var in combat.Request
		if err := msgpack.Unmarshal(raw, &in); err != nil {
			return err
		}
		out, err := msgpack.Marshal(combat.Fight(&in, combat.V1))
		if err != nil {
			return err
		}
		var res combat.Result
		return msgpack.Unmarshal(out, &res)
	}
	const n = 2000
	viaPlugin() // warm up
	b.ResetTimer()
	for _, conc := range []int{1, 8} {
		var pr, ir float64
		var pl, il []time.Duration
		for i := 0; i < b.N; i++ {
			r, l, err := timed(n, conc, viaPlugin)
			if err != nil {
				b.Fatal(err)
			}
			pr, pl = pr+r, append(pl, l...)
			r, l, err = timed(n, conc, inProcess)
			if err != nil {
				b.Fatal(err)
			}
			ir, il = ir+r, append(il, l...)
		}
		suffix := map[int]string{1: "-1caller", 8: "-8callers"}[conc]
		b.ReportMetric(pr/float64(b.N), "plugin-calls/s"+suffix)
		b.ReportMetric(ir/float64(b.N), "inproc-calls/s"+suffix)
		b.ReportMetric(float64(percentile(pl, 0.5).Microseconds()), "plugin-p50-µs"+suffix)
		b.ReportMetric(float64(percentile(pl, 0.99).Microseconds()), "plugin-p99-µs"+suffix)
		b.ReportMetric(float64(percentile(il, 0.5).Nanoseconds())/1000, "inproc-p50-µs"+suffix)
		b.ReportMetric(float64(percentile(il, 0.99).Nanoseconds())/1000, "inproc-p99-µs"+suffix)
		b.ReportMetric(pr/ir, "ratio"+suffix)
	}
	var swaps []time.Duration
	for i := 0; i < 5*b.N; i++ {
		start := time.Now()
		if _, err := h.Swap("combat", []string{v2, v1}[i%2]); err != nil {
			b.Fatal(err)
		}
		swaps = append(swaps, time.Since(start))
	}
	b.ReportMetric(float64(percentile(swaps, 0.5).Microseconds())/1000, "swap-p50-ms")
	b.ReportMetric(float64(percentile(swaps, 1).Microseconds())/1000, "swap-max-ms")
}
