package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/citadel-go/citadel/client"
	"github.com/citadel-go/citadel/services"
)

// The bots play against a real server (the citadel binary, as a user would
// run it) and report what they did.
func TestBotsPlayAgainstTheServer(t *testing.T) {
	srv := startServer(t)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, transport := range []string{"tcp", "ws"} {
		out.Reset()
		sum, err := runBots(ctx, botConfig{LoginURL: srv, N: 20, Duration: 2 * time.Second, Transport: transport,
			Prefix: "t-" + transport, Password: "bot-password", Think: 20 * time.Millisecond, LoginConcurrency: 8}, &out)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s:\n%s", transport, out.String())
		if !sum.ok(20) || sum.Calls < 100 || sum.Errors != 0 || sum.P50 <= 0 || sum.Pushes == 0 {
			t.Fatalf("%s: summary %+v", transport, sum)
		}
		if lines := strings.Count(out.String(), "connected="); lines < 2 {
			t.Fatalf("%s: %d progress lines, want one a second", transport, lines)
		}
		if !strings.Contains(out.String(), "summary: bots=20 connected=20") {
			t.Fatalf("%s: no summary line", transport)
		}
	}
	// A second run logs the same accounts in instead of registering.
	sum, err := runBots(ctx, botConfig{LoginURL: srv, N: 5, Duration: time.Second, Transport: "tcp", Prefix: "t-tcp",
		Password: "bot-password", Think: 50 * time.Millisecond}, &out)
	if err != nil || !sum.ok(5) {
		t.Fatalf("relogin: %+v %v", sum, err)
	}
}

// startServer runs `go run ./cmd/citadel` style: the built binary with
// ephemeral ports; it returns the login URL.
func startServer(t *testing.T) string {
	t.Helper()
	bin := t.TempDir() + "/citadel"
	if out, err := exec.Command("go", "build", "-o", bin, "../citadel").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-data", t.TempDir(), "-bcrypt-cost", "4",
		"-embedded-nsqd-tcp", "127.0.0.1:0", "-embedded-nsqd-http", "127.0.0.1:0",
		"-embedded-lookupd-tcp", "127.0.0.1:0", "-embedded-lookupd-http", "127.0.0.1:0",
		"-login", "127.0.0.1:0", "-gate-tcp", "127.0.0.1:0", "-gate-ws", "127.0.0.1:0", "-admin", "127.0.0.1:0",
		"-log-level", "warn")
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server exit: %v\n%s", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Error("server did not stop")
		}
	})
	buf := make([]byte, 4096)
	var seen string
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		n, err := stdout.Read(buf)
		seen += string(buf[:n])
		if i := strings.Index(seen, "login HTTP"); i >= 0 {
			f := strings.Fields(seen[i:])
			if len(f) >= 3 && strings.Contains(seen[i:], "\n") {
				waitForGate(t, f[2])
				return f[2]
			}
		}
		if err != nil {
			break
		}
	}
	t.Fatalf("server did not start:\n%s\n%s", seen, stderr.String())
	return ""
}

// waitForGate waits until login can hand out a gate (the gate's first
// heartbeat has reached the login node).
func waitForGate(t *testing.T, loginURL string) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		_, err := client.Login(context.Background(), loginURL, "nobody", "nobody-pass")
		var le *client.LoginError
		if errors.As(err, &le) && le.Code != services.LoginCodeNoGate {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("login never found a gate")
}
