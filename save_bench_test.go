package citadel

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citadel-go/citadel/framework/ticket"
	"github.com/citadel-go/citadel/framework/wire"
	"github.com/citadel-go/citadel/services"
)

// BenchmarkRoundTripWhileSaving: bot round-trip p50/p99 while 10,000 dirty
// players are being saved vs with no save running, same run (target: p99
// ratio at most 2).
//
// The built binary runs all roles with -save-interval 2s. 10,000 players
// connect; 50 bots send Echo at 2,000 round trips per second in all. In
// both phases each of the 10,000 players sends one request per save
// interval (spread evenly: 5,000 requests/s), and both requests are
// answered with the player's inventory; only what they do differs:
//   - no save: GetInventory reads, nothing is dirty, no save runs;
//   - saving: PickUp changes the inventory, so every player is dirty at
//     every save tick and 10,000 snapshots are committed per interval.
//
// So the difference between the phases is the saving alone. Each b.N
// iteration is one phase of each, 6s of measurement apiece.
func BenchmarkRoundTripWhileSaving(b *testing.B) {
	const (
		players  = 10_000
		bots     = 50
		botRate  = 2000
		interval = 2 * time.Second
		window   = 6 * time.Second
	)
	raiseFileLimit(b, players+bots+1000)
	key := hex.EncodeToString(ticket.NewKey())
	p := startProcessEnv(b, b.TempDir(), []string{envTicketKey + "=" + key}, "-save-interval", interval.String(), "-client-rate", "1e6",
		"-heartbeat", "10m", "-max-conns", strconv.Itoa(players+bots+100))
	signer, err := ticket.NewSigner(mustHex(b, key))
	if err != nil {
		b.Fatal(err)
	}
	reg := clientRegistry(b)
	frame := func(msg any) []byte {
		id, payload, err := wire.Encode(reg, 1, msg)
		if err != nil {
			b.Fatal(err)
		}
		f, err := wire.AppendTCP(nil, id, payload, 1<<20)
		if err != nil {
			b.Fatal(err)
		}
		return f
	}
	next := uint64(0)
	auth := func(int) []byte {
		next++
		tok, _, err := signer.Issue(next, "gate-1", time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		return frame(&services.Auth{Ticket: tok, Protocol: services.ProtocolVersion})
	}
	start := time.Now()
	playerConns := make([]*benchConn, 0, players)
	for len(playerConns) < players {
		playerConns = append(playerConns, dialBench(b, p.gateTCP, 500, nil, auth)...)
		if len(playerConns)%2500 == 0 {
			fmt.Fprintf(os.Stderr, "saving benchmark: %d/%d players connected (%v)\n", len(playerConns), players, time.Since(start).Round(time.Millisecond))
		}
	}
	for _, c := range playerConns {
		c.reply = services.IDInventory
		c.br = bufio.NewReaderSize(c.c, 4096) // a player's replies are small
	}
	botConns := dialBench(b, p.gateTCP, bots, echoFrame(b), auth)
	read, write := frame(&services.GetInventory{}), frame(&services.PickUp{Item: "apple", Count: 1})

	// phase runs the players' requests and measures the bots.
	phase := func(req []byte) (p50, p99 time.Duration, savesPerSec, gcs float64) {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		begin := time.Now()
		for j, c := range playerConns {
			c.req = req
			wg.Add(1)
			go func() {
				defer wg.Done()
				at := begin.Add(interval * time.Duration(j) / players)
				for {
					select {
					case <-time.After(time.Until(at)):
					case <-stop:
						return
					}
					if err := c.roundTrip(); err != nil {
						b.Error(err)
						return
					}
					at = at.Add(interval)
				}
			}()
		}
		time.Sleep(interval + interval/2) // steady state: the previous phase's saves are done
		collect(b, p)
		saved0, gcs0, from := metric(b, p.admin, "citadel_save_records_total"), metric(b, p.admin, "go_gc_duration_seconds_count"), time.Now()
		p50, p99 = paced(b, botConns, botRate, window)
		savesPerSec = (metric(b, p.admin, "citadel_save_records_total") - saved0) / time.Since(from).Seconds()
		gcs = metric(b, p.admin, "go_gc_duration_seconds_count") - gcs0
		close(stop)
		wg.Wait()
		return p50, p99, savesPerSec, gcs
	}

	var idle50, idle99, save50, save99 time.Duration
	var idleSaves, saves, gcs float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a50, a99, as, ag := phase(read)
		s50, s99, ss, sg := phase(write)
		idle50, idle99, save50, save99 = idle50+a50, idle99+a99, save50+s50, save99+s99
		idleSaves, saves, gcs = idleSaves+as, saves+ss, gcs+ag+sg
	}
	b.StopTimer()
	n := time.Duration(b.N)
	idle50, idle99, save50, save99 = idle50/n, idle99/n, save50/n, save99/n
	idleSaves, saves = idleSaves/float64(b.N), saves/float64(b.N)
	if want := players / interval.Seconds(); saves < want/2 || idleSaves > want/100 {
		b.Fatalf("%.0f saves/s while saving (want about %.0f), %.0f with nothing dirty (want none)", saves, want, idleSaves)
	}
	b.ReportMetric(float64(idle50.Microseconds()), "nosave-p50-µs")
	b.ReportMetric(float64(idle99.Microseconds()), "nosave-p99-µs")
	b.ReportMetric(float64(save50.Microseconds()), "saving-p50-µs")
	b.ReportMetric(float64(save99.Microseconds()), "saving-p99-µs")
	b.ReportMetric(float64(save99)/float64(idle99), "p99-ratio")
	b.ReportMetric(saves, "saves/s")
	b.ReportMetric(gcs, "gc-cycles-in-windows")
}

// collect makes the server collect garbage now (pprof's heap endpoint
// with gc=1), so a measurement window starts with the whole GOGC runway.
func collect(b *testing.B, p *process) {
	req, _ := http.NewRequest(http.MethodGet, p.admin+"/debug/pprof/heap?gc=1", nil)
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("pprof heap: %s", resp.Status)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// metric reads one unlabelled sample from the admin /metrics endpoint.
func metric(b *testing.B, admin, name string) float64 {
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatal(err)
			}
			return f
		}
	}
	b.Fatalf("%s not in /metrics", name)
	return 0
}
