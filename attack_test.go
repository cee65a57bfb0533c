package citadel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/citadel-go/citadel/client"
	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/wire"
	"github.com/citadel-go/citadel/services"
	"github.com/vmihailenco/msgpack/v5"
)

// TestAttack is the attacker's suite (docs/security.md): hostile clients,
// forged NSQ messages and admin requests against the built binary over
// real sockets. Every attack asserts that (a) the server survives, (b) its
// RSS grows at most 64 MiB, (c) honest players logged in before it keep
// playing and (d) the offender is closed with a reason.
func TestAttack(t *testing.T) {
	t.Run("IdleConnections", testIdleConnections)
	t.Run("PreAuthHugeClaims", testPreAuthHugeClaims)
	t.Run("PostAuthHostilePayloads", testPostAuthHostilePayloads)
	t.Run("Flood", testFlood)
	t.Run("SlowHTTPOnWebSocketListener", testSlowHTTP)
	t.Run("ConnectionCaps", testConnectionCaps)
	t.Run("ClientThatNeverReads", testNeverReads)
	t.Run("ForgedNSQMessages", testForgedNSQ)
	t.Run("AdminWithoutToken", testAdminWithoutToken)
	t.Run("TradeWithoutConsent", testTradeWithoutConsent)
}

// underAttack starts a server and honest players and returns the attack's
// name; the checks (a)-(c) run when the subtest ends, also after Fatal.
func underAttack(t *testing.T, attack string, flags ...string) *target {
	tg := startTarget(t, flags...)
	players := playHonestly(t, tg, 4)
	memory := tg.memoryDuring(t, attack)
	t.Cleanup(func() {
		memory()
		tg.checkAlive(t, attack)
		players.check(t, attack)
	})
	return tg
}

// outcomes counts how offenders' connections ended.
type outcomes struct {
	mu    sync.Mutex
	count map[string]int
	wrong []string // endings other than the wanted one
	errs  []error
}

func (o *outcomes) add(what string, e ending, err error, ok func(ending) bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.count == nil {
		o.count = make(map[string]int)
	}
	if err != nil {
		o.count["error"]++
		o.errs = append(o.errs, fmt.Errorf("%s: %w", what, err))
		return
	}
	key := e.code
	if !e.closed {
		key = "still open"
	} else if key == "" {
		key = "closed without a reason"
	}
	o.count[key]++
	if !ok(e) {
		o.wrong = append(o.wrong, what+": "+e.String())
	}
}

// report logs the tally and fails the test for any offender not ended as
// wanted (d).
func (o *outcomes) report(t *testing.T, attack, want string) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	keys := make([]string, 0, len(o.count))
	for k := range o.count {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, o.count[k]))
	}
	t.Logf("%s: offenders' connections: %s", attack, strings.Join(parts, ", "))
	if len(o.errs) > 0 {
		t.Errorf("%s: %d offenders could not even attack (first: %v)", attack, len(o.errs), o.errs[0])
	}
	if len(o.wrong) > 0 {
		t.Errorf("%s: %d offenders were not %s (first: %s)", attack, len(o.wrong), want, o.wrong[0])
	}
}

func closedWith(code string) func(ending) bool {
	return func(e ending) bool { return e.closed && e.code == code }
}

// Attack 1: connections that go silent. An authenticated WebSocket past the
// idle timeout once made the gate re-read a failed connection until
// gorilla panicked and took the process down; a kicked TCP client that
// kept sending got a fresh session on the same connection.
func testIdleConnections(t *testing.T) {
	const attack = "idle connections"
	tg := underAttack(t, attack, "-heartbeat", "1s") // idle timeout: 3s; Auth timeout: 10s

	// A WebSocket that never authenticates: its timer runs meanwhile.
	silent, err := tg.dial(overWS)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	// TCP: authenticated, silent until kicked, then talking again with a
	// fresh ticket for the same account.
	slow, err := tg.ticket("slowpoke")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tg.dial(overTCP)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.auth(slow.Ticket); err != nil {
		t.Fatal(err)
	}
	again, err := tg.ticket("slowpoke")
	if err != nil {
		t.Fatal(err)
	}
	kick := conn.awaitKicked(ioTimeout)
	if kick.code != services.KickIdle {
		t.Errorf("%s: silent TCP client: %v, want kicked %s", attack, kick, services.KickIdle)
	}
	// Straight away, before the gate's close grace ends.
	conn.send(services.IDAuth, payload(1, mustMarshal(&services.Auth{Ticket: again.Ticket, Protocol: services.ProtocolVersion})))
	conn.send(services.IDPing, payload(2, mustMarshal(&services.Ping{ClientTime: 1})))
	conn.send(services.IDMove, payload(3, mustMarshal(&services.Move{X: 1, Y: 1})))
	if e := conn.awaitEnd(ioTimeout); !e.closed || e.frames > 0 {
		t.Errorf("%s: after its kick the TCP client got %d more frames (%v); want none, then the end", attack, e.frames, e)
	}
	conn.awaitReset(ioTimeout)
	// The ticket sent after the kick must still be unused: nothing on a
	// kicked connection is read as a new session.
	probe, err := tg.dial(overTCP)
	if err != nil {
		t.Fatal(err)
	}
	if err := probe.auth(again.Ticket); err != nil {
		t.Errorf("%s: the ticket sent on the kicked connection was used there: a fresh connection with it got %v", attack, err)
	}
	probe.Close()

	// WebSockets: authenticated, then silent past the idle timeout.
	var idlers []*rawConn
	for i := range 3 {
		lr, err := tg.ticket(fmt.Sprintf("idle%d", i))
		if err != nil {
			t.Fatal(err)
		}
		c, err := tg.dial(overWS)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.auth(lr.Ticket); err != nil {
			t.Fatal(err)
		}
		idlers = append(idlers, c)
	}
	for i, c := range idlers {
		if e := c.awaitEnd(ioTimeout); !e.closed || e.code != services.KickIdle {
			t.Errorf("%s: silent authenticated WebSocket %d: %v, want closed with %s", attack, i, e, services.KickIdle)
		}
	}
	if e := silent.awaitEnd(ioTimeout); !e.closed || e.code != services.KickNotAuthenticated {
		t.Errorf("%s: WebSocket without Auth: %v, want closed with %s", attack, e, services.KickNotAuthenticated)
	}
	// What the gate does after a kick comes after the close frame: wait
	// until it has let go of all of them.
	tg.waitSessions(t, 4)
}

// awaitKicked reads until a Kicked frame (or the end).
func (c *rawConn) awaitKicked(wait time.Duration) ending {
	deadline := time.Now().Add(wait)
	for {
		f, err := c.read(deadline)
		if err != nil {
			var ne net.Error
			return ending{closed: !(errors.As(err, &ne) && ne.Timeout()), err: err}
		}
		if f.ID == services.IDKicked {
			k := kickedOf(f)
			return ending{closed: true, code: k.Code, reason: k.Reason, frames: 1}
		}
	}
}

// awaitReset writes Pings until the server has closed the TCP connection
// for good (its kicked sessions get a grace to read their reason first).
func (c *rawConn) awaitReset(wait time.Duration) {
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if err := c.send(services.IDPing, payload(9, mustMarshal(&services.Ping{}))); err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Attack 2: before any ticket, Auth frames of ~26 bytes whose ticket claims
// 4 GiB; the decoder allocated what they claimed.
func testPreAuthHugeClaims(t *testing.T) {
	const attack = "pre-auth huge claims"
	tg := underAttack(t, attack)
	var o outcomes
	var wg sync.WaitGroup
	slots := make(chan struct{}, 20)
	for i := range 200 {
		transport := overTCP
		if i%10 == 9 {
			transport = overWS
		}
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			e, err := tg.deliver(authHugeStr, transport, "")
			o.add(fmt.Sprintf("%s over %s #%d", authHugeStr.name, transport, i), e, err, closedWith(services.KickBadPayload))
		}()
	}
	wg.Wait()
	o.report(t, attack, "closed with "+services.KickBadPayload)
}

// Attack 3: after login, frames of registered types whose fields claim
// huge bins, arrays and maps, or nest tens of thousands of levels deep.
func testPostAuthHostilePayloads(t *testing.T) {
	const attack = "post-auth hostile payloads"
	tg := underAttack(t, attack)
	var o outcomes
	var wg sync.WaitGroup
	slots := make(chan struct{}, 4)
	for k, h := range postAuthHostile {
		for _, transport := range []string{overTCP, overWS} {
			for rep := range 3 {
				// One account per connection: a second login would kick the first.
				account := fmt.Sprintf("evil%d%s%d", k, transport, rep)
				wg.Add(1)
				slots <- struct{}{}
				go func() {
					defer func() { <-slots; wg.Done() }()
					e, err := tg.deliver(h, transport, account)
					o.add(fmt.Sprintf("%s over %s #%d", h.name, transport, rep), e, err, closedWith(services.KickBadPayload))
				}()
			}
		}
	}
	wg.Wait()
	o.report(t, attack, "closed with "+services.KickBadPayload)
}

// Attack 4: 32 connections keep sending hostile frames for 10s while
// honest players play. The game node, in the same process, once stalled
// and the gate kicked everyone.
func testFlood(t *testing.T) {
	const attack = "flood"
	tg := underAttack(t, attack)
	kinds := append([]hostile{authHugeStr}, postAuthHostile...)
	var o outcomes
	var wg sync.WaitGroup
	end := time.Now().Add(10 * time.Second)
	for i := range 32 {
		transport := overTCP
		if i%2 == 1 {
			transport = overWS
		}
		account := fmt.Sprintf("flood%d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; time.Now().Before(end) && !tg.exited(); round++ {
				h := kinds[(i+round)%len(kinds)]
				e, err := tg.deliver(h, transport, account)
				var le *client.LoginError
				if errors.As(err, &le) && le.Code == services.LoginCodeRateLimited {
					continue // the account's logins are used up for now; the next round may be pre-auth
				}
				o.add(fmt.Sprintf("%s over %s", h.name, transport), e, err, func(e ending) bool { return e.closed && e.code != "" })
			}
		}()
	}
	wg.Wait()
	o.report(t, attack, "closed with a reason")
}

// Attack 5: HTTP clients holding the WebSocket listener: half a request
// header and then nothing, or idle keep-alive connections. Its HTTP server
// had no header or idle timeouts.
func testSlowHTTP(t *testing.T) {
	const attack = "slow HTTP on the WebSocket listener"
	tg := underAttack(t, attack)
	u, err := url.Parse(tg.gateWS)
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 400 {
		c, err := net.DialTimeout("tcp", u.Host, ioTimeout)
		if err != nil {
			t.Fatalf("%s: connection %d: %v", attack, i, err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(ioTimeout))
		if i < 300 {
			_, err = fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n", u.Path, u.Host)
		} else {
			// A whole request, answered; then the connection stays idle.
			if _, err = fmt.Fprintf(c, "GET /favicon.ico HTTP/1.1\r\nHost: %s\r\n\r\n", u.Host); err == nil {
				var resp *http.Response
				if resp, err = http.ReadResponse(bufio.NewReader(c), nil); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}
		if err != nil {
			t.Fatalf("%s: connection %d: %v", attack, i, err)
		}
	}
	start := time.Now()
	// The listener still serves a new player while they hang on.
	lr, err := tg.ticket("latecomer")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	late, err := client.Connect(ctx, lr, client.Options{Registry: clientRegistry(t), Transport: client.WebSocket, DialTimeout: ioTimeout})
	cancel()
	if err != nil {
		t.Errorf("%s: a new WebSocket player could not connect: %v", attack, err)
	} else {
		late.Close()
	}
	// Every one of them must be closed by the server.
	var wg sync.WaitGroup
	var mu sync.Mutex
	open, last := 0, time.Duration(0)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(25 * time.Second))
			_, err := io.Copy(io.Discard, c)
			var ne net.Error
			mu.Lock()
			defer mu.Unlock()
			if errors.As(err, &ne) && ne.Timeout() {
				open++
			} else {
				last = max(last, time.Since(start))
			}
		}()
	}
	wg.Wait()
	t.Logf("%s: %d of %d connections closed by the server, the last after %v", attack, len(conns)-open, len(conns), last.Round(time.Millisecond))
	if open > 0 {
		t.Errorf("%s: %d of %d connections still open 25s after they went silent", attack, open, len(conns))
	}
}

// Attack 5, continued: more connections than -max-conns and -max-pending
// allow. The extra ones are refused (closed, with Kicked server_full if the
// server says why) and counted, while honest players keep playing.
func testConnectionCaps(t *testing.T) {
	const attack = "connection caps"
	const maxConns, maxPending, honestN = 64, 32, 4
	tg := underAttack(t, attack, "-max-conns", fmt.Sprint(maxConns), "-max-pending", fmt.Sprint(maxPending), "-heartbeat", "1m")
	refusal := func(e ending) bool {
		return e.closed && (e.code == "" || e.code == "server_full")
	}

	// Not yet authenticated: 56 silent connections, 24 over the cap.
	var mu sync.Mutex
	var pending []*rawConn
	refused, ended := 0, 0
	const tries = 56
	for i := range tries {
		transport := overTCP
		if i%4 == 3 {
			transport = overWS
		}
		c, err := tg.dial(transport)
		if err != nil { // a WebSocket upgrade refused outright
			t.Logf("%s: pending connection %d over %s refused at dial: %v", attack, i, transport, err)
			mu.Lock()
			refused++
			ended++
			mu.Unlock()
			continue
		}
		pending = append(pending, c)
		go func() {
			e := c.awaitEnd(ioTimeout)
			mu.Lock()
			defer mu.Unlock()
			ended++
			if refusal(e) {
				refused++
			}
		}()
	}
	deadline := time.Now().Add(ioTimeout)
	for {
		mu.Lock()
		r, n := refused, ended
		mu.Unlock()
		if r >= tries-maxPending || n == tries || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	pendingRefused := refused
	mu.Unlock()
	for _, c := range pending {
		c.Close()
	}
	if tg.exited() { // its connections all closed without a reason
		t.Fatalf("%s: the server died", attack)
	}
	t.Logf("%s: %d of %d unauthenticated connections refused (cap %d)", attack, pendingRefused, tries, maxPending)
	if pendingRefused < tries-maxPending {
		t.Errorf("%s: %d of %d unauthenticated connections refused; with -max-pending %d at least %d must be",
			attack, pendingRefused, tries, maxPending, tries-maxPending)
	}
	tg.waitSessions(t, honestN)

	if tg.exited() {
		t.Fatalf("%s: the server died", attack)
	}

	// Authenticated: one after another until well past the total cap.
	const logins = 70
	accepted, loginRefused := 0, 0
	for i := range logins {
		lr, err := tg.ticket(fmt.Sprintf("crowd%d", i))
		if err != nil {
			t.Fatal(err)
		}
		c, err := tg.dial(overTCP)
		if err == nil {
			defer c.Close()
			err = c.auth(lr.Ticket)
		}
		var k *client.KickedError
		var ne net.Error
		if err == nil {
			accepted++
			go c.awaitEnd(10 * time.Minute) // reads pushes so it is not a slow client
		} else if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: login %d was neither accepted nor refused within %v", attack, i, ioTimeout)
			break
		} else if errors.As(err, &k) && k.Code != "server_full" {
			t.Errorf("%s: login %d: %v", attack, i, err)
		} else { // closed, with server_full or without a reason
			loginRefused++
		}
	}
	if tg.exited() {
		t.Fatalf("%s: the server died", attack)
	}
	t.Logf("%s: %d of %d logins accepted, %d refused, with %d honest players (cap %d)", attack, accepted, logins, loginRefused, honestN, maxConns)
	if accepted+honestN > maxConns || loginRefused < logins-(maxConns-honestN) {
		t.Errorf("%s: %d logins accepted next to %d honest players; -max-conns %d allows %d", attack, accepted, honestN, maxConns, maxConns-honestN)
	}
	counted, err := tg.metricSum("refused", "server_full")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: refusals counted in /metrics: %v", attack, counted)
	if counted < float64(pendingRefused+loginRefused) {
		t.Errorf("%s: /metrics counts %v refusals (counters named *refused* or *server_full*), the attacker saw %d",
			attack, counted, pendingRefused+loginRefused)
	}
}

// Attack 6: clients that log in, send ~60 KiB Echo requests (under the
// frame limit and the rate limit) and never read the replies. Four of them
// once cost the server ~100 MiB before they were kicked.
func testNeverReads(t *testing.T) {
	const attack = "client that never reads"
	tg := underAttack(t, attack)
	data := []byte(strings.Repeat("never read ", 60<<10/11))
	echo := mustMarshal(&services.Echo{Data: data})
	var wg sync.WaitGroup
	for i := range 4 {
		lr, err := tg.ticket(fmt.Sprintf("deaf%d", i))
		if err != nil {
			t.Fatal(err)
		}
		c, err := dialSmallWindow(tg.gateTCP)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.auth(lr.Ticket); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent := 0
			for end := time.Now().Add(10 * time.Second); sent < 600 && time.Now().Before(end); sent++ {
				if err := c.send(services.IDEcho, payload(byte(1+sent%127), echo)); err != nil {
					break // closed by the server
				}
				time.Sleep(12 * time.Millisecond) // ~80 frames/s: under the rate limit
			}
			e := c.awaitEnd(ioTimeout)
			t.Logf("%s: client %d sent %d Echo frames of %d KiB; %v after %d frames", attack, i, sent, len(data)>>10, e, e.frames)
			if !e.closed || e.code != "" && e.code != services.KickSlowClient {
				t.Errorf("%s: client %d: %v, want closed (with %s if a reason is given)", attack, i, e, services.KickSlowClient)
			}
		}()
	}
	wg.Wait()
}

// dialSmallWindow connects with a 4 KiB receive buffer, so what the client
// does not read piles up at the server quickly.
func dialSmallWindow(addr string) (*rawConn, error) {
	d := net.Dialer{Timeout: ioTimeout, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &rawConn{tcp: c, br: bufio.NewReaderSize(c, 4096)}, nil
}

// Attack 8: the admin HTTP API without a token: a plugin swap to a script
// outside the plugin folder, the same as a cross-site form POST, and the
// process's command line from pprof.
func testAdminWithoutToken(t *testing.T) {
	const attack = "admin without a token"
	pluginsDir := t.TempDir()
	tg := underAttack(t, attack, "-plugins", pluginsDir, "-build-plugins=false")
	marker, script := markerScript(t)
	swap := tg.admin + "/plugins/swap?" + url.Values{"name": {"combat"}, "path": {script}}.Encode()

	refused := func(what string, req *http.Request, want ...int) {
		t.Helper()
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Errorf("%s: %s: %v", attack, what, err)
			return
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		resp.Body.Close()
		for _, code := range want {
			if resp.StatusCode == code {
				return
			}
		}
		t.Errorf("%s: %s answered %s (%q), want %v", attack, what, resp.Status, body, want)
	}
	req, _ := http.NewRequest(http.MethodPost, swap, nil)
	refused("POST /plugins/swap without a token", req, http.StatusUnauthorized, http.StatusForbidden)
	form := url.Values{"name": {"combat"}, "path": {script}}.Encode()
	req, _ = http.NewRequest(http.MethodPost, tg.admin+"/plugins/swap", strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	refused("a cross-site form POST to /plugins/swap", req, http.StatusUnauthorized, http.StatusForbidden)
	req, _ = http.NewRequest(http.MethodGet, tg.admin+"/debug/pprof/cmdline", nil)
	refused("GET /debug/pprof/cmdline without a token", req, http.StatusUnauthorized)
	req, _ = http.NewRequest(http.MethodGet, tg.admin+"/healthz", nil)
	refused("GET /healthz without a token (health stays open)", req, http.StatusOK)

	// With the token, the API works, but still only swaps to builds inside
	// the plugin folder.
	tok, err := os.ReadFile(filepath.Join(tg.dataDir, "admin.token"))
	if err != nil {
		t.Errorf("%s: no admin token in the data directory: %v", attack, err)
	} else {
		bearer := "Bearer " + strings.TrimSpace(string(tok))
		req, _ = http.NewRequest(http.MethodGet, tg.admin+"/plugins", nil)
		req.Header.Set("Authorization", bearer)
		refused("GET /plugins with the token (a control)", req, http.StatusOK)
		req, _ = http.NewRequest(http.MethodPost, swap, nil)
		req.Header.Set("Authorization", bearer)
		refused("POST /plugins/swap with the token to a file outside the plugin folder", req,
			http.StatusBadRequest, http.StatusForbidden, http.StatusConflict)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("%s: the attacker's script ran: %s exists", attack, marker)
	}
}

// markerScript writes an executable script, outside any plugin folder,
// that creates the returned marker file when anything runs it.
func markerScript(t *testing.T) (marker, script string) {
	dir := t.TempDir()
	marker = filepath.Join(dir, "pwned")
	script = filepath.Join(dir, "evil-plugin.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho pwned > '"+marker+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return marker, script
}

// Attack 9: take another player's item without their consent. The sample
// game's old Trade (ID 1015) did exactly that; now a trade is an offer the
// other player accepts. The thief sends the retired message, accepts
// offers the victim never made, and accepts its own offer in the victim's
// name; the victim's items must not move.
func testTradeWithoutConsent(t *testing.T) {
	const attack = "trade without consent"
	tg := underAttack(t, attack)
	login := func(name string) (*rawConn, uint64) {
		lr, err := tg.ticket(name)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tg.dial(overTCP)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		if err := c.auth(lr.Ticket); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return c, lr.PlayerID
	}
	// call sends a request with seq and returns the reply with that seq.
	call := func(c *rawConn, seq byte, id framework.MsgID, msg any) (framework.MsgID, []byte) {
		t.Helper()
		if err := c.send(id, payload(seq, mustMarshal(msg))); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(ioTimeout)
		for {
			f, err := c.read(deadline)
			if err != nil {
				t.Fatalf("%s: no reply to message %d: %v", attack, id, err)
			}
			if s, body, err := wire.SplitPayload(f.Payload); err == nil && s == uint32(seq) {
				return f.ID, body
			}
		}
	}
	victim, victimID := login("victim")
	thief, thiefID := login("thief")
	apples := func() int32 {
		id, body := call(victim, 90, services.IDPickUp, &services.PickUp{Item: "apple", Count: 1})
		var inv services.Inventory
		if id != services.IDInventory || msgpack.Unmarshal(body, &inv) != nil {
			t.Fatalf("%s: PickUp answered with message %d", attack, id)
		}
		return inv.Items["apple"]
	}
	before := apples()
	expectError := func(what string, seq byte, id framework.MsgID, msg any, code string) {
		rid, body := call(thief, seq, id, msg)
		var e services.Error
		if rid != services.IDError || msgpack.Unmarshal(body, &e) != nil || code != "" && e.Code != code {
			t.Errorf("%s: %s answered with message %d %+v, want an error %s", attack, what, rid, e, code)
		}
	}
	expectError("an accept of an offer the victim never made", 1, services.IDTradeAccept,
		&services.TradeAccept{OfferID: 12345, From: victimID, Give: "bread", Take: "apple"}, "no_offer")
	offered := func() uint64 {
		id, body := call(thief, 2, services.IDTradeOffer, &services.TradeOffer{With: victimID, Give: "bread", Take: "apple"})
		var o services.TradeOffered
		if id != services.IDTradeOffered || msgpack.Unmarshal(body, &o) != nil {
			t.Fatalf("%s: TradeOffer answered with message %d", attack, id)
		}
		return o.OfferID
	}()
	expectError("an accept of the thief's own offer, in the victim's name", 3, services.IDTradeAccept,
		&services.TradeAccept{OfferID: offered, From: thiefID, Give: "apple", Take: "bread"}, "")
	// The retired consent-free Trade: an unknown message, closed with a reason.
	thief.send(1015, payload(4, mustMarshal(map[string]any{"With": victimID, "Give": "bread", "Take": "apple"})))
	if e := thief.awaitEnd(ioTimeout); !closedWith(services.KickUnknownMessage)(e) {
		t.Errorf("%s: the retired Trade message: %v, want closed with %s", attack, e, services.KickUnknownMessage)
	}
	if after := apples(); after != before+1 {
		t.Errorf("%s: the victim has %d apples after picking one up, had %d: items moved without consent", attack, after, before)
	}
	t.Logf("%s: the victim kept its %d apples", attack, before+1)
}
