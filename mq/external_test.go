package mq

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
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

// testCA issues certificates for 127.0.0.1 (server and client use).
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "citadel test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a certificate for 127.0.0.1 and its key to dir and returns
// their paths.
func (ca *testCA) issue(t testing.TB, dir, name string, serial int64) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// An external nsqd that requires TLS (with client certificates) and
// authentication: a Bus with BusConfig.TLS and AuthSecret publishes and
// consumes; without TLS, without its client certificate, without the
// secret, with a wrong one or without trusting nsqd's certificate it
// cannot publish.
func TestExternalClusterWithTLSAndAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("starts NSQ daemons")
	}
	dir := t.TempDir()
	ca := newTestCA(t)
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, ca.pem, 0o600)
	serverCert, serverKey := ca.issue(t, dir, "nsqd", 2)
	clientCertFile, clientKeyFile := ca.issue(t, dir, "citadel", 3)

	// nsqd asks this server whether a secret may publish and subscribe.
	const secret = "test-auth-secret"
	var authMu sync.Mutex
	var authQueries []url.Values
	authd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		authMu.Lock()
		authQueries = append(authQueries, r.URL.Query())
		authMu.Unlock()
		if r.URL.Path != "/auth" || r.URL.Query().Get("secret") != secret || r.URL.Query().Get("tls") != "true" {
			http.Error(w, "denied", http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ttl": 3600, "identity": "citadel", "authorizations": [{"permissions": ["subscribe", "publish"], "topic": ".*", "channels": [".*"]}]}`)
	}))
	defer authd.Close()

	nsqdTCP, nsqdHTTP := startDaemon(t, "nsqd", "--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0",
		"--https-address=127.0.0.1:0", "--data-path="+t.TempDir(), "--broadcast-address=127.0.0.1",
		"--tls-cert="+serverCert, "--tls-key="+serverKey, "--tls-required=tcp-https",
		"--tls-client-auth-policy=require-verify", "--tls-root-ca-file="+caFile,
		"--auth-http-address="+strings.TrimPrefix(authd.URL, "http://"))

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.pem)
	clientCert, err := tls.LoadX509KeyPair(clientCertFile, clientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	good := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientCert}}

	pub := newTestBus(t, BusConfig{NSQD: []string{nsqdTCP}, TLS: good, AuthSecret: secret})
	sub := newTestBus(t, BusConfig{NSQD: []string{nsqdTCP}, NSQDHTTP: []string{nsqdHTTP}, TLS: good, AuthSecret: secret})
	got := collect(t, sub, "secure", "c", SubscribeOptions{})
	for i := 0; i < 10; i++ {
		if err := pub.Publish("secure", []byte{byte(i)}); err != nil {
			t.Fatalf("publish over TLS with the secret: %v", err)
		}
	}
	for i := 0; i < 10; i++ {
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatalf("received %d of 10 over TLS", i)
		}
	}
	authMu.Lock()
	if len(authQueries) == 0 || authQueries[0].Get("tls") != "true" || authQueries[0].Get("common_name") != "citadel" {
		t.Errorf("nsqd's auth queries: %v, want TLS with the client certificate's name", authQueries)
	}
	authMu.Unlock()

	for _, tc := range []struct {
		name, want string
		cfg        BusConfig
	}{
		{"no TLS", "TLS required", BusConfig{AuthSecret: secret}},
		{"no client certificate", "certificate required", BusConfig{TLS: &tls.Config{RootCAs: pool}, AuthSecret: secret}},
		{"nsqd's certificate not trusted", "unknown authority", BusConfig{TLS: &tls.Config{Certificates: []tls.Certificate{clientCert}}, AuthSecret: secret}},
		{"no secret", "Auth Required", BusConfig{TLS: good}},
		{"a wrong secret", "AUTH failed", BusConfig{TLS: good, AuthSecret: "guess"}},
	} {
		tc.cfg.NSQD = []string{nsqdTCP}
		bus := newTestBus(t, tc.cfg)
		if err := bus.Publish("secure", []byte("x")); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: publish: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	select {
	case m := <-got:
		t.Fatalf("a refused publisher's message arrived: %q", m)
	case <-time.After(200 * time.Millisecond):
	}
}
