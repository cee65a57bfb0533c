package login

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/framework/ticket"
	"github.com/citadel-go/citadel/mq"
	"github.com/citadel-go/citadel/services"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

type env struct {
	t       *testing.T
	login   *framework.Node
	broker  *mq.Broker
	signer  *ticket.Signer
	store   store.Store
	svc     *Service
	srv     *httptest.Server
	metrics *prometheus.Registry
}

func logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func node(t *testing.T, b *mq.Broker, service, id string, meta map[string]string) *framework.Node {
	t.Helper()
	bc := b.BusConfig()
	n, err := framework.NewNode(framework.NodeConfig{Service: service, ID: id, Registry: framework.NewRegistry(),
		MQ: &bc, Logger: logger(), HeartbeatInterval: 50 * time.Millisecond, Meta: meta})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop(context.Background()) })
	return n
}

func newEnv(t *testing.T, tweak func(*Config)) *env {
	t.Helper()
	b, err := mq.StartBroker(mq.BrokerConfig{DataDir: t.TempDir(), TCPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoLookupd: true, Logger: logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	signer, _ := ticket.NewSigner(ticket.NewKey())
	reg := prometheus.NewRegistry()
	ln := node(t, b, services.Login, "login-1", nil)
	cfg := Config{Store: st, Tickets: signer, Node: ln, BcryptCost: 4, Metrics: reg}
	if tweak != nil {
		tweak(&cfg)
	}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, login: ln, broker: b, signer: signer, store: st, svc: svc, srv: srv, metrics: reg}
}

func (e *env) gate(id string, load int64) *framework.Node {
	g := node(e.t, e.broker, services.Gate, id, map[string]string{services.MetaTCP: "127.0.0.1:1" + id[len(id)-1:], services.MetaWS: "ws://x/" + id})
	g.Members().SetLoad(load)
	return g
}

func (e *env) post(path string, body any) (int, []byte) {
	e.t.Helper()
	var buf bytes.Buffer
	switch b := body.(type) {
	case string:
		buf.WriteString(b)
	default:
		json.NewEncoder(&buf).Encode(b)
	}
	resp, err := http.Post(e.srv.URL+path, "application/json", &buf)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	out.ReadFrom(resp.Body)
	return resp.StatusCode, out.Bytes()
}

func (e *env) expectError(path string, body any, status int, code string) {
	e.t.Helper()
	got, raw := e.post(path, body)
	var eb ErrorBody
	if err := json.Unmarshal(raw, &eb); err != nil || got != status || eb.Error.Code != code || eb.Error.Message == "" {
		e.t.Fatalf("POST %s %v: got %d %s, want %d %s", path, body, got, raw, status, code)
	}
}

func TestRegisterLoginAndTickets(t *testing.T) {
	e := newEnv(t, nil)
	e.expectError("/v1/register", Credentials{Name: "ada", Password: "correct horse"}, http.StatusServiceUnavailable, CodeNoGate)
	e.gate("gate-1", 0)
	deadline := time.Now().Add(5 * time.Second)
	var code int
	var raw []byte
	for time.Now().Before(deadline) {
		if code, raw = e.post("/v1/register", Credentials{Name: "Ada_1", Password: "correct horse"}); code != http.StatusServiceUnavailable {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	var reg Response
	if code != http.StatusCreated || json.Unmarshal(raw, &reg) != nil || reg.PlayerID == 0 || reg.Gate.Node != "gate-1" || reg.Gate.TCP == "" {
		t.Fatalf("register: %d %s", code, raw)
	}
	tk, err := e.signer.Verify(reg.Ticket, "gate-1", time.Now())
	if err != nil || tk.PlayerID != reg.PlayerID {
		t.Fatalf("register ticket: %+v %v", tk, err)
	}
	if until := time.Until(reg.ExpiresAt); until < 20*time.Second || until > 31*time.Second {
		t.Fatalf("ticket expires in %v, want ~30s", until)
	}

	code, raw = e.post("/v1/login", Credentials{Name: "ada_1", Password: "correct horse"}) // names are case-insensitive
	var lg Response
	if code != http.StatusOK || json.Unmarshal(raw, &lg) != nil || lg.PlayerID != reg.PlayerID || lg.Ticket == reg.Ticket {
		t.Fatalf("login: %d %s", code, raw)
	}

	e.expectError("/v1/register", Credentials{Name: "ADA_1", Password: "another pass"}, http.StatusConflict, CodeNameTaken)
	e.expectError("/v1/login", Credentials{Name: "ada_1", Password: "wrong password"}, http.StatusUnauthorized, CodeBadCredentials)
	e.expectError("/v1/login", Credentials{Name: "nobody", Password: "wrong password"}, http.StatusUnauthorized, CodeBadCredentials)
	e.expectError("/v1/register", Credentials{Name: "a", Password: "correct horse"}, http.StatusBadRequest, CodeBadRequest)
	e.expectError("/v1/register", Credentials{Name: "bad name!", Password: "correct horse"}, http.StatusBadRequest, CodeBadRequest)
	e.expectError("/v1/register", Credentials{Name: "shortpw", Password: "1234567"}, http.StatusBadRequest, CodeBadRequest)
	e.expectError("/v1/register", `{"name":"x"`, http.StatusBadRequest, CodeBadRequest)
	e.expectError("/v1/register", `{"name":"abc","password":"12345678","admin":true}`, http.StatusBadRequest, CodeBadRequest)
	e.expectError("/v1/register", string(bytes.Repeat([]byte("x"), 10000)), http.StatusBadRequest, CodeBadRequest)
	resp, _ := http.Get(e.srv.URL + "/v1/login")
	if resp.StatusCode != http.StatusMethodNotAllowed && resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /v1/login: %d", resp.StatusCode)
	}
	if v := requestCount(e.metrics, "bad_credentials"); v != 2 {
		t.Fatalf("bad_credentials counted %v, want 2", v)
	}
}

// A register refused for want of a gate creates no account: the client's
// retry with the same name succeeds once a gate is up, and the ticket is
// for that gate.
func TestRegisterWithoutGateChangesNothing(t *testing.T) {
	e := newEnv(t, nil)
	creds := Credentials{Name: "Early_Bird", Password: "correct horse"}
	e.expectError("/v1/register", creds, http.StatusServiceUnavailable, CodeNoGate)
	if _, err := e.store.Account(context.Background(), "early_bird"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("account after a no_gate register: %v, want none", err)
	}
	e.expectError("/v1/login", creds, http.StatusUnauthorized, CodeBadCredentials)

	e.gate("gate-1", 0)
	deadline := time.Now().Add(30 * time.Second)
	code, raw := e.post("/v1/register", creds)
	for code == http.StatusServiceUnavailable && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // the gate's first load report is on its way
		code, raw = e.post("/v1/register", creds)
	}
	var r Response
	if code != http.StatusCreated || json.Unmarshal(raw, &r) != nil || r.Gate.Node != "gate-1" {
		t.Fatalf("register once a gate is up: %d %s", code, raw)
	}
	if tk, err := e.signer.Verify(r.Ticket, "gate-1", time.Now()); err != nil || tk.PlayerID != r.PlayerID {
		t.Fatalf("ticket: %+v %v", tk, err)
	}
	acc, err := e.store.Account(context.Background(), "early_bird")
	if err != nil || acc.ID != r.PlayerID {
		t.Fatalf("account %+v %v, want player %d", acc, err, r.PlayerID)
	}
	if !e.svc.GateAvailable() {
		t.Fatal("GateAvailable false while a gate took a player")
	}
}

// A refused register does not count a player against the gate it would
// have gone to (the gate is chosen before the account is created): after a
// burst of name_taken answers, the next player still goes to the gate with
// the lower load.
func TestRefusedRegisterLeavesGateCountsAlone(t *testing.T) {
	e := newEnv(t, nil)
	// One load report each, at start: the counts on top of them are never
	// reset by a later report during the test.
	for id, load := range map[string]int64{"gate-1": 1, "gate-2": 3} {
		bc := e.broker.BusConfig()
		n, err := framework.NewNode(framework.NodeConfig{Service: services.Gate, ID: id, Registry: framework.NewRegistry(),
			MQ: &bc, Logger: logger(), HeartbeatInterval: time.Hour, Meta: map[string]string{services.MetaTCP: "127.0.0.1:1"}})
		if err != nil {
			t.Fatal(err)
		}
		n.Members().SetLoad(load)
		if err := n.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Stop(context.Background()) })
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		gates := e.login.Members().Alive(services.Gate)
		if len(gates) == 2 && gates[0].Load == 1 && gates[1].Load == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("login never saw both gates' loads: %+v", gates)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := e.store.CreateAccount(context.Background(), "taken", []byte("x")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		e.expectError("/v1/register", Credentials{Name: "taken", Password: "password1"}, http.StatusConflict, CodeNameTaken)
	}
	code, raw := e.post("/v1/register", Credentials{Name: "fresh", Password: "password1"})
	var r Response
	if code != http.StatusCreated || json.Unmarshal(raw, &r) != nil || r.Gate.Node != "gate-1" {
		t.Fatalf("after refused registers the next player went to %q (%d %s), want gate-1 (load 1 against 3)", r.Gate.Node, code, raw)
	}
}

// requestCount sums citadel_login_requests_total for one result.
func requestCount(reg *prometheus.Registry, result string) float64 {
	mfs, _ := reg.Gather()
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "citadel_login_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}

func TestRateLimits(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.IPRate, c.IPBurst = rate.Every(time.Hour), 6
		c.AccountRate, c.AccountBurst = rate.Every(time.Hour), 3
		c.Exempt = []netip.Prefix{} // limit loopback too
	})
	e.gate("gate-1", 0)
	// Per account: the 4th attempt on one name is refused even with the right password.
	for i := 0; i < 3; i++ {
		e.expectError("/v1/login", Credentials{Name: "victim", Password: fmt.Sprintf("guess-%04d", i)}, http.StatusUnauthorized, CodeBadCredentials)
	}
	e.expectError("/v1/login", Credentials{Name: "victim", Password: "guess-9999"}, http.StatusTooManyRequests, CodeRateLimited)
	// Per IP: 6 attempts in all from this address, then refused.
	e.expectError("/v1/login", Credentials{Name: "other1", Password: "guess-0000"}, http.StatusUnauthorized, CodeBadCredentials)
	e.expectError("/v1/login", Credentials{Name: "other2", Password: "guess-0000"}, http.StatusUnauthorized, CodeBadCredentials)
	e.expectError("/v1/register", Credentials{Name: "newbie", Password: "guess-0000"}, http.StatusTooManyRequests, CodeRateLimited)
}

func TestLeastLoadedGate(t *testing.T) {
	e := newEnv(t, nil)
	e.gate("gate-1", 50)
	e.gate("gate-2", 3)
	deadline := time.Now().Add(5 * time.Second)
	for {
		gates := e.login.Members().Alive(services.Gate)
		if len(gates) == 2 && gates[0].Load == 50 && gates[1].Load == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("login never saw both gates' loads: %+v", gates)
		}
		time.Sleep(10 * time.Millisecond)
	}
	code, raw := e.post("/v1/register", Credentials{Name: "first", Password: "password1"})
	var first Response
	if json.Unmarshal(raw, &first); code != http.StatusCreated || first.Gate.Node != "gate-2" {
		t.Fatalf("first player went to %q (%d %s), want the less loaded gate-2", first.Gate.Node, code, raw)
	}
	// A burst between heartbeats spreads: gate-2 gets load until it matches gate-1.
	counts := map[string]int{}
	for i := 0; i < 60; i++ {
		_, raw := e.post("/v1/register", Credentials{Name: fmt.Sprintf("burst%d", i), Password: "password1"})
		var r Response
		json.Unmarshal(raw, &r)
		counts[r.Gate.Node]++
	}
	if counts["gate-2"] < 40 || counts["gate-1"] == 0 && counts["gate-2"] != 60 {
		t.Fatalf("burst placement %v", counts)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("empty config accepted")
	}
	if err := validPassword(string([]byte{0xff, 0xfe, 'a', 'b', 'c', 'd', 'e', 'f', 'g'})); err == nil {
		t.Fatal("invalid UTF-8 accepted")
	}
}
