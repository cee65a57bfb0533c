package citadel

import (
	"os"
	"runtime/debug"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user and system CPU time so far.
func cpuTime(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRoundTripCPU: CPU time per round trip (server, NSQ and the
// client harness together) at a fixed paced load of 10,000 round trips/s
// over 100 connections, for Citadel and, in alternating rounds of the same
// run, for the minimal cellnet echo: the ratio is what Citadel's path costs
// per request. Unlike throughput, CPU per request at a fixed load barely
// depends on how the host schedules the benchmark, so it shows changes of a
// few percent that a throughput run's noise hides. Each b.N iteration is
// one round of 4s per server.
func BenchmarkRoundTripCPU(b *testing.B) {
	if os.Getenv("GOGC") == "" {
		old := debug.SetGCPercent(defaultGOGC)
		b.Cleanup(func() { debug.SetGCPercent(old) })
	}
	srv := startTestServer(b, func(c *config) { c.Logger, c.ClientRate = quietLogger(), 1e6 })
	req := echoFrame(b)
	raw := dialBench(b, rawEchoServer(b), benchConns, req, nil)
	cit := dialBench(b, srv.GateTCP, benchConns, req, benchAuth(b, srv))
	const rate, d = 10000, 4 * time.Second
	for _, conns := range [][]*benchConn{raw, cit} { // warm up
		paced(b, conns, rate, time.Second)
	}
	var rawCPU, citCPU time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c0 := cpuTime(b)
		paced(b, raw, rate, d)
		c1 := cpuTime(b)
		paced(b, cit, rate, d)
		c2 := cpuTime(b)
		rawCPU += c1 - c0
		citCPU += c2 - c1
	}
	b.StopTimer()
	trips := float64(b.N) * rate * d.Seconds()
	b.ReportMetric(float64(citCPU.Nanoseconds())/trips/1e3, "citadel-cpu-µs/rt")
	b.ReportMetric(float64(rawCPU.Nanoseconds())/trips/1e3, "cellnet-min-cpu-µs/rt")
	b.ReportMetric(float64(citCPU)/float64(rawCPU), "cpu-ratio-vs-min")
}
