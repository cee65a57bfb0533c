// Package gate holds client connections: cellnet TCP and WebSocket
// acceptors with Citadel's framing (framework/wire), ticket checks,
// heartbeats, rate limits and bounded send queues. It routes each client
// frame to the player's actor on the game node the consistent hash picks,
// and delivers replies, pushes and broadcasts back. See docs/protocol.md.
package gate

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/ticket"
	"github.com/citadel-go/citadel/mq"
	"github.com/citadel-go/citadel/services"
	"github.com/davyxu/cellnet"
	"github.com/davyxu/cellnet/peer"
	"github.com/davyxu/cellnet/proc"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Config configures a gate. Zero values are defaults, except Node, Tickets
// and Registry.
type Config struct {
	// Node is the gate node (service "gate").
	Node *framework.Node
	// Tickets verifies login tickets (same key as login).
	Tickets *ticket.Signer
	// Registry holds the messages clients may send (validated here, then
	// forwarded) and receive. It must include services.RegisterClient.
	Registry *framework.Registry

	// TCPAddr is the TCP listen address; "" disables TCP.
	TCPAddr string
	// WSAddr is the WebSocket listen address (host:port); "" disables it.
	WSAddr string
	// WSPath is the WebSocket endpoint path. Default "/ws".
	WSPath string
	// TLSCert and TLSKey serve WebSocket over TLS (wss).
	TLSCert, TLSKey string
	// AllowedOrigins lists browser origins allowed to open a WebSocket
	// ("https://play.example.com"; "*" allows any). Requests without an
	// Origin header (non-browser clients) and same-host origins are allowed.
	AllowedOrigins []string
	// PublicTCP and PublicWS are advertised to clients through login.
	// Default: the listen addresses.
	PublicTCP, PublicWS string

	// MaxFrame bounds msgID + payload of a frame, both ways. Default 64 KiB.
	MaxFrame int
	// SendQueue bounds frames waiting to be written to one client; a client
	// that lets it fill is disconnected ("slow_client"). Default 256.
	SendQueue int
	// SendQueueBytes bounds the bytes of those frames. Default 256 KiB
	// (at least 4 × MaxFrame).
	SendQueueBytes int
	// MaxConns caps the client connections (TCP and WebSocket together,
	// logged in or not); more are refused with "server_full". Keep it
	// under the process's open-file limit. Default 10,000.
	MaxConns int
	// MaxPending caps the connections that have not logged in yet.
	// Default 1,024.
	MaxPending int
	// HandshakeTimeout bounds a WebSocket client's HTTP upgrade request
	// (header and body) and how long an HTTP connection may idle without
	// upgrading. Default 5s.
	HandshakeTimeout time.Duration
	// WriteBuffer fixes each TCP client socket's kernel send buffer (bytes).
	// Default 0 keeps the OS's autotuning (up to tcp_wmem's max, 4 MiB
	// here), which can hide a client that stopped reading for megabytes.
	WriteBuffer int
	// Heartbeat is how often clients must Ping; a session silent for three
	// heartbeats is closed. Default 10s.
	Heartbeat time.Duration
	// AuthTimeout is how long a new connection has, from accept, to send
	// its Auth frame (however slowly it trickles in). Default 10s.
	AuthTimeout time.Duration
	// WriteTimeout bounds one write to a client. Default 10s.
	WriteTimeout time.Duration
	// AttachTimeout bounds the game node's answer to Attach. Default 5s.
	AttachTimeout time.Duration
	// HoldTimeout bounds how long a session's requests are held while its
	// player moves between game nodes or its game node is suspect (no
	// heartbeats, its lease not yet over); then the session is closed
	// with game_unavailable. Default 30s.
	HoldTimeout time.Duration
	// HandoffTimeout bounds a handoff from the gate's Held to the old
	// actor's Handed; past it the gate attaches the session again as
	// after a crash (the store decides who owns the player). Default 5s.
	HandoffTimeout time.Duration
	// MaxHeldRequests bounds the client requests held for one session
	// (their bytes are bounded by SendQueueBytes); more are answered with
	// an "unavailable" error. Default 128.
	MaxHeldRequests int
	// MsgRate and MsgBurst limit frames per session. Default 100/s, burst 200.
	MsgRate  rate.Limit
	MsgBurst int

	// Logger defaults to the node's.
	Logger *slog.Logger
	// Metrics registers citadel_gate_* metrics. Nil skips registration.
	Metrics prometheus.Registerer
}

// Gate serves client connections for one gate node.
type Gate struct {
	cfg   Config
	log   *slog.Logger
	node  *framework.Node
	guard *ticket.Guard
	self  framework.Addr // the sessions actor

	sessions  sync.Map // session ID -> *session, while open (routing)
	holds     sync.Map // session ID -> *session whose requests are held
	stopHolds chan struct{}
	// gameEvents carries game nodes' membership events to one goroutine,
	// in order (a suspect node's recovery must not overtake its suspicion).
	gameEvents chan framework.MemberEvent
	// reattaching bounds the Attach calls in flight for sessions attached
	// again (a node with ten thousand players left).
	attachSlots chan struct{}
	conns       sync.Map // cellnet TCP session ID -> *session, until the connection ends
	admission   admission
	active      atomic.Int64
	stopping    atomic.Bool
	closeLog    framework.LogLimiter

	tcp          cellnet.Peer
	tcpAddr      string
	tls          *tls.Config
	wsServer     *http.Server
	wsUpgrader   websocket.Upgrader
	wsIDs        atomic.Uint64
	wsURL        string
	broadcastSub *mq.Subscription
	unwatch      func()
	inCounters   map[framework.MsgID]prometheus.Counter
	m            metrics
}

type metrics struct {
	sessions *prometheus.GaugeVec
	in       *prometheus.CounterVec
	out      *prometheus.CounterVec
	// out's children: frames written straight to the socket, those the
	// socket took only part of at once, and those that went through the
	// send queue.
	outDirect, outSplit, outQueued prometheus.Counter
	kicks                          *prometheus.CounterVec
	refused                        *prometheus.CounterVec
	auths                          *prometheus.CounterVec
	dropped                        prometheus.Counter
	handoffs                       *prometheus.CounterVec
	holding                        prometheus.Gauge
	heldOverflow                   prometheus.Counter
	pause                          prometheus.Histogram
	reconnects                     prometheus.Counter
}

// New validates cfg and creates a gate.
func New(cfg Config) (*Gate, error) {
	if cfg.Node == nil || cfg.Tickets == nil || cfg.Registry == nil {
		return nil, errors.New("gate: Config needs Node, Tickets and Registry")
	}
	if _, err := cfg.Registry.ID(&services.Auth{}); err != nil {
		return nil, fmt.Errorf("gate: Registry lacks the client protocol (services.RegisterClient): %w", err)
	}
	if cfg.TCPAddr == "" && cfg.WSAddr == "" {
		return nil, errors.New("gate: set TCPAddr, WSAddr or both")
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("gate: TLSCert and TLSKey go together")
	}
	var tlsConfig *tls.Config
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("gate: TLS certificate %s and key %s: %w", cfg.TLSCert, cfg.TLSKey, err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if cfg.WSPath == "" {
		cfg.WSPath = "/ws"
	}
	if !strings.HasPrefix(cfg.WSPath, "/") {
		cfg.WSPath = "/" + cfg.WSPath
	}
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = 64 << 10
	}
	if cfg.MaxFrame < 256 {
		return nil, fmt.Errorf("gate: MaxFrame %d is too small (at least 256)", cfg.MaxFrame)
	}
	if cfg.SendQueue <= 0 {
		cfg.SendQueue = 256
	}
	if cfg.SendQueueBytes <= 0 {
		cfg.SendQueueBytes = max(256<<10, 4*cfg.MaxFrame)
	}
	if cfg.SendQueueBytes < 2*cfg.MaxFrame {
		return nil, fmt.Errorf("gate: SendQueueBytes %d must hold at least two frames of MaxFrame (%d bytes)", cfg.SendQueueBytes, 2*cfg.MaxFrame)
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 10000
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 1024
	}
	if cfg.MaxPending > cfg.MaxConns {
		cfg.MaxPending = cfg.MaxConns
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 5 * time.Second
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 10 * time.Second
	}
	if cfg.AuthTimeout <= 0 {
		cfg.AuthTimeout = 10 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.AttachTimeout <= 0 {
		cfg.AttachTimeout = 5 * time.Second
	}
	if cfg.HoldTimeout <= 0 {
		cfg.HoldTimeout = 30 * time.Second
	}
	if cfg.HandoffTimeout <= 0 {
		cfg.HandoffTimeout = 5 * time.Second
	}
	if cfg.MaxHeldRequests <= 0 {
		cfg.MaxHeldRequests = 128
	}
	if cfg.MsgRate <= 0 {
		cfg.MsgRate, cfg.MsgBurst = 100, 200
	}
	if cfg.MsgBurst <= 0 {
		cfg.MsgBurst = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = cfg.Node.Logger()
	}
	reg := cfg.Node.Registry()
	if err := services.RegisterInternal(reg); err != nil {
		return nil, err
	}
	if err := services.RegisterClient(reg); err != nil {
		return nil, err
	}
	if err := registerLocal(reg); err != nil {
		return nil, err
	}
	g := &Gate{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "gate"),
		node:  cfg.Node,
		guard: ticket.NewGuard(),
		self:  cfg.Node.ActorAddr(services.GateSessionsActor),
		tls:   tlsConfig,
		m: metrics{
			sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "citadel_gate_sessions",
				Help: "Client sessions by transport and state (pending: connected, not yet attached)."}, []string{"transport", "state"}),
			in: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "citadel_gate_messages_in_total",
				Help: "Client frames accepted, by message type."}, []string{"msg"}),
			out: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "citadel_gate_messages_out_total",
				Help: "Frames sent to clients, by how: direct (written at once by the sender), split (the socket took part at once, the send goroutine the rest), queued (through the session's send queue)."},
				[]string{"write"}),
			kicks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "citadel_gate_kicks_total",
				Help: "Sessions closed by the gate, by reason code."}, []string{"code"}),
			refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "citadel_gate_refused_total",
				Help: "Client connections refused at a cap, by cap (max_conns, max_pending)."}, []string{"reason"}),
			auths: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "citadel_gate_auth_total",
				Help: "Auth attempts by result."}, []string{"result"}),
			dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "citadel_gate_frames_dropped_total",
				Help: "Frames for sessions that had already gone."}),
			handoffs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "citadel_gate_handoffs_total",
				Help: "Sessions attached to another actor with the connection open, by outcome: moved (a handoff), reattached (the node left or lost the actor), aborted (the old actor kept the player), timed_out (a handoff that did not finish; then re-attached), failed (closed after HoldTimeout), closed (the client left meanwhile)."},
				[]string{"outcome"}),
			holding: prometheus.NewGauge(prometheus.GaugeOpts{Name: "citadel_gate_held_sessions",
				Help: "Sessions whose client requests are held now (their player moves, or its game node is suspect)."}),
			heldOverflow: prometheus.NewCounter(prometheus.CounterOpts{Name: "citadel_gate_held_overflow_total",
				Help: "Client requests answered \"unavailable\" because their session already held MaxHeldRequests."}),
			reconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: "citadel_gate_reconnects_total",
				Help: "Clients told to move to another gate (Reconnect) while this gate drains."}),
			pause: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "citadel_gate_hold_seconds",
				Help:    "How long a session's requests were held (a handoff's pause as its client sees it).",
				Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}),
		},
	}
	g.admission.maxConns, g.admission.maxPending = int64(cfg.MaxConns), int64(cfg.MaxPending)
	g.gameEvents = make(chan framework.MemberEvent, 1024)
	g.attachSlots = make(chan struct{}, 256)
	g.wsIDs.Store(wsIDBase)
	g.m.outDirect, g.m.outSplit, g.m.outQueued = g.m.out.WithLabelValues("direct"), g.m.out.WithLabelValues("split"), g.m.out.WithLabelValues("queued")
	g.inCounters = make(map[framework.MsgID]prometheus.Counter)
	for _, t := range cfg.Registry.Types() {
		g.inCounters[t.ID] = g.m.in.WithLabelValues(strings.TrimPrefix(t.Name, "*services."))
	}
	if cfg.Metrics != nil {
		for _, c := range []prometheus.Collector{g.m.sessions, g.m.in, g.m.out, g.m.kicks, g.m.refused, g.m.auths, g.m.dropped, g.connGauge(),
			g.m.handoffs, g.m.holding, g.m.heldOverflow, g.m.pause, g.m.reconnects} {
			if err := cfg.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("gate: register metrics: %w", err)
			}
		}
	}
	return g, nil
}

// Start spawns the sessions actor, subscribes to broadcasts, opens the
// listeners and advertises them in membership (login hands them out).
func (g *Gate) Start(ctx context.Context) error {
	registerCellnet()
	// Inline: replies and pushes go to the client's send queue straight from
	// the node's inbound goroutine, one hand-off fewer per message.
	if _, err := g.node.Spawn(services.GateSessionsActor, func() framework.Actor { return newOutbound(g) },
		framework.SpawnOptions{Kind: "gate_sessions", MailboxSize: 65536, Inline: true}); err != nil {
		return err
	}
	if bus := g.node.Bus(); bus != nil {
		// A broadcast replayed, or older than a minute, is dropped unread.
		sub, err := bus.Subscribe(services.BroadcastTopic, g.node.Addr().Node+"#ephemeral", g.onBroadcast,
			mq.SubscribeOptions{Unique: true, MaxAge: time.Minute})
		if err != nil {
			return err
		}
		g.broadcastSub = sub
		g.unwatch = g.node.Members().Watch(g.onMember)
	}
	g.stopHolds = make(chan struct{})
	go g.watchHolds(g.stopHolds)
	if g.cfg.TCPAddr != "" {
		if err := g.startTCP(); err != nil {
			return err
		}
	}
	if g.cfg.WSAddr != "" {
		if err := g.startWS(); err != nil {
			g.stopListeners()
			return err
		}
	}
	m := g.node.Members()
	if g.tcp != nil {
		m.SetMeta(services.MetaTCP, orDefault(g.cfg.PublicTCP, g.tcpAddr))
	}
	if g.wsServer != nil {
		m.SetMeta(services.MetaWS, orDefault(g.cfg.PublicWS, g.wsURL))
	}
	g.log.Info("gate listening", "tcp", g.tcpAddr, "ws", g.wsURL)
	return nil
}

// TCPAddr is the TCP address the gate listens on ("" if disabled).
func (g *Gate) TCPAddr() string { return g.tcpAddr }

// WSURL is the WebSocket URL the gate serves ("" if disabled).
func (g *Gate) WSURL() string { return g.wsURL }

// Sessions reports how many sessions are attached to players.
func (g *Gate) Sessions() int { return int(g.active.Load()) }

// Stop closes every session with "server_shutdown" (their players enter
// their grace period), refuses new ones, waits for the sessions to go (until
// ctx ends), then closes the listeners.
func (g *Gate) Stop(ctx context.Context) error {
	if !g.stopping.CompareAndSwap(false, true) {
		return nil
	}
	g.sessions.Range(func(_, v any) bool {
		g.kick(v.(*session), services.KickShutdown, "the server is shutting down; reconnect shortly")
		return true
	})
	if g.unwatch != nil {
		g.unwatch()
	}
	var err error
	for {
		n := 0
		g.sessions.Range(func(_, _ any) bool { n++; return true })
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			err = fmt.Errorf("gate: %d sessions still open: %w", n, ctx.Err())
		case <-time.After(10 * time.Millisecond):
			continue
		}
		break
	}
	// cellnet's TCP Stop closes the sessions' sockets too, so it comes after
	// the Kicked frames have been written.
	g.stopListeners()
	if g.broadcastSub != nil {
		g.broadcastSub.Stop()
	}
	if g.stopHolds != nil {
		close(g.stopHolds)
	}
	return err
}

func (g *Gate) stopListeners() {
	if g.tcp != nil {
		g.tcp.Stop()
	}
	if g.wsServer != nil {
		g.wsServer.Close() // the listener and connections not upgraded
	}
}

// startTCP listens for TCP clients with cellnet's acceptor.
func (g *Gate) startTCP() error {
	p := peer.NewGenericPeer("tcp.Acceptor", "citadel-gate-tcp", g.cfg.TCPAddr, nil)
	// cellnet turns TCP_NODELAY off unless told otherwise.
	wbuf := -1
	if g.cfg.WriteBuffer > 0 {
		wbuf = g.cfg.WriteBuffer
	}
	p.(cellnet.TCPSocketOption).SetSocketBuffer(-1, wbuf, true)
	proc.BindProcessorHandler(p, procTCP, g.onEvent, g)
	p.Start()
	port := p.(cellnet.TCPAcceptor).Port()
	if port == 0 {
		// cellnet logs why and gives up; listening again finds the cause.
		err := errors.New("cellnet's acceptor did not start")
		if ln, lerr := net.Listen("tcp", g.cfg.TCPAddr); lerr != nil {
			err = lerr
		} else {
			ln.Close()
		}
		return &ListenError{Transport: "tcp", Addr: g.cfg.TCPAddr, Err: err}
	}
	g.tcp = p
	g.tcpAddr = net.JoinHostPort(hostOf(g.cfg.TCPAddr), strconv.Itoa(port))
	return nil
}

// ListenError is returned by Start when a listener cannot open; Err says
// why (the port is taken, the address is not on this host, ...).
type ListenError struct {
	Transport string // "tcp" or "ws"
	Addr      string
	Err       error
}

func (e *ListenError) Error() string {
	what := "TCP"
	if e.Transport == "ws" {
		what = "WebSocket"
	}
	return fmt.Sprintf("gate: cannot listen for %s clients on %s: %v", what, e.Addr, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }

// connGauge reports the connections held under the caps.
func (g *Gate) connGauge() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "citadel_gate_connections",
		Help: "Client connections open now, logged in or not (capped by MaxConns)."},
		func() float64 { return float64(g.admission.conns.Load()) })
}

// checkOrigin allows non-browser clients (no Origin), same-host origins and
// the configured list; and nobody once the gate is stopping.
func (g *Gate) checkOrigin(r *http.Request) bool {
	if g.stopping.Load() {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	for _, o := range g.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	if i := strings.Index(origin, "://"); i >= 0 && strings.EqualFold(origin[i+3:], r.Host) {
		return true
	}
	g.log.Warn("WebSocket origin refused", "origin", origin, "remote", r.RemoteAddr)
	return false
}

// onMember acts on game nodes' membership: sessions are never closed
// because their game node misses heartbeats (it is only suspect; its
// requests wait), only attached again once the node is gone.
func (g *Gate) onMember(ev framework.MemberEvent) {
	if ev.Member.Service != services.Game {
		return
	}
	switch ev.Kind {
	case framework.MemberSuspect, framework.MemberRecovered, framework.MemberLeft:
		g.gameEvents <- ev // rare; the buffer is far larger than a burst
	}
}

func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" || host == "0.0.0.0" || host == "::" {
		return "127.0.0.1"
	}
	return host
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
