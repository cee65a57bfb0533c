package citadel

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/framework/ticket"
	"github.com/citadel-go/citadel/game"
	"github.com/citadel-go/citadel/gate"
	"github.com/citadel-go/citadel/login"
	"github.com/citadel-go/citadel/mq"
	"github.com/citadel-go/citadel/plugins"
	"github.com/citadel-go/citadel/services"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/time/rate"
)

// config is everything the flags set, and the game.
type config struct {
	Game    game.Game
	Roles   []string // login, gate, game
	DataDir string
	NodeID  string // suffix of node IDs ("1" gives login-1, gate-1, game-1)

	// Embedded NSQ (when NSQD is empty).
	NSQDTCP, NSQDHTTP, LookupdTCP, LookupdHTTP string
	// External NSQ cluster.
	NSQD, NSQDHTTPExt, Lookupd []string

	LoginAddr, GateTCP, GateWS, AdminAddr string
	PublicTCP, PublicWS                   string
	TLSCert, TLSKey                       string
	AllowedOrigins                        []string
	Web                                   bool // serve the game's browser client (WebClient) on the login listener
	BcryptCost                            int
	Grace                                 time.Duration
	SaveInterval                          time.Duration
	Store                                 string // "bbolt" or "postgres"
	PostgresDSN                           string
	Heartbeat                             time.Duration
	MaxFrame                              int
	ClientRate                            float64 // frames/s per session; burst is twice that
	MaxConns, MaxPending                  int     // client connections per gate: all, not logged in
	AuthTimeout, HandshakeTimeout         time.Duration
	SendQueueBytes                        int
	TablesPath                            string // tables data file; empty: built in
	TablesWatch                           time.Duration
	PluginsDir                            string // one folder per plugin; empty: none
	PluginsWatch                          time.Duration
	LeaseTTL                              time.Duration // how long a node's lease lasts without renewal
	NodeHeartbeat, MemberTTL              time.Duration // membership: heartbeat interval, and silence before a node is suspect (0: framework defaults)
	DrainRate                             float64       // players (game) or clients (gate) moved per second on a drain
	DrainTimeout                          time.Duration // how long a drain may take before the rest are stopped as without one
	RebalanceRate                         float64       // players per second moved to a game node that joins; 0 turns it off
	HoldTimeout                           time.Duration // how long a gate holds a session's requests while its player moves or its node is suspect
	BuildPlugins                          bool          // build the example plugins into PluginsDir if missing

	// Secrets: a value from the environment wins over its file; a file
	// left empty here is <DataDir>/ticket.key, cluster.key, admin.token.
	TicketKey, TicketKeyFile   string // hex; the file is created if missing
	ClusterKey, ClusterKeyFile string // mq.ParseKeyring's format; created only with the embedded NSQ
	AdminToken, AdminTokenFile string // the file is created if missing
	// External nsqd's TLS and AUTH (with NSQD only).
	NSQTLS                             bool
	NSQCAFile, NSQCertFile, NSQKeyFile string
	NSQAuthSecret, NSQAuthSecretFile   string

	Logger *slog.Logger
}

func (c *config) has(role string) bool {
	for _, r := range c.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// server is a running Citadel process: some or all roles.
type server struct {
	cfg     config
	log     *slog.Logger
	metrics *prometheus.Registry
	broker  *mq.Broker
	store   store.Store
	saver   *game.Saver
	nodes   []*framework.Node // in start order
	login   *http.Server
	account *login.Service
	tlsPair *tls.Certificate // -tls-cert and -tls-key, loaded at start
	gate    *gate.Gate
	game    game.Runner
	plugins *plugins.Host
	// bg is cancelled on stop: background work (plugin and table watches)
	// ends with it.
	bg       context.Context
	cancel   context.CancelFunc
	leases   []*store.LeaseKeeper
	failOnce sync.Once
	admin    *http.Server
	ready    atomic.Bool
	// drainReq is signalled by POST /drain; draining is set once a drain
	// began (/readyz then fails: take no new work here).
	drainReq chan struct{}
	draining atomic.Bool

	// Where the secrets came from (paths or variable names), for the
	// start-up lines; the ticket key only for login and gate roles.
	clusterKeyFrom, ticketKeyFrom string
	adminToken                    secret

	LoginURL string
	GateTCP  string
	GateWS   string
	Admin    string
}

// start checks cfg and brings the roles up in dependency order; on error
// it stops what it started.
func start(ctx context.Context, cfg config) (s *server, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	for path, name := range map[*string]string{&cfg.TicketKeyFile: "ticket.key", &cfg.ClusterKeyFile: "cluster.key", &cfg.AdminTokenFile: "admin.token"} {
		if *path == "" {
			*path = filepath.Join(cfg.DataDir, name)
		}
	}
	s = &server{cfg: cfg, log: cfg.Logger, metrics: prometheus.NewRegistry(), drainReq: make(chan struct{}, 1)}
	s.bg, s.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			if stopErr := s.stop(context.Background()); stopErr != nil {
				s.log.Warn("stopping after a failed start", "err", stopErr)
			}
			s = nil
		}
	}()
	if cfg.TLSCert != "" {
		// Fail here, not on each connection: a listener that cannot load
		// its certificate would accept connections and hang every one.
		pair, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return s, fmt.Errorf("-tls-cert %s and -tls-key %s: %w (want a PEM certificate and its PEM private key, readable by this process)",
				cfg.TLSCert, cfg.TLSKey, err)
		}
		s.tlsPair = &pair
	}
	s.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return s, fmt.Errorf("-data %s: %w (want a directory this process can write)", cfg.DataDir, err)
	}

	// Secrets and the NSQ settings first: a process that cannot join the
	// cluster stops before it starts anything.
	busCfg := mq.BusConfig{NSQD: cfg.NSQD, NSQDHTTP: cfg.NSQDHTTPExt, Lookupd: cfg.Lookupd}
	if busCfg.TLS, err = nsqTLS(cfg, s.log); err != nil {
		return s, err
	}
	if busCfg.AuthSecret, err = loadNSQAuthSecret(cfg, s.log); err != nil {
		return s, err
	}
	if len(cfg.NSQD) == 0 && (busCfg.TLS != nil || busCfg.AuthSecret != "") {
		return s, errors.New("-nsq-tls and the nsqd auth secret are for an external NSQ cluster (-nsqd); the embedded nsqd has neither")
	}
	keyring, from, err := loadClusterKey(cfg, s.log)
	if err != nil {
		return s, err
	}
	s.clusterKeyFrom = from.from
	if s.adminToken, err = loadAdminToken(cfg, s.log); err != nil {
		return s, err
	}
	if len(cfg.NSQD) == 0 {
		s.broker, err = mq.StartBroker(mq.BrokerConfig{DataDir: filepath.Join(cfg.DataDir, "nsq"),
			TCPAddr: cfg.NSQDTCP, HTTPAddr: cfg.NSQDHTTP, LookupdTCPAddr: cfg.LookupdTCP, LookupdHTTPAddr: cfg.LookupdHTTP,
			Keys: keyring, Logger: s.log})
		if err != nil {
			return s, fmt.Errorf("embedded NSQ: %w (%s)", err, brokerHint(err, cfg))
		}
		busCfg = s.broker.BusConfig()
	}
	busCfg.Keys = keyring

	if cfg.has(services.Login) || cfg.has(services.Game) {
		if s.store, err = openStore(ctx, cfg); err != nil {
			return s, err
		}
	}
	var signer *ticket.Signer
	if cfg.has(services.Login) || cfg.has(services.Gate) {
		key, from, err := loadTicketKey(cfg, s.log)
		if err != nil {
			return s, err
		}
		s.ticketKeyFrom = from.from
		if signer, err = ticket.NewSigner(key); err != nil {
			return s, err
		}
	}

	// newNode creates a node. With a store, the node's incarnation comes
	// from its lease there (a counter per node name, so a restart is always
	// newer); without one (a gate-only process), from the clock.
	newNode := func(service string) (*framework.Node, *store.LeaseKeeper, error) {
		id := service + "-" + cfg.NodeID
		var lease *store.LeaseKeeper
		if s.store != nil {
			var err error
			if lease, err = store.StartLease(ctx, s.store, id, store.LeaseConfig{TTL: cfg.LeaseTTL, Logger: s.log}); err != nil {
				return nil, nil, fmt.Errorf("%s: start its lease in the store: %w", id, err)
			}
			s.leases = append(s.leases, lease)
		}
		bc := busCfg
		nc := framework.NodeConfig{Service: service, ID: id, Registry: framework.NewRegistry(), MQ: &bc, Logger: s.log, Metrics: s.metrics,
			HeartbeatInterval: cfg.NodeHeartbeat, MemberTTL: cfg.MemberTTL}
		if lease != nil {
			nc.Incarnation = lease.Owner().Incarnation
		}
		n, err := framework.NewNode(nc)
		if err != nil {
			return nil, nil, err
		}
		s.nodes = append(s.nodes, n)
		return n, lease, nil
	}

	// Game first: gates attach players to it, login hands out gates.
	if cfg.has(services.Game) {
		n, lease, err := newNode(services.Game)
		if err != nil {
			return s, err
		}
		if s.saver, err = game.NewSaver(game.SaverConfig{Store: s.store, Logger: s.log, Metrics: s.metrics}); err != nil {
			return s, err
		}
		if cfg.PluginsDir != "" {
			if err := s.startPlugins(); err != nil {
				return s, err
			}
		}
		if err := cfg.Game.Register(n.Registry()); err != nil {
			return s, fmt.Errorf("the game's messages: %w", err)
		}
		env := game.Env{Store: s.store, Lease: lease, Saver: s.saver, Plugins: s.plugins, Metrics: s.metrics, Logger: s.log,
			SaveInterval: cfg.SaveInterval, Grace: cfg.Grace, DrainRate: cfg.DrainRate, RebalanceRate: rebalanceRate(cfg.RebalanceRate),
			TablesPath: cfg.TablesPath, TablesWatch: cfg.TablesWatch, Context: s.bg}
		if s.game, err = cfg.Game.NewService(n, env); err != nil {
			return s, err
		}
		if err := n.Start(ctx); err != nil {
			return s, err
		}
		if err := s.game.Start(); err != nil {
			return s, err
		}
	}
	if cfg.has(services.Gate) {
		n, _, err := newNode(services.Gate)
		if err != nil {
			return s, err
		}
		clientReg := framework.NewRegistry()
		if err := services.RegisterClient(clientReg); err != nil {
			return s, err
		}
		if err := cfg.Game.Register(clientReg); err != nil {
			return s, fmt.Errorf("the game's messages: %w", err)
		}
		if err := cfg.Game.Register(n.Registry()); err != nil {
			return s, fmt.Errorf("the game's messages: %w", err)
		}
		s.gate, err = gate.New(gate.Config{Node: n, Tickets: signer, Registry: clientReg,
			TCPAddr: cfg.GateTCP, WSAddr: cfg.GateWS, TLSCert: cfg.TLSCert, TLSKey: cfg.TLSKey,
			AllowedOrigins: cfg.AllowedOrigins, PublicTCP: cfg.PublicTCP, PublicWS: cfg.PublicWS,
			Heartbeat: cfg.Heartbeat, MaxFrame: cfg.MaxFrame, Metrics: s.metrics,
			MaxConns: cfg.MaxConns, MaxPending: cfg.MaxPending, AuthTimeout: cfg.AuthTimeout,
			HandshakeTimeout: cfg.HandshakeTimeout, SendQueueBytes: cfg.SendQueueBytes,
			MsgRate: rate.Limit(cfg.ClientRate), MsgBurst: max(1, int(2*cfg.ClientRate)), HoldTimeout: cfg.HoldTimeout})
		if err != nil {
			return s, err
		}
		if err := n.Start(ctx); err != nil {
			return s, err
		}
		if err := s.gate.Start(ctx); err != nil {
			var le *gate.ListenError
			if errors.As(err, &le) {
				flag := "-gate-tcp"
				if le.Transport == "ws" {
					flag = "-gate-ws"
				}
				return s, fmt.Errorf("%w (choose another address with %s)", err, flag)
			}
			return s, err
		}
		s.GateTCP, s.GateWS = s.gate.TCPAddr(), s.gate.WSURL()
	}
	if cfg.has(services.Login) {
		n, _, err := newNode(services.Login)
		if err != nil {
			return s, err
		}
		if err := n.Start(ctx); err != nil {
			return s, err
		}
		if s.account, err = login.New(login.Config{Store: s.store, Tickets: signer, Node: n, BcryptCost: cfg.BcryptCost, Metrics: s.metrics}); err != nil {
			return s, err
		}
		ln, err := net.Listen("tcp", cfg.LoginAddr)
		if err != nil {
			return s, fmt.Errorf("login HTTP: %w (choose another address with -login)", err)
		}
		s.login = &http.Server{Handler: withWeb(s.account.Handler(), webHandler(cfg)), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10,
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
		scheme, serve := "http", func() error { return s.login.Serve(ln) }
		if s.tlsPair != nil {
			scheme = "https"
			s.login.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*s.tlsPair}}
			serve = func() error { return s.login.ServeTLS(ln, "", "") }
		}
		go s.serve("login HTTP", ln, serve)
		s.LoginURL = scheme + "://" + ln.Addr().String()
	}
	if err := s.startAdmin(); err != nil {
		return s, err
	}
	s.ready.Store(true)
	return s, nil
}

// pgOpenTimeout bounds reaching PostgreSQL at start: an unroutable host
// would otherwise hold the start for the OS's TCP timeout.
const pgOpenTimeout = 30 * time.Second

// failed delivers why the process must stop on its own: a lease of one of
// its nodes is lost for good (it ran out while the process was stopped or
// cut off from the store, or another process started a node of the same
// name), or its game node found another on another store.
func (s *server) failed() <-chan error {
	ch := make(chan error, 1)
	report := func(err error) {
		s.failOnce.Do(func() { ch <- err })
	}
	for _, l := range s.leases {
		go func() {
			<-l.Fenced()
			report(fmt.Errorf("node %s lost its lease in the store; start the process again", l.Owner().Node))
		}()
	}
	if s.game != nil {
		go func() { report(<-s.game.Stopped()) }()
	}
	return ch
}

// openStore opens the configured store backend. On error the returned
// Store is a nil interface, never a nil *Bolt or *Postgres inside one
// (which stop would then try to close).
func openStore(ctx context.Context, cfg config) (store.Store, error) {
	switch cfg.Store {
	case "", "bbolt":
		st, err := store.OpenBolt(filepath.Join(cfg.DataDir, "citadel.db"))
		if err != nil {
			return nil, fmt.Errorf("-data %s: %w", cfg.DataDir, err)
		}
		return st, nil
	case "postgres":
		ctx, cancel := context.WithTimeout(ctx, pgOpenTimeout)
		defer cancel()
		st, err := store.OpenPostgres(ctx, cfg.PostgresDSN)
		if err != nil {
			return nil, fmt.Errorf("-pg: %w (check the DSN and that PostgreSQL is reachable)", err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("-store %s: want bbolt or postgres", cfg.Store)
}

// brokerHint says what to change when the embedded NSQ cannot start: the
// flag that sets the address nsqd or nsqlookupd could not listen on (found
// in their error, which names the component and the address), or -data
// when another process holds the queue directory.
func brokerHint(err error, cfg config) string {
	msg := err.Error()
	var flags []string
	for _, l := range []struct{ component, flag, addr string }{
		{"nsqd", "-embedded-nsqd-tcp", cfg.NSQDTCP}, {"nsqd", "-embedded-nsqd-http", cfg.NSQDHTTP},
		{"nsqlookupd", "-embedded-lookupd-tcp", cfg.LookupdTCP}, {"nsqlookupd", "-embedded-lookupd-http", cfg.LookupdHTTP},
	} {
		if strings.Contains(msg, "start "+l.component+": listen ("+l.addr+")") {
			flags = append(flags, l.flag)
		}
	}
	switch {
	case len(flags) > 0:
		return "choose another address with " + strings.Join(flags, " or ")
	case strings.Contains(msg, "listen ("):
		return "choose other addresses with " + embeddedNSQDFlags
	case strings.Contains(msg, "lock data-path"):
		return "another process uses this -data directory; give each process its own -data"
	}
	return "its queues are in <-data>/nsq; with an external NSQ cluster, use -nsqd"
}

// serve runs an HTTP server until it is shut down; any other end is
// logged, since the process then no longer serves what it printed.
func (s *server) serve(what string, ln net.Listener, serve func() error) {
	if err := serve(); !errors.Is(err, http.ErrServerClosed) {
		s.log.Error(what+" stopped serving", "addr", ln.Addr().String(), "err", err)
	}
}

// tablesHandler serves GET /tables (the tables version every game node
// runs) and POST /tables/reload (every game node reloads its tables file
// and reports what it runs). The answer is JSON; 409 if some node refused
// the file (it keeps its version) or did not answer.
func (s *server) tablesHandler(w http.ResponseWriter, r *http.Request) {
	n := s.nodes[0] // any node can ask, over the mq
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	var sts []services.TablesStatus
	switch {
	case r.URL.Path == "/tables/reload" && r.Method == http.MethodPost:
		sts = game.ReloadTablesEverywhere(ctx, n)
	case r.URL.Path == "/tables" && r.Method == http.MethodGet:
		sts = game.QueryTablesEverywhere(ctx, n)
	default:
		http.Error(w, "GET /tables or POST /tables/reload", http.StatusMethodNotAllowed)
		return
	}
	writeNodes(w, sts, func(st services.TablesStatus) string { return st.Error })
}

// writeNodes answers with every game node's report as JSON: 200, 409 if a
// node reports an error, 503 if no game node answered.
func writeNodes[T any](w http.ResponseWriter, nodes []T, errOf func(T) string) {
	code := http.StatusOK
	if len(nodes) == 0 {
		code = http.StatusServiceUnavailable
	}
	for _, n := range nodes {
		if errOf(n) != "" {
			code = http.StatusConflict
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"nodes": nodes})
}

// readiness: started, not stopping, every node holds its lease in the
// store, can publish to NSQ and gets its own messages back (Node.Health),
// and every login or gate node sees what it needs to send players
// somewhere (a gate; a game node).
func (s *server) readiness() error {
	if s.draining.Load() {
		return errors.New("not ready: draining (players and clients are moving to other nodes before this process stops)")
	}
	if !s.ready.Load() {
		return errors.New("not ready: starting or stopping")
	}
	for _, l := range s.leases {
		if !l.Valid() {
			return fmt.Errorf("not ready: node %s cannot confirm its lease with the store (unreachable or slow)", l.Owner().Node)
		}
	}
	for _, n := range s.nodes {
		if err := n.Health(); err != nil {
			return fmt.Errorf("not ready: %w", err)
		}
		m := n.Members()
		switch n.Addr().Service {
		case services.Login:
			// The same test login applies to hand out a gate, so a ready
			// process does not answer no_gate.
			if s.account != nil && !s.account.GateAvailable() {
				return errors.New("not ready: login sees no gate with a client address")
			}
		case services.Gate:
			if len(m.Alive(services.Game)) == 0 {
				return errors.New("not ready: gate sees no game node")
			}
		}
	}
	return nil
}

// rebalanceRate turns -rebalance-rate 0 (off) into game.Config's "off".
func rebalanceRate(r float64) float64 {
	if r <= 0 {
		return -1
	}
	return r
}

// drain moves this process's work to the other nodes before it stops: a
// game node hands its players off, a gate sends its clients to other
// gates, both at most DrainRate a second and within ctx. Where no other
// node takes the work, it says so and the stop that follows saves and
// closes as without a drain.
func (s *server) drain(ctx context.Context) {
	if !s.draining.CompareAndSwap(false, true) {
		return
	}
	var wg sync.WaitGroup
	if s.game != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.game.Drain(ctx); err != nil {
				s.log.Warn("game node drain incomplete", "err", err)
			}
		}()
	}
	if s.gate != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.gate.Drain(ctx, s.cfg.DrainRate); err != nil {
				s.log.Warn("gate drain incomplete", "err", err)
			}
		}()
	}
	wg.Wait()
}

// drainRequested is signalled by POST /drain.
func (s *server) drainRequested() <-chan struct{} { return s.drainReq }

// stop shuts down in reverse: stop accepting (login, gate), let players
// save (game node drain), then the mq and the store.
func (s *server) stop(ctx context.Context) error {
	s.ready.Store(false)
	s.cancel()
	var errs []error
	if s.login != nil {
		errs = append(errs, s.login.Shutdown(ctx))
	}
	if s.gate != nil {
		errs = append(errs, s.gate.Stop(ctx))
	}
	for i := len(s.nodes) - 1; i >= 0; i-- {
		// Reverse start order: login, gate, then game, whose players save
		// as their actors stop.
		errs = append(errs, s.nodes[i].Stop(ctx))
	}
	if s.plugins != nil {
		s.plugins.Stop() // after the game node: no player calls a plugin now
	}
	if s.saver != nil {
		// After the game node: players saving as they stopped are queued.
		errs = append(errs, s.saver.Stop(ctx))
	}
	for _, l := range s.leases {
		// After every save: the node's players are free for others at once.
		errs = append(errs, l.End(ctx))
	}
	if s.admin != nil {
		errs = append(errs, s.admin.Shutdown(ctx))
	}
	if s.broker != nil {
		errs = append(errs, s.broker.Close())
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	return errors.Join(errs...)
}
