package citadel

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citadel-go/citadel/client"
	"github.com/citadel-go/citadel/framework/ticket"
	"github.com/citadel-go/citadel/mq"
	"github.com/citadel-go/citadel/mq/mqtest"
	"github.com/citadel-go/citadel/plugins/plugintest"
	"github.com/citadel-go/citadel/services"
)

// adminDo sends an admin request with the server's token as a bearer token.
func adminDo(t testing.TB, srv *server, method, path string, form url.Values) *http.Response {
	t.Helper()
	return adminRequest(t, srv.Admin, method, path, form, http.Header{"Authorization": {"Bearer " + srv.adminToken.value}})
}

// adminRequest sends an admin request with the given headers (the caller
// closes the body).
func adminRequest(t testing.TB, base, method, path string, form url.Values, h http.Header) *http.Response {
	t.Helper()
	u := base + path
	if form != nil {
		u += "?" + form.Encode()
	}
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// status sends a request and returns its status and body.
func status(t testing.TB, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func basic(token string) string {
	req, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	req.SetBasicAuth("ops", token)
	return req.Header.Get("Authorization")
}

// Without the admin token nothing changes: plugin swaps and rollbacks and
// table reloads are refused (401), also with a wrong token; a cross-site
// form POST carrying the right Basic credentials is refused (403); pprof
// and nsqadmin need the token; health and metrics stay open.
func TestAdminNeedsTheToken(t *testing.T) {
	bins := plugintest.Build(t)
	dir := t.TempDir()
	plugintest.Install(t, dir, "combat", "v1", bins.CombatV1)
	a, b := exportTables(t, 130, 12), exportTables(t, 131, 13)
	tablesPath := filepath.Join(t.TempDir(), "tables.bin")
	replaceFile(t, tablesPath, a.data)
	srv := startTestServer(t, func(c *config) { c.PluginsDir, c.TablesPath = dir, tablesPath })
	plugintest.Install(t, dir, "combat", "v2", bins.CombatV2)
	token := srv.adminToken.value
	pluginVersion := func() string {
		t.Helper()
		code, r := adminPlugins(t, srv, http.MethodGet, "/plugins", nil)
		if code != http.StatusOK || len(r.Nodes) != 1 || len(r.Nodes[0].Plugins) != 1 {
			t.Fatalf("GET /plugins: %d %+v", code, r)
		}
		return r.Nodes[0].Plugins[0].Version
	}
	tablesVersion := func() string {
		t.Helper()
		code, r := adminTables(t, srv, http.MethodGet, "/tables")
		if code != http.StatusOK || len(r.Nodes) != 1 {
			t.Fatalf("GET /tables: %d %+v", code, r)
		}
		return r.Nodes[0].Version
	}
	// v2 runs, so a rollback would change something; the tables file
	// changes, so a reload would.
	if code, r := adminPlugins(t, srv, http.MethodPost, "/plugins/swap", url.Values{"name": {"combat"}, "path": {"v2"}}); code != http.StatusOK {
		t.Fatalf("swap with the token: %d %+v", code, r)
	}
	replaceFile(t, tablesPath, b.data)

	form := url.Values{"name": {"combat"}, "path": {"v1"}}
	changes := []struct{ path, query string }{
		{"/plugins/swap", form.Encode()},
		{"/plugins/rollback", "name=combat"},
		{"/tables/reload", ""},
	}
	for _, c := range changes {
		for _, tc := range []struct {
			name   string
			header http.Header
			want   int
		}{
			{"no token", nil, http.StatusUnauthorized},
			{"a wrong token", http.Header{"Authorization": {"Bearer " + strings.Repeat("0", len(token))}}, http.StatusUnauthorized},
			{"a token prefix", http.Header{"Authorization": {"Bearer " + token[:len(token)-1]}}, http.StatusUnauthorized},
			{"Basic credentials, same site", http.Header{"Authorization": {basic(token)}}, http.StatusUnauthorized},
			// What a page on another site makes a browser send: a simple
			// form POST, with the credentials the browser has cached.
			{"a cross-site form POST", http.Header{"Authorization": {basic(token)}, "Origin": {"http://evil.example"},
				"Sec-Fetch-Site": {"cross-site"}, "Content-Type": {"application/x-www-form-urlencoded"}}, http.StatusForbidden},
			{"Origin of another site", http.Header{"Authorization": {basic(token)}, "Origin": {"http://evil.example"}}, http.StatusForbidden},
			{"Origin null", http.Header{"Authorization": {basic(token)}, "Origin": {"null"}}, http.StatusForbidden},
			{"another site of the same domain", http.Header{"Authorization": {basic(token)}, "Sec-Fetch-Site": {"same-site"}}, http.StatusForbidden},
			{"the bearer token from another site", http.Header{"Authorization": {"Bearer " + token}, "Origin": {"http://evil.example"}}, http.StatusForbidden},
		} {
			// The form both in the URL and in the body: either would do.
			req, _ := http.NewRequest(http.MethodPost, srv.Admin+c.path+"?"+c.query, strings.NewReader(c.query))
			for k, v := range tc.header {
				req.Header[k] = v
			}
			code, body := status(t, req)
			if code != tc.want {
				t.Errorf("POST %s with %s: %d %q, want %d", c.path, tc.name, code, body, tc.want)
			}
			if code == http.StatusUnauthorized && !strings.Contains(body, srv.adminToken.from) {
				t.Errorf("POST %s with %s: the 401 does not say where the token is: %q", c.path, tc.name, body)
			}
			if v := pluginVersion(); v != "v2" {
				t.Fatalf("after POST %s with %s the plugin is %s, want v2 still", c.path, tc.name, v)
			}
			if v := tablesVersion(); v != a.version {
				t.Fatalf("after POST %s with %s the tables are %s, want %s still", c.path, tc.name, v, a.version)
			}
		}
		// No CORS preflight is answered: a browser never sends the real request.
		req, _ := http.NewRequest(http.MethodOptions, srv.Admin+c.path, nil)
		req.Header.Set("Origin", "http://evil.example")
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight of %s answered: %s %v", c.path, resp.Status, resp.Header)
		}
	}
	// GET does not change anything either.
	if resp := adminDo(t, srv, http.MethodGet, "/plugins/rollback", url.Values{"name": {"combat"}}); resp.StatusCode == http.StatusOK {
		t.Errorf("GET /plugins/rollback: %s", resp.Status)
	}
	if resp := adminDo(t, srv, http.MethodGet, "/tables/reload", nil); resp.StatusCode == http.StatusOK {
		t.Errorf("GET /tables/reload: %s", resp.Status)
	}
	// With the token, from the command line, the same requests work.
	if code, r := adminPlugins(t, srv, http.MethodPost, "/plugins/rollback", url.Values{"name": {"combat"}}); code != http.StatusOK || r.Nodes[0].Plugins[0].Version != "v1" {
		t.Fatalf("rollback with the token: %d %+v", code, r)
	}
	if code, r := adminTables(t, srv, http.MethodPost, "/tables/reload"); code != http.StatusOK || r.Nodes[0].Version != b.version {
		t.Fatalf("reload with the token: %d %+v", code, r)
	}

	// Reading needs the token too (Bearer, or Basic for browsers).
	for _, path := range []string{"/debug/pprof/cmdline", "/debug/pprof/", "/debug/pprof/heap", "/plugins", "/tables", "/nsqadmin/"} {
		for _, tc := range []struct {
			name   string
			header string
			want   int
		}{
			{"no token", "", http.StatusUnauthorized},
			{"a wrong token", "Bearer nope-nope-nope-nope", http.StatusUnauthorized},
			{"a wrong Basic password", basic("nope-nope-nope-nope"), http.StatusUnauthorized},
			{"the token", "Bearer " + token, http.StatusOK},
			{"Basic credentials", basic(token), http.StatusOK},
		} {
			req, _ := http.NewRequest(http.MethodGet, srv.Admin+path, nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			if code, body := status(t, req); code != tc.want {
				t.Errorf("GET %s with %s: %d %.200q, want %d", path, tc.name, code, body, tc.want)
			}
		}
	}
	resp := adminRequest(t, srv.Admin, http.MethodGet, "/nsqadmin/", nil, nil)
	resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("nsqadmin's 401 does not ask a browser for credentials: %v", resp.Header)
	}
	// nsqadmin's own pages change state with the browser's Basic
	// credentials: same-origin requests pass, cross-site ones do not.
	same := http.Header{"Authorization": {basic(token)}, "Origin": {srv.Admin}, "Sec-Fetch-Site": {"same-origin"},
		"Content-Type": {"application/json"}}
	req, _ := http.NewRequest(http.MethodPost, srv.Admin+"/nsqadmin/api/topics", strings.NewReader(`{"topic":"guarded","channel":"c"}`))
	req.Header = same.Clone()
	if code, body := status(t, req); code == http.StatusUnauthorized || code == http.StatusForbidden {
		t.Errorf("same-origin nsqadmin request with Basic credentials: %d %q", code, body)
	}
	for _, method := range []string{http.MethodPost, http.MethodDelete} {
		req, _ := http.NewRequest(method, srv.Admin+"/nsqadmin/api/topics/guarded", strings.NewReader(`{"action":"empty"}`))
		req.Header = same.Clone()
		req.Header.Set("Origin", "http://evil.example")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		if code, body := status(t, req); code != http.StatusForbidden {
			t.Errorf("cross-site %s to nsqadmin: %d %q, want 403", method, code, body)
		}
	}

	// Open: probes and scrapers.
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		req, _ := http.NewRequest(http.MethodGet, srv.Admin+path, nil)
		if code, body := status(t, req); code != http.StatusOK {
			t.Errorf("GET %s without a token: %d %.200q", path, code, body)
		}
	}
}

// The start-up files: made once, mode 0600, named (never shown) at start;
// secrets from the environment win, and no secret is ever in the
// process's arguments. -ticket-key no longer exists.
func TestSecretsNeverOnTheCommandLine(t *testing.T) {
	// From files, made on the first start.
	dataDir := t.TempDir()
	p := startProcess(t, dataDir)
	var values []string
	for _, name := range []string{"ticket.key", "cluster.key", "admin.token"} {
		path := filepath.Join(dataDir, name)
		st, err := os.Stat(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, st.Mode().Perm())
		}
		b, _ := os.ReadFile(path)
		values = append(values, strings.TrimSpace(string(b)))
		if !strings.Contains(p.stdout.String(), path) {
			t.Errorf("the start-up lines do not name %s:\n%s", path, p.stdout)
		}
	}
	if _, err := mq.ParseKeyring(values[1]); err != nil {
		t.Fatalf("cluster.key: %v", err)
	}
	if p.token != values[2] {
		t.Fatalf("the admin token line names a file holding %q, want the admin token", p.token)
	}
	for _, v := range values {
		if strings.Contains(p.stdout.String()+p.stderr.String(), strings.Fields(v)[len(strings.Fields(v))-1]) {
			t.Errorf("a secret was printed:\n%s\n%s", p.stdout, p.stderr)
		}
	}

	// From the environment.
	ticketKey, clusterKey, adminToken := hex.EncodeToString(ticket.NewKey()), mq.GenerateKeyring(), "env-admin-token-"+hex.EncodeToString(ticket.NewKey()[:8])
	envDir := t.TempDir()
	q := startProcessEnv(t, envDir, []string{envTicketKey + "=" + ticketKey, envClusterKey + "=" + clusterKey, envAdminToken + "=" + adminToken})
	secrets := []string{ticketKey, strings.Fields(clusterKey)[1], adminToken}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(q.cmd.Process.Pid) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, q.admin+"/debug/pprof/cmdline", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	code, pprofCmdline := status(t, req)
	if code != http.StatusOK {
		t.Fatalf("pprof cmdline with the token from %s: %d %s", envAdminToken, code, pprofCmdline)
	}
	for _, s := range secrets {
		for what, text := range map[string]string{"/proc/PID/cmdline": string(cmdline), "/debug/pprof/cmdline": pprofCmdline,
			"the start-up lines": q.stdout.String(), "the log": q.stderr.String()} {
			if strings.Contains(text, s) {
				t.Errorf("a secret is in %s: %q", what, text)
			}
		}
	}
	for _, name := range []string{"ticket.key", "cluster.key", "admin.token"} {
		if _, err := os.Stat(filepath.Join(envDir, name)); err == nil {
			t.Errorf("%s was made although the environment gave the secret", name)
		}
	}
	// Login signs tickets with the key from the environment.
	var lr *services.LoginResponse
	for deadline := time.Now().Add(10 * time.Second); ; {
		if lr, err = client.Register(context.Background(), q.loginURL, "envuser", "password-env"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("register: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // login waits for a gate heartbeat
	}
	signer, _ := ticket.NewSigner(mustHex(t, ticketKey))
	if _, err := signer.Verify(lr.Ticket, lr.Gate.Node, time.Now()); err != nil {
		t.Fatalf("the ticket is not signed with %s: %v", envTicketKey, err)
	}

	// The old flag is gone: its value would be in argv.
	out, err := exitOf(t, nil, "-data", t.TempDir(), "-ticket-key", ticketKey)
	if err == nil || !strings.Contains(out, "flag provided but not defined: -ticket-key") {
		t.Fatalf("-ticket-key: %v\n%s", err, out)
	}
}

// A process that joins a cluster (-nsqd) without its cluster key stops at
// once and says what to do; a damaged key file is named.
func TestJoiningAClusterNeedsTheClusterKey(t *testing.T) {
	out, err := exitOf(t, nil, append([]string{"-role", "game", "-data", t.TempDir(), "-nsqd", "127.0.0.1:1"}, ephemeral...)...)
	for _, want := range []string{"Every process of a cluster needs the same cluster key", "copy cluster.key",
		"-cluster-key-file FILE", envClusterKey} {
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("joining without a cluster key: %v, want an error with %q:\n%s", err, want, out)
		}
	}

	bad := filepath.Join(t.TempDir(), "cluster.key")
	os.WriteFile(bad, []byte("1 not-hex\n"), 0o600)
	cfg := testConfig(t)
	cfg.Roles, cfg.NSQD, cfg.ClusterKeyFile = []string{services.Game}, []string{"127.0.0.1:1"}, bad
	if _, err := start(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "cluster key from "+bad) {
		t.Fatalf("a damaged cluster key file: %v", err)
	}
}

// Secret files: made with mode 0600; the environment wins; files others
// can read are used with a warning; empty, short or non-hex secrets are
// refused with the place they came from.
func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfg := config{DataDir: dir, TicketKeyFile: filepath.Join(dir, "ticket.key"), AdminTokenFile: filepath.Join(dir, "admin.token"),
		ClusterKeyFile: filepath.Join(dir, "cluster.key")}

	key, from, err := loadTicketKey(cfg, log)
	if err != nil || from.from != cfg.TicketKeyFile {
		t.Fatalf("first ticket key: %v %+v", err, from)
	}
	if again, _, _ := loadTicketKey(cfg, log); !bytes.Equal(again, key) {
		t.Fatal("the ticket key changed between starts")
	}
	if st, _ := os.Stat(cfg.TicketKeyFile); st.Mode().Perm() != 0o600 {
		t.Fatalf("ticket.key mode %v", st.Mode().Perm())
	}
	env := hex.EncodeToString(ticket.NewKey())
	cfg.TicketKey = env
	if k, from, err := loadTicketKey(cfg, log); err != nil || hex.EncodeToString(k) != env || from.from != "the environment variable "+envTicketKey {
		t.Fatalf("ticket key from the environment: %v %+v", err, from)
	}
	cfg.TicketKey = ""

	os.Chmod(cfg.TicketKeyFile, 0o644)
	if _, _, err := loadTicketKey(cfg, log); err != nil || !strings.Contains(logs.String(), "can be read or changed by other users; chmod 600") {
		t.Fatalf("a file others can read: %v, log %q", err, logs.String())
	}

	for _, tc := range []struct {
		name, content, want string
		load                func() error
	}{
		{"empty ticket key", "\n", "is empty", func() error { _, _, err := loadTicketKey(cfg, log); return err }},
		{"ticket key not hex", "zz\n", "ticket key from " + cfg.TicketKeyFile + " is not hex", func() error { _, _, err := loadTicketKey(cfg, log); return err }},
		{"short ticket key", "abcd\n", "has 2 bytes; at least 32", func() error { _, _, err := loadTicketKey(cfg, log); return err }},
	} {
		os.WriteFile(cfg.TicketKeyFile, []byte(tc.content), 0o600)
		if err := tc.load(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	os.WriteFile(cfg.AdminTokenFile, []byte("short\n"), 0o600)
	if _, err := loadAdminToken(cfg, log); err == nil || !strings.Contains(err.Error(), "admin token from "+cfg.AdminTokenFile+" has 5 characters") {
		t.Errorf("a short admin token: %v", err)
	}
	cfg.AdminToken = "an-admin-token-from-the-environment"
	if s, err := loadAdminToken(cfg, log); err != nil || s.value != cfg.AdminToken {
		t.Errorf("admin token from the environment: %v %+v", err, s)
	}
	// The embedded NSQ makes the cluster key; the environment wins.
	if _, from, err := loadClusterKey(cfg, log); err != nil || from.from != cfg.ClusterKeyFile {
		t.Fatalf("cluster key: %v %+v", err, from)
	}
	cfg.ClusterKey = mq.GenerateKeyring()
	if k, from, err := loadClusterKey(cfg, log); err != nil || k.SigningKeyID() != 1 || !strings.Contains(from.from, envClusterKey) {
		t.Fatalf("cluster key from the environment: %v %+v", err, from)
	}
}

// exitOf runs the binary, expecting it to exit by itself (within 60s), and
// returns what it printed and how it exited.
func exitOf(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, citadelBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("citadel %v still ran after 60s:\n%s", args, out)
	}
	return string(out), err
}

// Every role against an external nsqd that requires TLS with client
// certificates and authentication, configured the way the flags do
// (-nsq-tls, -nsq-ca-file, -nsq-cert-file, -nsq-key-file, the auth secret):
// players log in and play.
func TestExternalNSQWithTLSAndAuth(t *testing.T) {
	dir := t.TempDir()
	ca := mqtest.NewCA(t)
	caFile := ca.WriteCA(t, dir)
	serverCert, serverKey := ca.Issue(t, dir, "nsqd")
	clientCert, clientKey := ca.Issue(t, dir, "citadel")
	const secret = "nsq-auth-secret-for-citadel"
	var authed atomic.Int64
	authd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("secret") != secret || q.Get("tls") != "true" || q.Get("common_name") != "citadel" {
			http.Error(w, "denied", http.StatusForbidden)
			return
		}
		authed.Add(1)
		io.WriteString(w, `{"ttl": 3600, "identity": "citadel", "authorizations": [{"permissions": ["subscribe", "publish"], "topic": "^citadel\\..*", "channels": [".*"]}]}`)
	}))
	defer authd.Close()
	nsqdTCP, nsqdHTTP := mqtest.Daemon(t, "nsqd", "--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0",
		"--https-address=127.0.0.1:0", "--data-path="+t.TempDir(), "--broadcast-address=127.0.0.1",
		"--tls-cert="+serverCert, "--tls-key="+serverKey, "--tls-required=tcp-https",
		"--tls-client-auth-policy=require-verify", "--tls-root-ca-file="+caFile,
		"--auth-http-address="+strings.TrimPrefix(authd.URL, "http://"))
	keyFile := filepath.Join(dir, "cluster.key")
	os.WriteFile(keyFile, []byte(mq.GenerateKeyring()), 0o600)
	secretFile := filepath.Join(dir, "nsq.secret")
	os.WriteFile(secretFile, []byte(secret+"\n"), 0o600)

	srv := startTestServer(t, func(c *config) {
		c.NSQD, c.NSQDHTTPExt, c.ClusterKeyFile = []string{nsqdTCP}, []string{nsqdHTTP}, keyFile
		c.NSQTLS, c.NSQCAFile, c.NSQCertFile, c.NSQKeyFile, c.NSQAuthSecretFile = true, caFile, clientCert, clientKey, secretFile
	})
	c := player(t, srv, "tlsplayer", client.TCP, true)
	if r := call[*services.Echo](t, c, &services.Echo{Data: []byte("through TLS nsqd")}); string(r.Data) != "through TLS nsqd" {
		t.Fatalf("echo: %q", r.Data)
	}
	if authed.Load() == 0 {
		t.Fatal("nsqd never asked the auth server")
	}

	// The TLS and auth settings are for an external nsqd only.
	cfg := testConfig(t)
	cfg.NSQTLS = true
	if _, err := start(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "for an external NSQ cluster") {
		t.Fatalf("-nsq-tls with the embedded NSQ: %v", err)
	}
	cfg = testConfig(t)
	cfg.NSQCAFile = caFile
	if _, err := start(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "need -nsq-tls") {
		t.Fatalf("-nsq-ca-file without -nsq-tls: %v", err)
	}
}
