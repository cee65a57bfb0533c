package citadel

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/citadel-go/citadel/framework/ticket"
	"github.com/citadel-go/citadel/framework/wire"
	"github.com/citadel-go/citadel/services"
)

// BenchmarkGateMemoryPerConnection: Go heap and stacks of a gate process
// per idle, authenticated TCP connection, at 10,000 connections (target:
// at most 16 KiB each). The gate runs alone in its process (the game node,
// which holds 10,000 player actors, and NSQ run in another), so the
// process's own memory statistics measure the gate. CITADEL_BENCH_CONNS
// overrides the count.
func BenchmarkGateMemoryPerConnection(b *testing.B) {
	conns := memoryBenchConns()
	raiseFileLimit(b, conns+1000)
	key := hex.EncodeToString(ticket.NewKey())
	gameData := b.TempDir()
	game := runCitadel(b, append([]string{"-role", "game", "-data", gameData, "-log-level", "warn"}, ephemeral...)...)
	gate := runCitadelEnv(b, []string{envTicketKey + "=" + key}, "-role", "gate", "-data", b.TempDir(), "-log-level", "warn",
		"-cluster-key-file", filepath.Join(gameData, "cluster.key"), "-nsqd", game.nsqd, "-nsqd-http", game.nsqdHTTP, "-gate-tcp", "127.0.0.1:0", "-gate-ws", "",
		"-admin", "127.0.0.1:0", "-heartbeat", "10m", "-max-conns", strconv.Itoa(conns+100))
	memoryPerConnection(b, gate, key, conns)
}

// BenchmarkAllInOneMemoryPerConnection: Go heap and stacks of one
// all-in-one process (login, gate, game node with the sample game,
// embedded NSQ and bbolt) per idle, authenticated TCP connection, each
// with its player actor, at 10,000 connections (target: at most 24 KiB
// each). CITADEL_BENCH_CONNS overrides the count.
func BenchmarkAllInOneMemoryPerConnection(b *testing.B) {
	conns := memoryBenchConns()
	raiseFileLimit(b, conns+1000)
	key := hex.EncodeToString(ticket.NewKey())
	p := startProcessEnv(b, b.TempDir(), []string{envTicketKey + "=" + key}, "-heartbeat", "10m", "-max-conns", strconv.Itoa(conns+100))
	p.waitReady(b)
	memoryPerConnection(b, p, key, conns)
}

func memoryBenchConns() int {
	if v, err := strconv.Atoi(os.Getenv("CITADEL_BENCH_CONNS")); err == nil && v > 0 {
		return v
	}
	return 10000
}

// memoryPerConnection opens conns TCP connections to p's gate (node
// gate-1), authenticates each with a ticket signed with key for players
// 1..conns, and reports the growth of p's Go heap and stacks per
// connection, read after forced collections.
func memoryPerConnection(b *testing.B, p *process, key string, conns int) {
	signer, _ := ticket.NewSigner(mustHex(b, key))
	reg := clientRegistry(b)

	before := processMemory(b, p)
	b.ResetTimer()
	var open []net.Conn
	start := time.Now()
	for i := 0; i < conns; i++ {
		c, err := net.Dial("tcp", p.gateTCP)
		if err != nil {
			b.Fatalf("connection %d: %v", i, err)
		}
		open = append(open, c)
		tok, _, _ := signer.Issue(uint64(i+1), "gate-1", time.Minute)
		id, payload, _ := wire.Encode(reg, 1, &services.Auth{Ticket: tok, Protocol: services.ProtocolVersion})
		f, _ := wire.AppendTCP(nil, id, payload, 1<<20)
		c.Write(f)
		if i%500 == 499 || i == conns-1 {
			awaitAuth(b, open[len(open)-min(500, len(open)):], reg)
			if i%2500 == 2499 {
				fmt.Fprintf(os.Stderr, "memory benchmark: %d/%d connections authenticated (%v)\n", i+1, conns, time.Since(start).Round(time.Millisecond))
			}
		}
	}
	b.StopTimer()
	time.Sleep(time.Second) // let pushes and load reports settle
	after := processMemory(b, p)
	per := float64(after.heap+after.stack-before.heap-before.stack) / float64(conns)
	b.ReportMetric(per/1024, "KiB/conn")
	b.ReportMetric(float64(after.heap-before.heap)/float64(conns)/1024, "heap-KiB/conn")
	b.ReportMetric(float64(after.stack-before.stack)/float64(conns)/1024, "stack-KiB/conn")
	b.ReportMetric(float64(after.rss-before.rss)/float64(conns)/1024, "rss-KiB/conn")
	b.ReportMetric(float64(after.goroutines-before.goroutines)/float64(conns), "goroutines/conn")
	if dir := os.Getenv("CITADEL_BENCH_PROFILE"); dir != "" {
		saveProfiles(b, p, dir)
	}
	for _, c := range open {
		c.Close()
	}
}

// saveProfiles writes p's heap profile and goroutine dump into dir (for
// finding where the memory per connection goes).
func saveProfiles(b *testing.B, p *process, dir string) {
	for name, path := range map[string]string{"heap.pprof": "/debug/pprof/heap", "goroutines.txt": "/debug/pprof/goroutine?debug=1"} {
		req, _ := http.NewRequest(http.MethodGet, p.admin+path, nil)
		req.Header.Set("Authorization", "Bearer "+p.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// awaitAuth reads each connection until its AuthOK.
func awaitAuth(b *testing.B, conns []net.Conn, reg interface{}) {
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func(c net.Conn) {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			br := bufio.NewReader(c)
			for {
				f, _, err := wire.ReadTCP(br, 1<<20, nil)
				if err != nil {
					b.Errorf("waiting for AuthOK: %v", err)
					return
				}
				if f.ID == services.IDAuthOK {
					c.SetReadDeadline(time.Time{})
					return
				}
				if f.ID == services.IDKicked {
					b.Errorf("kicked while authenticating")
					return
				}
			}
		}(c)
	}
	wg.Wait()
}

type memStats struct{ heap, stack, rss, goroutines int64 }

// processMemory asks the process to collect garbage (the pprof heap endpoint
// with gc=1) until idle stacks have shrunk, then reads its Go memory
// statistics from /metrics.
func processMemory(b *testing.B, p *process) memStats {
	// Several cycles: each GC halves at most the stacks that use under a
	// quarter of their size, so idle sessions' stacks settle over a few.
	for i := 0; i < 6; i++ {
		collect(b, p)
	}
	resp, err := http.Get(p.admin + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var m memStats
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "go_memstats_heap_inuse_bytes":
			m.heap = int64(v)
		case "go_memstats_stack_inuse_bytes":
			m.stack = int64(v)
		case "process_resident_memory_bytes":
			m.rss = int64(v)
		case "go_goroutines":
			m.goroutines = int64(v)
		}
	}
	return m
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	k, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func raiseFileLimit(b *testing.B, want int) {
	var l syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	if l.Cur < uint64(want) {
		l.Cur = min(uint64(want), l.Max)
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
	if l.Cur < uint64(want) {
		b.Skipf("open file limit %d is below the %d this benchmark needs", l.Cur, want)
	}
}
