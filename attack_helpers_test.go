package citadel

// The attacker's tools for attack_test.go: a citadel process watched for
// memory and liveness, honest players that keep playing through an attack,
// and raw client connections whose frames are written by hand (the NSQ
// forgeries are in attack_nsq_test.go). See docs/security.md.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/citadel-go/citadel/client"
	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/wire"
	"github.com/citadel-go/citadel/services"
	"github.com/gorilla/websocket"
	"github.com/vmihailenco/msgpack/v5"
)

const (
	// rssGrowthLimit bounds the server's peak RSS over its pre-attack
	// baseline during any attack.
	rssGrowthLimit = 64 << 20
	// rssKillLimit is the watchdog's line: above it the server is killed,
	// so a failing attack cannot take the machine down.
	rssKillLimit = 2 << 30
	// rssEvery is how often the server's RSS is sampled.
	rssEvery = 20 * time.Millisecond
	// attackGOGC is the servers' -gogc. The shipped 400 lets garbage grow
	// to five times the live heap before a collection: two clients echoing
	// 60 KiB frames at 80/s, reading every reply, grow RSS by ~66 MiB with
	// it (~22 MiB at 100). At Go's default, (b) measures what an attack
	// makes the server hold rather than the collector's pacing.
	attackGOGC = 100
	// ioTimeout bounds any single wait on a socket or HTTP answer; it is
	// generous because the machine is shared and loaded.
	ioTimeout = 30 * time.Second
)

const mib = float64(1 << 20)

var (
	wsLine     = regexp.MustCompile(`gate WS\s+(\S+)`)
	httpClient = &http.Client{Timeout: ioTimeout}
)

// target is a citadel process under attack.
type target struct {
	*process
	dataDir string
	gateWS  string
	dead    chan struct{} // closed once the process has exited
	exitErr error         // why it exited; set before dead is closed
	rss     *rssWatch

	accountsMu sync.Mutex
	accounts   map[string]*account
}

// account is a name on the server's login service; mu orders its logins
// after its registration.
type account struct {
	mu         sync.Mutex
	registered bool
}

// startTarget runs a fresh citadel binary for one attack and waits until
// it is ready to take players.
func startTarget(t *testing.T, extra ...string) *target {
	t.Helper()
	citadelBinary(t) // built before TMPDIR moves: the binary outlives this test
	dataDir := t.TempDir()
	// The server's own temporary files (the plugin host's socket folder)
	// stay in the test's folder, also when the server is killed.
	t.Setenv("TMPDIR", t.TempDir())
	p := startProcess(t, dataDir, append([]string{"-gogc", strconv.Itoa(attackGOGC)}, extra...)...)
	tg := &target{process: p, dataDir: dataDir, dead: make(chan struct{}), accounts: make(map[string]*account)}
	if m := wsLine.FindStringSubmatch(p.stdout.String()); m != nil {
		tg.gateWS = m[1]
	}
	go func() {
		tg.exitErr = <-p.exited
		close(tg.dead)
	}()
	tg.rss = watchRSS(p.cmd.Process.Pid, tg.dead)
	// Runs before t.TempDir's removal: the process must be gone first.
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		select {
		case <-tg.dead:
		case <-time.After(ioTimeout):
			t.Errorf("citadel (pid %d) did not exit after SIGKILL", p.cmd.Process.Pid)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := httpClient.Get(tg.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) || tg.exited() {
			t.Fatalf("citadel not ready within 60s (last: %v)\n%s", err, crashExcerpt(tg.stderr.String()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return tg
}

func (tg *target) exited() bool {
	select {
	case <-tg.dead:
		return true
	default:
		return false
	}
}

// checkAlive asserts (a): the process still runs and /healthz answers.
func (tg *target) checkAlive(t *testing.T, attack string) {
	t.Helper()
	resp, err := httpClient.Get(tg.admin + "/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return
		}
		err = fmt.Errorf("/healthz answered %s", resp.Status)
	}
	select { // a dying process may not have been reaped yet
	case <-tg.dead:
	case <-time.After(10 * time.Second):
		t.Errorf("%s: %v\n%s", attack, err, crashExcerpt(tg.stderr.String()))
		return
	}
	why := ""
	if rss := tg.rss.killedAt(); rss > 0 {
		why = fmt.Sprintf(" (killed by the test's watchdog at RSS %.0f MiB)", float64(rss)/mib)
	}
	t.Errorf("%s: the server process exited: %v%s\n%s", attack, tg.exitErr, why, crashExcerpt(tg.stderr.String()))
}

// crashExcerpt picks the part of the server's stderr that says why it
// died: from the first panic or fatal error, else the end.
func crashExcerpt(stderr string) string {
	const keep = 1500
	for _, mark := range []string{"panic:", "fatal error:"} {
		if i := strings.Index(stderr, mark); i >= 0 {
			return stderr[i:min(len(stderr), i+keep)]
		}
	}
	return stderr[max(0, len(stderr)-keep):]
}

// adminGet fetches an admin path, with the admin token if the server has
// written one (metrics may require it).
func (tg *target) adminGet(path string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, tg.admin+path, nil)
	if err != nil {
		return 0, "", err
	}
	if tok, err := os.ReadFile(filepath.Join(tg.dataDir, "admin.token")); err == nil {
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// metricSum adds every /metrics sample whose metric name (not labels)
// contains one of the words. Names are matched loosely on purpose: the
// suite asks for a counter of a kind, not for its exact name.
func (tg *target) metricSum(words ...string) (float64, error) {
	code, body, err := tg.adminGet("/metrics")
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("/metrics answered %d", code)
	}
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name := line[:strings.IndexAny(line+" ", "{ ")]
		for _, w := range words {
			if strings.Contains(name, w) {
				f := strings.Fields(line)
				if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
					sum += v
				}
				break
			}
		}
	}
	return sum, nil
}

// waitSessions waits until the gate holds at most n sessions (its
// citadel_gate_sessions gauge), or the server is gone.
func (tg *target) waitSessions(t *testing.T, n float64) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for {
		got, err := tg.metricSum("citadel_gate_sessions")
		if err != nil || got <= n {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("the gate still holds %v sessions after 30s, want at most %v", got, n)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rssWatch samples a process's resident memory and kills it above
// rssKillLimit.
type rssWatch struct {
	pid    int
	mu     sync.Mutex
	peak   int64 // highest sample since the last mark
	killed int64 // the sample that made the watchdog kill it; 0 if not
}

func watchRSS(pid int, dead <-chan struct{}) *rssWatch {
	w := &rssWatch{pid: pid}
	go func() {
		tick := time.NewTicker(rssEvery)
		defer tick.Stop()
		for {
			select {
			case <-dead:
				return
			case <-tick.C:
			}
			rss, err := readRSS(pid)
			if err != nil {
				continue // exiting
			}
			w.mu.Lock()
			w.peak = max(w.peak, rss)
			if rss > rssKillLimit && w.killed == 0 {
				w.killed = rss
				syscall.Kill(pid, syscall.SIGKILL)
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "24132 kB"
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS line (the process has exited)")
}

func (w *rssWatch) killedAt() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.killed
}

// memoryDuring starts measuring (b) for one attack: it takes the baseline
// now, and the returned function logs the peak growth since and fails the
// test if it passed rssGrowthLimit.
func (tg *target) memoryDuring(t *testing.T, attack string) (done func()) {
	base, err := readRSS(tg.rss.pid)
	if err != nil {
		t.Fatalf("%s: server RSS: %v", attack, err)
	}
	tg.rss.mu.Lock()
	tg.rss.peak = base
	tg.rss.mu.Unlock()
	return func() {
		t.Helper()
		tg.rss.mu.Lock()
		peak, killed := tg.rss.peak, tg.rss.killed
		tg.rss.mu.Unlock()
		t.Logf("%s: server RSS baseline %.1f MiB, peak %.1f MiB, growth %.1f MiB (limit %.0f MiB)",
			attack, float64(base)/mib, float64(peak)/mib, float64(peak-base)/mib, rssGrowthLimit/mib)
		switch {
		case killed > 0:
			t.Errorf("%s: RSS reached %.0f MiB: the watchdog killed the server", attack, float64(killed)/mib)
		case peak-base > rssGrowthLimit:
			t.Errorf("%s: RSS grew %.1f MiB during the attack, more than %.0f MiB", attack, float64(peak-base)/mib, rssGrowthLimit/mib)
		}
	}
}

// ticket registers name on first use, logs in after, and returns the
// login answer (ticket and gate addresses).
func (tg *target) ticket(name string) (*services.LoginResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	tg.accountsMu.Lock()
	a := tg.accounts[name]
	if a == nil {
		a = &account{}
		tg.accounts[name] = a
	}
	tg.accountsMu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.registered {
		return client.Login(ctx, tg.loginURL, name, "password-"+name)
	}
	lr, err := client.Register(ctx, tg.loginURL, name, "password-"+name)
	a.registered = err == nil
	return lr, err
}

// honest is a player on the Go SDK who keeps moving between two squares
// and checks every answer: each Move must land where it asked and count
// exactly one more move, so a move made by anyone else shows.
type honest struct {
	name string
	c    *client.Conn

	mu       sync.Mutex
	x0, y0   int32 // home square; the player alternates with x0+dir
	dir      int32
	moves    int64
	calls    int
	problems []error       // what went wrong, in order (the first few)
	stopped  chan struct{} // closed when play returns
}

func (h *honest) fail(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.problems) < 5 {
		h.problems = append(h.problems, err)
	}
}

// state returns the moves made and what went wrong (nil if nothing).
func (h *honest) state() (calls int, problems error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls, errors.Join(h.problems...)
}

// honestPlayers play during an attack: (c).
type honestPlayers struct {
	list []*honest
	stop chan struct{}
	wg   sync.WaitGroup
}

// playHonestly logs n players in (TCP and WebSocket alternately) before an
// attack and starts them playing.
func playHonestly(t *testing.T, tg *target, n int) *honestPlayers {
	t.Helper()
	hp := &honestPlayers{stop: make(chan struct{})}
	for i := range n {
		transport := client.TCP
		if i%2 == 1 {
			transport = client.WebSocket
		}
		h := &honest{name: fmt.Sprintf("honest%d", i), dir: 1, stopped: make(chan struct{})}
		lr, err := tg.ticket(h.name)
		if err != nil {
			t.Fatalf("honest player %s: %v", h.name, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		h.c, err = client.Connect(ctx, lr, client.Options{Registry: clientRegistry(t), Transport: transport, DialTimeout: ioTimeout})
		cancel()
		if err != nil {
			t.Fatalf("honest player %s over %s: %v", h.name, transport, err)
		}
		t.Cleanup(func() { h.c.Close() })
		select {
		case m := <-h.c.Pushes():
			info, ok := m.(*services.PlayerInfo)
			if !ok {
				t.Fatalf("honest player %s: first push is %T, want PlayerInfo", h.name, m)
			}
			h.x0, h.y0, h.moves = info.X, info.Y, info.Moves
		case <-time.After(ioTimeout):
			t.Fatalf("honest player %s: no PlayerInfo", h.name)
		}
		if h.x0 >= services.MapSize-1 {
			h.dir = -1
		}
		hp.list = append(hp.list, h)
	}
	for _, h := range hp.list {
		hp.wg.Add(2)
		go func() { defer hp.wg.Done(); h.play(hp.stop) }()
		go func() { defer hp.wg.Done(); h.listen(hp.stop) }()
	}
	return hp
}

func (h *honest) play(stop <-chan struct{}) {
	defer close(h.stopped)
	x := h.x0
	for {
		select {
		case <-stop:
			return
		default:
		}
		nx := h.x0 + h.dir
		if x != h.x0 {
			nx = h.x0
		}
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		r, err := h.c.Call(ctx, &services.Move{X: nx, Y: h.y0})
		cancel()
		if err != nil {
			h.fail(fmt.Errorf("Move failed: %w", err))
			return
		}
		m, ok := r.(*services.Moved)
		h.mu.Lock()
		if !ok || m.X != nx || m.Y != h.y0 || m.Moves != h.moves+1 {
			h.mu.Unlock()
			h.fail(fmt.Errorf("someone else moved this player: asked for (%d,%d) after %d moves, got %+v", nx, h.y0, h.moves, r))
			return
		}
		h.moves, h.calls = m.Moves, h.calls+1
		h.mu.Unlock()
		x = nx
		select {
		case <-stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// listen drains pushes. Nobody chats during an attack, so a chat line is
// forged; and replies never arrive as pushes (seq 0) to a player that
// sends nothing without a seq: one that does answers a request someone
// else made in this player's name.
func (h *honest) listen(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-h.c.Done():
			return
		case m := <-h.c.Pushes():
			switch v := m.(type) {
			case *services.ChatMessage:
				h.fail(fmt.Errorf("pushed a chat line nobody said: %+v", v))
			case *services.Moved, *services.Error, *services.Inventory:
				h.fail(fmt.Errorf("pushed a reply to a request this player did not make: %T %+v", v, v))
			}
		}
	}
}

// waitProgress waits until every player has made k more moves or stopped
// playing (it failed): the server still serves them after an attack.
func (hp *honestPlayers) waitProgress(t *testing.T, attack string, k int) {
	t.Helper()
	start := make([]int, len(hp.list))
	for i, h := range hp.list {
		start[i], _ = h.state()
	}
	deadline := time.Now().Add(60 * time.Second)
	for i, h := range hp.list {
		for {
			calls, _ := h.state()
			select {
			case <-h.stopped:
				calls = start[i] + k
			default:
			}
			if calls >= start[i]+k {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: honest player %s made %d moves in 60s, want %d", attack, h.name, calls-start[i], k)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// check stops the players and asserts (c): none was kicked, no call failed,
// no one else changed their state, and every one kept playing.
func (hp *honestPlayers) check(t *testing.T, attack string) {
	t.Helper()
	hp.waitProgress(t, attack, 3)
	close(hp.stop)
	hp.wg.Wait()
	total := 0
	for _, h := range hp.list {
		calls, problem := h.state()
		total += calls
		if problem != nil {
			t.Errorf("%s: honest player %s: %v", attack, h.name, strings.ReplaceAll(problem.Error(), "\n", "; "))
		}
		if err := h.c.Err(); err != nil {
			t.Errorf("%s: honest player %s lost its connection: %v", attack, h.name, err)
		}
	}
	t.Logf("%s: %d honest players made %d moves", attack, len(hp.list), total)
}

// rawConn is the attacker's connection to a gate: frames built by hand.
type rawConn struct {
	tcp net.Conn
	br  *bufio.Reader
	ws  *websocket.Conn
}

const (
	overTCP = "tcp"
	overWS  = "ws"
)

func (tg *target) dial(transport string) (*rawConn, error) {
	if transport == overWS {
		d := websocket.Dialer{HandshakeTimeout: ioTimeout}
		ws, _, err := d.Dial(tg.gateWS, nil)
		if err != nil {
			return nil, err
		}
		return &rawConn{ws: ws}, nil
	}
	c, err := net.DialTimeout("tcp", tg.gateTCP, ioTimeout)
	if err != nil {
		return nil, err
	}
	return &rawConn{tcp: c, br: bufio.NewReader(c)}, nil
}

func (c *rawConn) Close() {
	if c.ws != nil {
		c.ws.Close()
	} else {
		c.tcp.Close()
	}
}

// send writes one frame: TCP u32 length | u16 msgID | payload, or one
// binary WebSocket message u16 msgID | payload.
func (c *rawConn) send(id framework.MsgID, payload []byte) error {
	b := make([]byte, 0, 6+len(payload))
	if c.ws == nil {
		b = binary.BigEndian.AppendUint32(b, uint32(2+len(payload)))
	}
	b = binary.BigEndian.AppendUint16(b, uint16(id))
	b = append(b, payload...)
	deadline := time.Now().Add(ioTimeout)
	if c.ws != nil {
		c.ws.SetWriteDeadline(deadline)
		return c.ws.WriteMessage(websocket.BinaryMessage, b)
	}
	c.tcp.SetWriteDeadline(deadline)
	_, err := c.tcp.Write(b)
	return err
}

// read reads one frame before the deadline.
func (c *rawConn) read(deadline time.Time) (wire.Frame, error) {
	if c.ws != nil {
		c.ws.SetReadDeadline(deadline)
		kind, msg, err := c.ws.ReadMessage()
		if err != nil {
			return wire.Frame{}, err
		}
		if kind != websocket.BinaryMessage {
			return wire.Frame{}, fmt.Errorf("WebSocket message of type %d", kind)
		}
		return wire.DecodeWS(msg, 1<<20)
	}
	c.tcp.SetReadDeadline(deadline)
	f, _, err := wire.ReadTCP(c.br, 1<<20, nil)
	return f, err
}

// payload wraps a msgpack body as [seq, body] (seq below 128).
func payload(seq byte, body []byte) []byte {
	return append([]byte{0x92, seq}, body...)
}

func mustMarshal(v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// auth sends Auth and waits for AuthOK (pushes before it are skipped).
func (c *rawConn) auth(ticket string) error {
	if err := c.send(services.IDAuth, payload(1, mustMarshal(&services.Auth{Ticket: ticket, Protocol: services.ProtocolVersion}))); err != nil {
		return err
	}
	deadline := time.Now().Add(ioTimeout)
	for {
		f, err := c.read(deadline)
		if err != nil {
			return fmt.Errorf("waiting for AuthOK: %w", err)
		}
		switch f.ID {
		case services.IDAuthOK:
			return nil
		case services.IDKicked:
			k := kickedOf(f)
			return &client.KickedError{Code: k.Code, Reason: k.Reason}
		}
	}
}

// ending is how the server ended a connection.
type ending struct {
	closed       bool   // the server closed it (false: still open at the deadline)
	code, reason string // from a Kicked frame or a WebSocket close frame
	frames       int    // frames received, the Kicked frame included
	err          error  // what the last read returned
}

func (e ending) String() string {
	if !e.closed {
		return fmt.Sprintf("still open (%v)", e.err)
	}
	if e.code == "" {
		return fmt.Sprintf("closed without a reason (%v)", e.err)
	}
	return fmt.Sprintf("closed: %s: %s", e.code, e.reason)
}

// awaitEnd reads and discards frames until the server ends the connection
// or the wait is over.
func (c *rawConn) awaitEnd(wait time.Duration) ending {
	var e ending
	deadline := time.Now().Add(wait)
	for {
		f, err := c.read(deadline)
		if err != nil {
			e.err = err
			var ne net.Error
			e.closed = !(errors.As(err, &ne) && ne.Timeout())
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure && e.code == "" {
				e.code, e.reason, _ = strings.Cut(ce.Text, ": ")
				if e.code == "" {
					e.code = strconv.Itoa(ce.Code)
				}
			}
			return e
		}
		e.frames++
		if f.ID == services.IDKicked && e.code == "" {
			k := kickedOf(f)
			e.code, e.reason = k.Code, k.Reason
		}
	}
}

func kickedOf(f wire.Frame) services.Kicked {
	var k services.Kicked
	if _, body, err := wire.SplitPayload(f.Payload); err == nil {
		msgpack.Unmarshal(body, &k)
	}
	if k.Code == "" {
		k.Code = "(undecodable Kicked frame)"
	}
	return k
}

// str is a msgpack fixstr (s shorter than 32 bytes).
func str(s string) []byte { return append([]byte{0xa0 | byte(len(s))}, s...) }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// hostile is a frame whose body claims far more than it carries: each a
// msgpack map of one field, built byte by byte.
type hostile struct {
	name    string
	id      framework.MsgID
	body    []byte
	preAuth bool // sent as the first frame, without a ticket
}

var (
	authHugeStr = hostile{name: "Auth claiming a 4 GiB str", id: services.IDAuth, preAuth: true,
		body: cat([]byte{0x81}, str("Ticket"), []byte{0xdb, 0xff, 0xff, 0xff, 0xff}, []byte("AAAAAAAAAA"))}
	echoHugeBin = hostile{name: "Echo claiming a 4 GiB bin", id: services.IDEcho,
		body: cat([]byte{0x81}, str("Data"), []byte{0xc6, 0xff, 0xff, 0xff, 0xff}, []byte("AAAA"))}
	huntedHugeArray = hostile{name: "Hunted claiming 2^32 drops", id: services.IDHunted,
		body: cat([]byte{0x81}, str("Drops"), []byte{0xdd, 0xff, 0xff, 0xff, 0xff}, str("x"))}
	infoHugeMap = hostile{name: "PlayerInfo claiming 2^31 items", id: services.IDPlayerInfo,
		body: cat([]byte{0x81}, str("Items"), []byte{0xdf, 0x80, 0x00, 0x00, 0x00}, str("x"), []byte{0x01})}
	// A valid Move whose unknown field is 61,440 nested one-element arrays:
	// decoding it recurses once per level unless depth is capped.
	deepMove = hostile{name: "Move nesting 61,440 arrays in an unknown field", id: services.IDMove,
		body: cat([]byte{0x83}, str("X"), []byte{0x00}, str("Y"), []byte{0x00}, str("Z"),
			[]byte(strings.Repeat("\x91", 60<<10)), []byte{0x90})}
	postAuthHostile = []hostile{echoHugeBin, huntedHugeArray, infoHugeMap, deepMove}
)

// deliver sends h on a new connection (logging in as account first for a
// post-auth frame) and waits for the server to end the connection.
func (tg *target) deliver(h hostile, transport, account string) (ending, error) {
	var lr *services.LoginResponse
	if !h.preAuth {
		var err error
		if lr, err = tg.ticket(account); err != nil {
			return ending{}, err
		}
	}
	c, err := tg.dial(transport)
	if err != nil {
		return ending{}, err
	}
	defer c.Close()
	if lr != nil {
		if err := c.auth(lr.Ticket); err != nil {
			return ending{}, fmt.Errorf("auth as %s: %w", account, err)
		}
	}
	c.send(h.id, payload(7, h.body)) // a write error shows in the ending
	return c.awaitEnd(ioTimeout), nil
}
