package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/citadel-go/citadel/framework/ticket"
)

var (
	buildOnce sync.Once
	binDir    string
	buildOut  []byte
	buildErr  error
)

// binaries builds citadel and citadel-load once per test run.
func binaries(t *testing.T) (citadel, load string) {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "citadel-load-test"); buildErr != nil {
			return
		}
		for _, pkg := range []string{"../citadel", "."} {
			name := filepath.Base(pkg)
			if pkg == "." {
				name = "citadel-load"
			}
			if buildOut, buildErr = exec.Command("go", "build", "-o", filepath.Join(binDir, name), pkg).CombinedOutput(); buildErr != nil {
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatalf("build: %v\n%s", buildErr, buildOut)
	}
	return filepath.Join(binDir, "citadel"), filepath.Join(binDir, "citadel-load")
}

// startServer runs an all-in-one citadel with the ticket key key and a 1s
// client heartbeat (a connection silent for 3s is kicked), and returns
// its gate's TCP address and login URL.
func startServer(t *testing.T, key string) (gate, login string) {
	t.Helper()
	bin, _ := binaries(t)
	cmd := exec.Command(bin, "-data", t.TempDir(), "-plugins", "-", "-bcrypt-cost", "4", "-heartbeat", "1s", "-log-level", "warn",
		"-embedded-nsqd-tcp", "127.0.0.1:0", "-embedded-nsqd-http", "127.0.0.1:0",
		"-embedded-lookupd-tcp", "127.0.0.1:0", "-embedded-lookupd-http", "127.0.0.1:0",
		"-login", "127.0.0.1:0", "-gate-tcp", "127.0.0.1:0", "-gate-ws", "", "-admin", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), envTicketKey+"="+key)
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
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
	gateLine, loginLine, adminLine := regexp.MustCompile(`gate TCP\s+(\S+)`), regexp.MustCompile(`login HTTP\s+(\S+)`), regexp.MustCompile(`^\s+admin\s+http`)
	deadline := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("citadel exited before it was ready")
			}
			if m := gateLine.FindStringSubmatch(l); m != nil {
				gate = m[1]
			}
			if m := loginLine.FindStringSubmatch(l); m != nil {
				login = m[1]
			}
			if adminLine.MatchString(l) {
				return gate, login
			}
		case <-deadline:
			t.Fatal("citadel did not print its addresses within 60s")
		}
	}
}

// load runs citadel-load with args and the ticket key key in its
// environment; it returns the output and exit code.
func load(t *testing.T, key string, args ...string) (string, int) {
	t.Helper()
	_, bin := binaries(t)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), envTicketKey+"="+key)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func newKey() string { return hex.EncodeToString(ticket.NewKey()) }

// Connections spread over two processes authenticate, stay up past the
// gate's idle timeout (they ping at the heartbeat AuthOK announces), and
// the run reports them all up and nothing dropped.
func TestHoldsIdleConnectionsOverSeveralProcesses(t *testing.T) {
	key := newKey()
	gate, _ := startServer(t, key)
	out, code := load(t, key, "-n", "30", "-procs", "2", "-d", "5s", "-every", "1s", "-gate", "gate-1="+gate)
	t.Logf("\n%s", out)
	if code != 0 || !strings.Contains(out, "over 2 processes") ||
		!strings.Contains(out, "summary: connections=30 up_at_end=30 auth_failed=0 kicked=0 lost=0") || !strings.Contains(out, "result: ok") {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(out, "pushes=30 ") { // each player's PlayerInfo, counted, not decoded
		t.Fatal("pushes not counted")
	}
	if !regexp.MustCompile(`max_rtt=[0-9.]*[1-9][0-9.]*ms`).MatchString(out) {
		t.Fatal("no heartbeat round trip reported: the connections did not ping")
	}
}

// A connection the gate closes with a Kicked frame is counted by its kick
// code, and the run fails; tickets signed with another key fail
// authentication, counted by cause.
func TestCountsKicksAndAuthFailures(t *testing.T) {
	key := newKey()
	gate, login := startServer(t, key)
	_, bin := binaries(t)
	holder := exec.Command(bin, "-n", "6", "-every", "200ms", "-gate", "gate-1="+gate)
	holder.Env = append(os.Environ(), envTicketKey+"="+key)
	var out lockedBuffer
	holder.Stdout, holder.Stderr = &out, &out
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer holder.Process.Kill()
	waitFor(t, &out, "6 of 6 connections up")
	// The same players log in again: the gate kicks the holder's sessions.
	if again, code := load(t, key, "-n", "2", "-d", "1s", "-gate", "gate-1="+gate); code != 0 {
		t.Fatalf("second login: exit %d\n%s", code, again)
	}
	waitFor(t, &out, "kicked=2")
	holder.Process.Signal(syscall.SIGTERM)
	err := holder.Wait()
	t.Logf("\n%s", out.String())
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("holder exit %v, want 1", err)
	}
	for _, want := range []string{"up_at_end=4 auth_failed=0 kicked=2 lost=0", "kicked by the gate, by kick code: 2", "2  logged_in_elsewhere", "result: FAIL"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("summary lacks %q", want)
		}
	}

	bad, code := load(t, newKey(), "-n", "3", "-d", "1s", "-gate", "gate-1="+gate)
	t.Logf("\n%s", bad)
	if code != 1 || !strings.Contains(bad, "auth_failed=3") || !strings.Contains(bad, "3  kicked bad_ticket") {
		t.Fatalf("wrong key: exit %d", code)
	}

	// Through the login service instead of signed tickets.
	viaLogin, code := load(t, "", "-n", "3", "-d", "1s", "-login", login)
	if code != 0 || !strings.Contains(viaLogin, "up_at_end=3") {
		t.Fatalf("with -login: exit %d\n%s", code, viaLogin)
	}
}

func TestRefusesBadSettings(t *testing.T) {
	for _, c := range []struct {
		key  string
		args []string
		want string
	}{
		{"", []string{"-gate", "gate-1=127.0.0.1:1"}, "set CITADEL_TICKET_KEY or -ticket-key-file"},
		{"not-hex", []string{"-gate", "gate-1=127.0.0.1:1"}, "is not hex"},
		{newKey(), []string{}, "give either -gate"},
		{newKey(), []string{"-gate", "127.0.0.1:1"}, "want node=host:port"},
		{newKey(), []string{"-n", "0", "-gate", "gate-1=127.0.0.1:1"}, "-n 0: want at least 1"},
	} {
		out, code := load(t, c.key, c.args...)
		if code != 2 || !strings.Contains(out, c.want) {
			t.Errorf("%v: exit %d, output %q; want exit 2 and %q", c.args, code, out, c.want)
		}
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

// waitFor polls out until it contains s.
func waitFor(t *testing.T, out *lockedBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q within 60s:\n%s", s, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
