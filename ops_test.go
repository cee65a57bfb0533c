package citadel

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citadel-go/citadel/framework/store"
)

// runToExit runs the binary and waits for it to exit on its own, as it
// must when it refuses to start; it returns the exit status and stderr.
func runToExit(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, citadelBinary(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("citadel %q still running after 90s; it should have refused to start:\n%s", args, stderr.String())
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), stderr.String()
	case err != nil:
		t.Fatal(err)
	}
	return 0, stderr.String()
}

// realFlags are the flags `citadel -h` lists.
var (
	realFlagsOnce sync.Once
	realFlagSet   map[string]bool
)

func realFlags(t *testing.T) map[string]bool {
	t.Helper()
	realFlagsOnce.Do(func() {
		_, usage := runToExit(t, "-h")
		realFlagSet = map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^\s+(-[a-z][a-z-]*)`).FindAllStringSubmatch(usage, -1) {
			realFlagSet[m[1]] = true
		}
	})
	if len(realFlagSet) < 20 {
		t.Fatalf("citadel -h lists %d flags", len(realFlagSet))
	}
	return realFlagSet
}

// flagWord finds flag names in error text: a dash and a letter after a
// space, a parenthesis or a comma (not "--data-path" or a value like "-5").
var flagWord = regexp.MustCompile(`(?:^|[\s(,])(-[a-z][a-z-]*[a-z])`)

// expectRefused runs the binary, which must exit 1 without a panic and say
// every string in want on stderr, naming only flags that exist.
func expectRefused(t *testing.T, args []string, want ...string) string {
	t.Helper()
	code, stderr := runToExit(t, args...)
	if code != 1 || strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
		t.Fatalf("citadel %q: exit %d, want 1 and an error:\n%s", args, code, stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("citadel %q: stderr lacks %q:\n%s", args, w, stderr)
		}
	}
	flags := realFlags(t)
	for _, line := range strings.Split(stderr, "\n") {
		if !strings.HasPrefix(line, "citadel: ") {
			continue
		}
		for _, m := range flagWord.FindAllStringSubmatch(line, -1) {
			if !flags[m[1]] {
				t.Errorf("citadel %q names %s, which is no flag: %s", args, m[1], line)
			}
		}
	}
	return stderr
}

// baseArgs run every role on free ports in a fresh data directory.
func baseArgs(t *testing.T) []string {
	return append([]string{"-data", t.TempDir(), "-bcrypt-cost", "4", "-log-level", "warn"}, ephemeral...)
}

func TestHelpExitsZero(t *testing.T) {
	for _, arg := range []string{"-h", "-help"} {
		code, stderr := runToExit(t, arg)
		if code != 0 || !strings.Contains(stderr, "Usage of citadel") || !strings.Contains(stderr, "-max-frame") {
			t.Fatalf("citadel %s: exit %d\n%s", arg, code, stderr)
		}
	}
}

// A store that cannot be opened ends the start with an error naming the
// flag and the cause, exit status 1, no panic.
func TestUnopenableStoreExitsWithAnError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	locked := t.TempDir()
	held, err := store.OpenBolt(filepath.Join(locked, "citadel.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	closed := closedPort(t)
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"data is a file", []string{"-data", file}, []string{"-data " + file, "not a directory"}},
		{"bbolt file locked", []string{"-data", locked}, []string{"-data " + locked, "locked by another process"}},
		{"postgres unreachable", []string{"-store", "postgres", "-pg", "postgres://citadel:hunter2@" + closed + "/citadel"},
			[]string{"-pg:", "connection refused"}},
		{"postgres DSN malformed", []string{"-store", "postgres", "-pg", "postgres://citadel:hunter2@[::1/citadel"},
			[]string{"-pg:", "cannot parse"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			stderr := expectRefused(t, append(baseArgs(t), c.args...), c.want...)
			if strings.Contains(stderr, "hunter2") {
				t.Fatalf("the error shows the DSN's password:\n%s", stderr)
			}
		})
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

// TLS files are loaded at start: missing, unreadable or mismatched files
// stop it with an error naming both, instead of a listener on which every
// handshake fails.
func TestTLSFilesCheckedAtStart(t *testing.T) {
	dir := t.TempDir()
	certA, keyA, _ := selfSignedCert(t, filepath.Join(dir))
	other := filepath.Join(dir, "other")
	os.Mkdir(other, 0o700)
	_, keyB, _ := selfSignedCert(t, other)
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not PEM at all\n"), 0o600)
	missing := filepath.Join(dir, "missing.pem")
	for _, c := range []struct{ name, cert, key, cause string }{
		{"missing", missing, keyA, "no such file"},
		{"garbage", garbage, keyA, "failed to find any PEM data"},
		{"key of another certificate", certA, keyB, "private key does not match public key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			expectRefused(t, append(baseArgs(t), "-tls-cert", c.cert, "-tls-key", c.key),
				"-tls-cert "+c.cert, "-tls-key "+c.key, c.cause)
		})
	}
}

// A listener that cannot bind names the flag that sets its address, and no
// other.
func TestListenFailureNamesItsFlag(t *testing.T) {
	all := []string{"-embedded-nsqd-tcp", "-embedded-nsqd-http", "-embedded-lookupd-tcp", "-embedded-lookupd-http", "-login", "-admin",
		"-gate-tcp", "-gate-ws"}
	for _, flag := range all {
		t.Run(flag, func(t *testing.T) {
			busy, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer busy.Close()
			stderr := expectRefused(t, append(baseArgs(t), flag, busy.Addr().String()),
				busy.Addr().String(), "address already in use", "another address with "+flag+")")
			for _, line := range strings.Split(stderr, "\n") {
				for _, m := range flagWord.FindAllStringSubmatch(line, -1) {
					if strings.HasPrefix(line, "citadel: ") && m[1] != flag {
						t.Errorf("the error also names %s: %s", m[1], line)
					}
				}
			}
		})
	}
}

// Every flag value start cannot honour is refused with the flag, the value
// and what is allowed; none of them starts anything.
func TestBadFlagValuesRefused(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-max-frame", "-5"}, "-max-frame -5: want 256 to 524288 bytes"},
		{[]string{"-max-frame", "1048576"}, "-max-frame 1048576: want 256 to 524288 bytes"},
		{[]string{"-client-rate", "0"}, "-client-rate 0: want 1 to 1000000 frames per second"},
		{[]string{"-client-rate", "NaN"}, "-client-rate NaN: want 1 to 1000000"},
		{[]string{"-grace", "0s"}, "-grace 0s: want at least 1s"},
		{[]string{"-save-interval", "-1s"}, "-save-interval -1s: want at least 100ms"},
		{[]string{"-heartbeat", "0s"}, "-heartbeat 0s: want 1s to 1h"},
		{[]string{"-lease-ttl", "500ms"}, "-lease-ttl 500ms: want 1s to 1h"},
		{[]string{"-node-heartbeat", "10ms"}, "-node-heartbeat 10ms: want 100ms to 1m"},
		{[]string{"-member-ttl", "1s"}, "-member-ttl 1s: want at least twice -node-heartbeat (2s)"},
		{[]string{"-node-heartbeat", "2s", "-member-ttl", "3s"}, "-member-ttl 3s: want at least twice -node-heartbeat (4s)"},
		{[]string{"-tables-watch", "-1s"}, "-tables-watch -1s: want 0 (off) or at least 100ms"},
		{[]string{"-plugins-watch", "1ns"}, "-plugins-watch 1ns: want 0 (off) or at least 100ms"},
		{[]string{"-bcrypt-cost", "3"}, "-bcrypt-cost 3: want 4 to 31"},
		{[]string{"-bcrypt-cost", "32"}, "-bcrypt-cost 32: want 4 to 31"},
		{[]string{"-gogc", "0"}, "-gogc 0: want 1 to 100000"},
		{[]string{"-max-conns", "0"}, "-max-conns 0: want at least 1"},
		{[]string{"-max-pending", "20000"}, "-max-pending 20000: want 1 to -max-conns (10000)"},
		{[]string{"-auth-timeout", "0s"}, "-auth-timeout 0s: want more than 0"},
		{[]string{"-ws-handshake-timeout", "-1s"}, "-ws-handshake-timeout -1s: want more than 0"},
		{[]string{"-send-queue-bytes", "1000"}, "-send-queue-bytes 1000: want at least twice -max-frame (131072)"},
		{[]string{"-gogc", "-1"}, "-gogc -1: want 1 to 100000"},
		{[]string{"-log-level", "verbose"}, "-log-level verbose: want debug, info, warn or error"},
		{[]string{"-log-format", "xml"}, "-log-format xml: want text or json"},
		{[]string{"-role", "gate,gaem"}, "-role gaem: unknown role"},
		{[]string{"-store", "sqlite"}, "-store sqlite: want bbolt or postgres"},
		{[]string{"-store", "postgres"}, "-store postgres needs -pg DSN"},
		{[]string{"-pg", "postgres://localhost/x"}, "-pg is set but -store is bbolt"},
		{[]string{"-id", "a b"}, `-id "a b": ' ' is not allowed`},
		{[]string{"-data", ""}, "-data: empty"},
		{[]string{"-login", ""}, `-login "": want host:port`},
		{[]string{"-admin", "8080"}, `-admin "8080": want host:port`},
		{[]string{"-gate-tcp", "", "-gate-ws", ""}, "-gate-tcp and -gate-ws are both empty"},
		{[]string{"-gate-ws", "127.0.0.1:70000"}, `-gate-ws "127.0.0.1:70000": want host:port with a port from 0 to 65535`},
		{[]string{"-embedded-nsqd-tcp", "nohost"}, `-embedded-nsqd-tcp "nohost": want host:port`},
		{[]string{"-nsqd", "127.0.0.1:0"}, "-nsqd 127.0.0.1:0: want host:port with a port from 1 to 65535"},
		{[]string{"-nsqd-http", "127.0.0.1:4151"}, "-nsqd-http and -lookupd describe an external NSQ cluster"},
		{[]string{"-public-tcp", "play.example.com"}, "-public-tcp play.example.com: want host:port"},
		{[]string{"-public-ws", "http://play.example.com/ws"}, "-public-ws http://play.example.com/ws: want a WebSocket URL"},
		{[]string{"-ws-origin", "https://play.example.com/"}, "-ws-origin https://play.example.com/: want * or an origin"},
		{[]string{"-tls-cert", "cert.pem"}, `-tls-cert "cert.pem" and -tls-key "": give both`},
		{[]string{"-tables-watch", "1s"}, "-tables-watch needs -tables FILE"},
		{[]string{"stray"}, `unexpected argument "stray"`},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			args := append(baseArgs(t), c.args...)
			if c.args[0] == "stray" {
				args = c.args
			}
			expectRefused(t, args, c.want)
		})
	}
	// All problems at once, one line each.
	stderr := expectRefused(t, []string{"-max-frame", "0", "-client-rate", "0", "-heartbeat", "0s"})
	if n := strings.Count(stderr, "citadel: -"); n != 3 {
		t.Fatalf("%d problem lines, want 3:\n%s", n, stderr)
	}
}
