package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/citadel-go/citadel/client"
	"github.com/citadel-go/citadel/services"
)

// The bots play against a real server (the citadel binary, as a user would
// run it) and report what they did.
func TestBotsPlayAgainstTheServer(t *testing.T) {
	srv := startServer(t).login
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	for _, transport := range []string{"tcp", "ws"} {
		out.Reset()
		sum, err := runBots(ctx, botConfig{LoginURL: srv, N: 20, Duration: 2 * time.Second, Transport: transport,
			Prefix: "t-" + transport, Password: "bot-password", Think: 20 * time.Millisecond, LoginConcurrency: 8}, &out)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s:\n%s", transport, out.String())
		if sum.verdict(0) != "" || sum.Connected != 20 || sum.Calls < 100 || sum.Errors != 0 || sum.P50 <= 0 || sum.Pushes == 0 {
			t.Fatalf("%s: summary %+v", transport, sum)
		}
		if lines := strings.Count(out.String(), "connected="); lines < 2 {
			t.Fatalf("%s: %d progress lines, want one a second", transport, lines)
		}
		if !strings.Contains(out.String(), "summary: bots=20 connected=20 failed=0 kicked=0 lost=0") ||
			!strings.Contains(out.String(), "result: ok") {
			t.Fatalf("%s: no summary line", transport)
		}
	}
	// A second run logs the same accounts in instead of registering.
	sum, err := runBots(ctx, botConfig{LoginURL: srv, N: 5, Duration: time.Second, Transport: "tcp", Prefix: "t-tcp",
		Password: "bot-password", Think: 50 * time.Millisecond}, &out)
	if err != nil || sum.verdict(0) != "" || sum.Connected != 5 {
		t.Fatalf("relogin: %+v %v", sum, err)
	}
	// With the wrong password every bot fails at login, counted by HTTP
	// status and code.
	out.Reset()
	sum, err = runBots(ctx, botConfig{LoginURL: srv, N: 3, Duration: time.Second, Prefix: "t-tcp", Password: "wrong-password"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	expectDropped(t, sum, out.String(), "login: HTTP 401 bad_credentials", 3, nil)
}

// expectDropped checks that n bots failed to connect, all for cause (or
// were kicked with that code while playing, if kicked), that the summary
// says so, and that the run fails unless n bots may drop out.
func expectDropped(t *testing.T, sum summary, out, cause string, n int, kicked map[string]int) {
	t.Helper()
	t.Logf("\n%s", out)
	by := sum.FailedBy
	if kicked != nil {
		by = kicked
	}
	if by[cause] != n || sum.Dropped() != int64(n) {
		t.Fatalf("dropped %d (failed %v, kicked %v, lost %v), want %d for %q", sum.Dropped(), sum.FailedBy, sum.KickedBy, sum.LostBy, n, cause)
	}
	if !regexp.MustCompile(`(?m)^\s+` + strconv.Itoa(n) + `  ` + regexp.QuoteMeta(cause) + `  \(first: .+\)$`).MatchString(out) {
		t.Fatalf("summary does not list %d × %q with an example", n, cause)
	}
	if !strings.Contains(out, "result: FAIL: "+strconv.Itoa(n)+" bots dropped out (-max-dropped 0)") {
		t.Fatal("no FAIL result line")
	}
	if sum.verdict(0) == "" || sum.verdict(n-1) == "" {
		t.Fatalf("a run with %d dropped bots passes", n)
	}
	if v := sum.verdict(n); v != "" {
		t.Fatalf("-max-dropped %d does not tolerate %d dropped bots: %s", n, n, v)
	}
}

// A login service nobody listens on: every bot fails with "refused".
func TestBotsCountRefusedLogins(t *testing.T) {
	var out bytes.Buffer
	sum, err := runBots(context.Background(), botConfig{LoginURL: "http://" + closedPort(t), N: 4, Duration: time.Second,
		Prefix: "nobody", Password: "bot-password"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	expectDropped(t, sum, out.String(), "login: refused", 4, nil)
}

// A login service with another ticket key than the gate's: every bot is
// kicked at authentication, counted by its kick code.
func TestBotsCountAuthKicks(t *testing.T) {
	game := startServer(t)
	// A second process runs only login, with its own data directory (so
	// its own ticket key), on the first one's NSQ: it hands out the first
	// one's gate with tickets that gate cannot verify.
	lonely := startServer(t, "-role", "login", "-id", "2", "-nsqd", game.nsqd, "-nsqd-http", game.nsqdHTTP,
		"-cluster-key-file", filepath.Join(game.data, "cluster.key"))
	var out bytes.Buffer
	sum, err := runBots(context.Background(), botConfig{LoginURL: lonely.login, N: 3, Duration: time.Second,
		Prefix: "forged", Password: "bot-password"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	expectDropped(t, sum, out.String(), "gate: kicked "+services.KickBadTicket, 3, nil)
}

// Bots that send faster than the server's -client-rate are kicked while
// playing, counted by kick code.
func TestBotsCountKicksWhilePlaying(t *testing.T) {
	srv := startServer(t, "-client-rate", "1")
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	// Long enough that no bot is still playing when it ends: each sends as
	// fast as it can and is kicked within its first few frames.
	sum, err := runBots(ctx, botConfig{LoginURL: srv.login, N: 3, Duration: time.Minute, Prefix: "greedy",
		Password: "bot-password", EchoOnly: true}, &out)
	if err != nil {
		t.Fatal(err)
	}
	expectDropped(t, sum, out.String(), services.KickRateLimited, 3, sum.KickedBy)
	if !strings.Contains(out.String(), "kicked while playing, by kick code: 3") {
		t.Fatal("no kicked section in the summary")
	}
}

// Bots whose server dies under them are counted as lost, by cause.
func TestBotsCountLostConnections(t *testing.T) {
	for _, transport := range []string{client.TCP, client.WebSocket} {
		t.Run(transport, func(t *testing.T) {
			srv := startServer(t)
			out := &lockedBuffer{}
			done := make(chan summary, 1)
			go func() {
				sum, err := runBots(context.Background(), botConfig{LoginURL: srv.login, N: 3, Duration: time.Minute,
					Transport: transport, Prefix: "doomed", Password: "bot-password", Think: 10 * time.Millisecond}, out)
				if err != nil {
					t.Error(err)
				}
				done <- sum
			}()
			deadline := time.Now().Add(60 * time.Second)
			for !strings.Contains(out.String(), "3 of 3 bots connected") {
				if time.Now().After(deadline) {
					t.Fatalf("bots did not connect:\n%s", out.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			srv.kill()
			var sum summary
			select {
			case sum = <-done:
			case <-time.After(60 * time.Second):
				t.Fatalf("bots still running 60s after their server died:\n%s", out.String())
			}
			t.Logf("\n%s", out.String())
			if sum.Lost != 3 || sum.Dropped() != 3 || sum.LostBy["other"] != 0 || sum.verdict(0) == "" || sum.verdict(3) != "" {
				t.Fatalf("lost %v (kicked %v, failed %v), want 3 by a named cause and a FAIL", sum.LostBy, sum.KickedBy, sum.FailedBy)
			}
			if !strings.Contains(out.String(), "lost their connection while playing: 3") {
				t.Fatal("no lost section in the summary")
			}
		})
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The binary's exit status follows the verdict, and bad settings are
// refused before any bot starts.
func TestBotExitStatus(t *testing.T) {
	bin := t.TempDir() + "/citadel-bot"
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	url := "http://" + closedPort(t)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-login", url, "-n", "2", "-d", "1s"}, 1, "result: FAIL: 2 bots dropped out (-max-dropped 0)"},
		{[]string{"-login", url, "-n", "2", "-d", "1s", "-max-dropped", "2"}, 0, "result: ok"},
		{[]string{"-login", url, "-n", "2", "-max-dropped", "3"}, 1, "-max-dropped 3: want 0 to -n (2)"},
		{[]string{"-n", "0"}, 1, "-n 0: want at least 1 bot"},
		{[]string{"-login", "127.0.0.1:8000"}, 1, "-login 127.0.0.1:8000: want the login service's URL"},
		{[]string{"-h"}, 0, "-max-dropped"},
	} {
		cmd := exec.Command(bin, c.args...)
		out, err := cmd.CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != c.code || !strings.Contains(string(out), c.want) {
			t.Errorf("citadel-bot %q: exit %d, want %d and %q:\n%s", c.args, code, c.code, c.want, out)
		}
	}
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// server is a citadel process started by a test.
type server struct {
	data           string // its data directory
	login          string // login URL
	nsqd, nsqdHTTP string // its embedded nsqd, if any
	kill           func() // SIGKILL, as a crash
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildOut  []byte
)

// startServer runs the citadel binary with ephemeral ports (and extra
// flags) and waits until its login can hand out a gate.
func startServer(t *testing.T, extra ...string) server {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "citadel-bot-test")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "citadel")
		buildOut, buildErr = exec.Command("go", "build", "-o", binPath, "../citadel").CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build: %v\n%s", buildErr, buildOut)
	}
	data := t.TempDir()
	args := append([]string{"-data", data, "-bcrypt-cost", "4", "-plugins", "-",
		"-embedded-nsqd-tcp", "127.0.0.1:0", "-embedded-nsqd-http", "127.0.0.1:0",
		"-embedded-lookupd-tcp", "127.0.0.1:0", "-embedded-lookupd-http", "127.0.0.1:0",
		"-login", "127.0.0.1:0", "-gate-tcp", "127.0.0.1:0", "-gate-ws", "127.0.0.1:0", "-admin", "127.0.0.1:0",
		"-log-level", "warn"}, extra...)
	cmd := exec.Command(binPath, args...)
	stdout, _ := cmd.StdoutPipe()
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var killed atomic.Bool
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil && !killed.Load() {
				t.Errorf("server exit: %v\n%s", err, stderr.String())
			}
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			t.Error("server did not stop")
		}
	})
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(io.Discard, stdout)
	}()
	loginLine := regexp.MustCompile(`login HTTP\s+(\S+)`)
	nsqdLine := regexp.MustCompile(`embedded nsqd (\S+) \(http (\S+)\)`)
	adminLine := regexp.MustCompile(`^\s*admin\s+(http\S+)`)
	var admin string
	s := server{data: data, kill: func() { killed.Store(true); cmd.Process.Kill() }}
	deadline := time.After(60 * time.Second)
	for s.login == "" || admin == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("server exited before it was ready:\n%s", stderr.String())
			}
			if m := nsqdLine.FindStringSubmatch(l); m != nil {
				s.nsqd, s.nsqdHTTP = m[1], m[2]
			}
			if m := loginLine.FindStringSubmatch(l); m != nil {
				s.login = m[1]
			}
			if m := adminLine.FindStringSubmatch(l); m != nil {
				admin = m[1]
			}
		case <-deadline:
			t.Fatalf("server did not start within 60s:\n%s", stderr.String())
		}
	}
	waitReady(t, admin)
	return s
}

// waitReady waits until the server's /readyz says it takes players: login
// sees a gate, the gate a game node. (A login with a wrong password does
// not tell: credentials are checked before a gate is picked.)
func waitReady(t *testing.T, admin string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the server was not ready within 60s (%s/readyz)", admin)
}
