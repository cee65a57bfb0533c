package mq

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citadel-go/citadel/mq/mqtest"
)

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// External mode: the same Bus against real nsqd and nsqlookupd processes,
// discovering the nsqd through nsqlookupd.
func TestExternalClusterWithRealDaemons(t *testing.T) {
	if testing.Short() {
		t.Skip("starts NSQ daemons")
	}
	lookupTCP, lookupHTTP := mqtest.Daemon(t, "nsqlookupd", "--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0",
		"--broadcast-address=127.0.0.1")
	nsqdTCP, nsqdHTTP := mqtest.Daemon(t, "nsqd", "--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0",
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
	ca := mqtest.NewCA(t)
	caFile := ca.WriteCA(t, dir)
	serverCert, serverKey := ca.Issue(t, dir, "nsqd")
	clientCertFile, clientKeyFile := ca.Issue(t, dir, "citadel")

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

	nsqdTCP, nsqdHTTP := mqtest.Daemon(t, "nsqd", "--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0",
		"--https-address=127.0.0.1:0", "--data-path="+t.TempDir(), "--broadcast-address=127.0.0.1",
		"--tls-cert="+serverCert, "--tls-key="+serverKey, "--tls-required=tcp-https",
		"--tls-client-auth-policy=require-verify", "--tls-root-ca-file="+caFile,
		"--auth-http-address="+strings.TrimPrefix(authd.URL, "http://"))

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM)
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
