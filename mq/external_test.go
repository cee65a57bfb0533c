package mq

import (
	"bufio"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// toolPath builds (or finds in the build cache) a go tool from go.mod.
func toolPath(t testing.TB, name string) string {
	t.Helper()
	out, err := exec.Command("go", "tool", "-n", name).Output()
	if err != nil {
		t.Fatalf("go tool -n %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

var listenRE = regexp.MustCompile(`(TCP|HTTP): listening on (\S+)`)

// startDaemon runs an NSQ daemon as a separate process and returns the
// addresses it reports listening on.
func startDaemon(t testing.TB, name string, args ...string) (tcp, httpAddr string) {
	t.Helper()
	cmd := exec.Command(toolPath(t, name), args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	addrs := make(chan [2]string, 4)
	var once sync.Once
	go func() {
		sc := bufio.NewScanner(stderr)
		var tcpA, httpA string
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				if m[1] == "TCP" {
					tcpA = m[2]
				} else {
					httpA = m[2]
				}
				if tcpA != "" && httpA != "" {
					once.Do(func() { addrs <- [2]string{tcpA, httpA} })
				}
			}
		}
	}()
	select {
	case a := <-addrs:
		return a[0], a[1]
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not report its addresses", name)
		return "", ""
	}
}

// External mode: the same Bus against real nsqd and nsqlookupd processes,
// discovering the nsqd through nsqlookupd.
func TestExternalClusterWithRealDaemons(t *testing.T) {
	if testing.Short() {
		t.Skip("starts NSQ daemons")
	}
	lookupTCP, lookupHTTP := startDaemon(t, "nsqlookupd", "--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0",
		"--broadcast-address=127.0.0.1")
	nsqdTCP, nsqdHTTP := startDaemon(t, "nsqd", "--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0",
		"--data-path="+t.TempDir(), "--broadcast-address=127.0.0.1", "--lookupd-tcp-address="+lookupTCP)
	_ = nsqdHTTP

	// Publisher knows the nsqd; consumer finds it only through nsqlookupd.
	pub := newTestBus(t, BusConfig{NSQD: []string{nsqdTCP}})
	sub := newTestBus(t, BusConfig{NSQD: []string{nsqdTCP}, Lookupd: []string{lookupHTTP}, LookupdPollInterval: time.Second})
	got := collect(t, sub, "ext", "c", SubscribeOptions{})
	for i := 0; i < 100; i++ {
		if err := pub.PublishAsync("ext", []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	seen := 0
	deadline := time.After(10 * time.Second)
	for seen < 100 {
		select {
		case <-got:
			seen++
		case <-deadline:
			t.Fatalf("received %d of 100 through the external cluster", seen)
		}
	}
	if s := sub.Stats(); s.Received != 100 {
		t.Fatalf("subscriber received %d", s.Received)
	}
}
