package citadel

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/citadel-go/citadel/client"
	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/game/sample"
	"github.com/citadel-go/citadel/services"
	"github.com/vmihailenco/msgpack/v5"
)

// buildBinary builds cmd/citadel once per test binary run.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func citadelBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "citadel-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "citadel")
		out, err := exec.Command("go", "build", "-o", binPath, "./cmd/citadel").CombinedOutput()
		if err != nil {
			buildErr = err
			binPath = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("go build: %v\n%s", buildErr, binPath)
	}
	return binPath
}

// process is a running citadel binary.
type process struct {
	cmd      *exec.Cmd
	loginURL string
	gateTCP  string
	admin    string
	token    string // the admin token (read from the file the process names)
	nsqd     string
	nsqdHTTP string
	stdout   *lockedBuffer // what it printed up to its admin line
	stderr   *lockedBuffer
	exited   chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

var (
	loginLine = regexp.MustCompile(`login HTTP\s+(\S+)`)
	gateLine  = regexp.MustCompile(`gate TCP\s+(\S+)`)
	adminLine = regexp.MustCompile(`^\s+admin\s+(http\S+)`)
	tokenLine = regexp.MustCompile(`^\s+admin token\s+(/\S+)`)
	nsqdLine  = regexp.MustCompile(`embedded nsqd (\S+) \(http (\S+)\)`)
)

// ephemeral are the flags that put every listener on a free port.
var ephemeral = []string{"-embedded-nsqd-tcp", "127.0.0.1:0", "-embedded-nsqd-http", "127.0.0.1:0",
	"-embedded-lookupd-tcp", "127.0.0.1:0", "-embedded-lookupd-http", "127.0.0.1:0",
	"-plugins", "-", "-login", "127.0.0.1:0", "-gate-tcp", "127.0.0.1:0", "-gate-ws", "127.0.0.1:0", "-admin", "127.0.0.1:0"}

// startProcess runs the all-in-one binary with ephemeral ports.
func startProcess(t testing.TB, dataDir string, extra ...string) *process {
	t.Helper()
	return startProcessEnv(t, dataDir, nil, extra...)
}

// startProcessEnv is startProcess with variables added to the environment.
func startProcessEnv(t testing.TB, dataDir string, env []string, extra ...string) *process {
	t.Helper()
	args := append([]string{"-data", dataDir, "-bcrypt-cost", "4", "-grace", "1m", "-log-level", "warn"}, ephemeral...)
	return runCitadelEnv(t, env, append(args, extra...)...)
}

// runCitadel runs the binary and waits until it has printed where it
// listens (the admin line comes last).
func runCitadel(t testing.TB, args ...string) *process {
	t.Helper()
	return runCitadelEnv(t, nil, args...)
}

// runCitadelEnv is runCitadel with variables added to the environment.
func runCitadelEnv(t testing.TB, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(citadelBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
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
	deadline := time.After(60 * time.Second)
	for p.admin == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("citadel exited before it was ready:\n%s", p.stderr)
			}
			p.stdout.Write([]byte(l + "\n"))
			if m := loginLine.FindStringSubmatch(l); m != nil {
				p.loginURL = m[1]
			}
			if m := gateLine.FindStringSubmatch(l); m != nil {
				p.gateTCP = m[1]
			}
			if m := nsqdLine.FindStringSubmatch(l); m != nil {
				p.nsqd, p.nsqdHTTP = m[1], m[2]
			}
			if m := tokenLine.FindStringSubmatch(l); m != nil {
				tok, err := os.ReadFile(m[1])
				if err != nil {
					t.Fatal(err)
				}
				p.token = strings.TrimSpace(string(tok))
			}
			if m := adminLine.FindStringSubmatch(l); m != nil {
				p.admin = m[1]
			}
		case <-deadline:
			t.Fatalf("citadel did not print its addresses within 60s:\n%s", p.stderr)
		}
	}
	return p
}

// waitReady polls the process's /readyz until it answers 200: login then
// has a gate to hand out and the gate sees a game node.
func (p *process) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(p.admin + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within 60s: %v\n%s", err, p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Must show 2: the built binary as a subprocess, driven by the client SDK,
// then SIGTERM: it exits 0 and the player's state is saved.
func TestBinaryRunsAndStopsCleanlyOnSIGTERM(t *testing.T) {
	dataDir := t.TempDir()
	p := startProcess(t, dataDir)
	p.waitReady(t)
	ctx := context.Background()
	lr, err := client.Register(ctx, p.loginURL, "carol", "password-carol")
	if err != nil {
		t.Fatalf("register on a ready server: %v", err)
	}
	c, err := client.Connect(ctx, lr, client.Options{Registry: clientRegistry(t), Transport: client.WebSocket})
	if err != nil {
		t.Fatal(err)
	}
	info := push[*services.PlayerInfo](t, c, nil)
	moved := call[*services.Moved](t, c, &services.Move{X: info.X + 4, Y: info.Y + 4})
	call[*services.Inventory](t, c, &services.PickUp{Item: "lantern", Count: 2})

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no exit within 30s of SIGTERM\n%s", p.stderr)
	}
	// The client was told why its session closed.
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client connection still open after the server exited")
	}
	if msg := c.Err(); msg == nil || !strings.Contains(msg.Error(), services.KickShutdown) {
		t.Fatalf("client saw %v, want a %s kick", msg, services.KickShutdown)
	}
	if logs := p.stderr.String(); strings.Contains(logs, "level=ERROR") {
		t.Fatalf("errors logged during a clean run:\n%s", logs)
	}

	// Everything was flushed: the player's last state is in the store.
	st, err := store.OpenBolt(filepath.Join(dataDir, "citadel.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec, err := st.Load(ctx, c.PlayerID())
	if err != nil {
		t.Fatal(err)
	}
	var saved sample.State
	if err := msgpack.Unmarshal(rec.Data, &saved); err != nil {
		t.Fatal(err)
	}
	if saved.X != moved.X || saved.Y != moved.Y || saved.Items["lantern"] != 2 {
		t.Fatalf("saved state %+v, want position %d,%d and 2 lanterns", saved, moved.X, moved.Y)
	}
}
