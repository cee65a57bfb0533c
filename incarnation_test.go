package citadel

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/citadel-go/citadel/client"
	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/ticket"
	"github.com/citadel-go/citadel/services"
	"github.com/nsqio/go-nsq"
)

// A session belongs to one incarnation of its gate. When a gate process
// dies and comes back, its players' actors enter their grace period (the
// clients reconnect), and nothing meant for an old session — a kick when
// the player logs in again — reaches the client that has the same session
// number on the new process.
func TestGateRestartKeepsSessionsApart(t *testing.T) {
	key := hex.EncodeToString(ticket.NewKey())
	gameData := t.TempDir()
	game := runCitadel(t, append([]string{"-role", "game", "-data", gameData, "-log-level", "warn", "-grace", "1m"}, ephemeral...)...)
	gateArgs := []string{"-role", "gate", "-data", t.TempDir(), "-log-level", "warn",
		"-cluster-key-file", filepath.Join(gameData, "cluster.key"), "-nsqd", game.nsqd, "-nsqd-http", game.nsqdHTTP,
		"-gate-tcp", "127.0.0.1:0", "-gate-ws", "", "-admin", "127.0.0.1:0"}
	gate := runCitadelEnv(t, []string{envTicketKey + "=" + key}, gateArgs...)
	signer, err := ticket.NewSigner(mustHex(t, key))
	if err != nil {
		t.Fatal(err)
	}
	connect := func(gateTCP string, player uint64) *client.Conn {
		t.Helper()
		tok, _, err := signer.Issue(player, "gate-1", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		lr := &services.LoginResponse{PlayerID: player, Ticket: tok, Gate: services.GateInfo{Node: "gate-1", TCP: gateTCP}}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var c *client.Conn
		for { // the gate learns of the game node within a heartbeat
			c, err = client.Connect(ctx, lr, client.Options{Registry: clientRegistry(t)})
			var k *client.KickedError
			if err == nil || !errors.As(err, &k) || k.Code != services.KickUnavailable || ctx.Err() != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("player %d: %v", player, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	first := connect(gate.gateTCP, 1001) // session 1 of the first gate process
	call[*services.Echo](t, first, &services.Echo{Data: []byte("first")})

	gate.cmd.Process.Kill() // a crash: no goodbye, no Detach
	<-first.Done()
	gate = runCitadelEnv(t, []string{envTicketKey + "=" + key}, gateArgs...)
	eventuallyTrue(t, "the game node to put the first player in its grace period", func() bool {
		return metricValue(t, game.admin, `citadel_game_players{state="grace"}`) == 1
	})
	second := connect(gate.gateTCP, 1002) // session 1 of the new gate process
	call[*services.Echo](t, second, &services.Echo{Data: []byte("second")})
	again := connect(gate.gateTCP, 1001) // the first player comes back
	call[*services.Echo](t, again, &services.Echo{Data: []byte("again")})
	// Had the game kicked "session 1" of gate-1 for the first player's old
	// session, the second player would be gone now.
	time.Sleep(500 * time.Millisecond)
	if e := call[*services.Echo](t, second, &services.Echo{Data: []byte("still here")}); string(e.Data) != "still here" {
		t.Fatalf("second player's echo: %q", e.Data)
	}
	if second.Err() != nil {
		t.Fatalf("the second player's session closed: %v", second.Err())
	}
}

// eventuallyTrue polls cond for up to 30s.
func eventuallyTrue(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metricValue reads one sample (name with labels, as exposed) from an
// admin server's /metrics; -1 if absent.
func metricValue(t *testing.T, admin, sample string) float64 {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// bbolt serves one process: a second game node on its own bbolt file would
// take players as new characters. It refuses to run, saying why; the first
// keeps serving.
func TestSecondGameNodeOnAnotherStoreRefuses(t *testing.T) {
	dir := t.TempDir()
	first := startProcess(t, dir)
	first.waitReady(t)
	second := exec.Command(citadelBinary(t), "-role", "game", "-id", "2", "-data", t.TempDir(), "-log-level", "warn",
		"-cluster-key-file", filepath.Join(dir, "cluster.key"), "-nsqd", first.nsqd, "-nsqd-http", first.nsqdHTTP,
		"-plugins", "-", "-admin", "127.0.0.1:0")
	out, err := second.CombinedOutput()
	if err == nil {
		t.Fatalf("a second game node on another bbolt file ran and stopped cleanly:\n%s", out)
	}
	if !strings.Contains(string(out), "every game node of a cluster must share one store") {
		t.Fatalf("the second game node stopped without saying why:\n%s", out)
	}
	lr, err := client.Register(context.Background(), first.loginURL, "survivor", "password-survivor")
	if err != nil {
		t.Fatalf("%v\nfirst process:\n%s", err, first.stderr.String())
	}
	c, err := client.Connect(context.Background(), lr, client.Options{Registry: clientRegistry(t)})
	if err != nil {
		t.Fatalf("the first game node stopped serving: %v", err)
	}
	defer c.Close()
	call[*services.Echo](t, c, &services.Echo{Data: []byte("still serving")})
}

// A game node whose own NSQ channel loses messages to another consumer is
// not ready while it lasts (orchestrators stop sending it players), and
// ready again once the consumer leaves.
func TestReadyzReportsAStalledNodeChannel(t *testing.T) {
	p := startProcess(t, t.TempDir())
	p.waitReady(t)
	readyz := func() (int, string) {
		resp, err := http.Get(p.admin + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitReadyz := func(want int) string {
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, body := readyz()
			if code == want {
				return body
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz answered %d %q for 30s, want %d", code, body, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	thief, err := nsq.NewConsumer(framework.NodeTopic(services.Game, "game-1"), "actors", nsq.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	thief.SetLogger(log.New(io.Discard, "", 0), nsq.LogLevelError)
	thief.AddHandler(nsq.HandlerFunc(func(*nsq.Message) error { return nil }))
	if err := thief.ConnectToNSQD(p.nsqd); err != nil {
		t.Fatal(err)
	}
	if body := waitReadyz(http.StatusServiceUnavailable); !strings.Contains(body, "game-1") {
		t.Fatalf("/readyz does not name the node: %q", body)
	}
	thief.Stop()
	<-thief.StopChan
	waitReadyz(http.StatusOK)
}
