package citadel

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/game"
	"github.com/citadel-go/citadel/services"
	"github.com/hashicorp/go-plugin"
)

// defaultGOGC is -gogc's default (decisions.md 12); benchmarks that run the
// server in the test process set it too, so they measure what ships.
const defaultGOGC = 400

// listFlag collects repeated or comma-separated values.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// GameFlags is a game with settings of its own, given as flags of the
// server: Flags adds them to the server's flag set before the command line
// is parsed; CheckFlags then reports every bad value, one line each.
type GameFlags interface {
	Flags(fs *flag.FlagSet)
	CheckFlags() []string
}

// Main runs a Citadel server for g with the process's command line, and
// exits when it stops: 0 after a clean stop, 1 with the reason on stderr.
// A studio's main is:
//
//	func main() { citadel.Main(&mygame.Game{}) }
func Main(g game.Game) {
	err := Run(g, os.Args[1:])
	switch {
	case errors.Is(err, flag.ErrHelp):
		// -h or -help: the usage went to stderr; asking for it is no error.
	case err != nil:
		// One line per problem (flag checks report them all at once).
		name := filepath.Base(os.Args[0])
		fmt.Fprintln(os.Stderr, name+":", strings.ReplaceAll(err.Error(), "\n", "\n"+name+": "))
		os.Exit(1)
	}
}

// Run runs a Citadel server for g with the flags in args (citadel -h lists
// them): every role in one process by default, with the embedded NSQ and
// store. It returns when the server has stopped: after SIGINT or SIGTERM
// (a drain first), POST /drain, or a failure it returns.
func Run(g game.Game, args []string) error {
	// Whatever happens below, no plugin process outlives this one.
	defer plugin.CleanupClients()
	fs := flag.NewFlagSet("citadel", flag.ContinueOnError)
	var roles, nsqd, nsqdHTTP, lookupd, origins listFlag
	fs.Var(&roles, "role", "roles to run: login, gate, game (repeat or comma list; default all three)")
	dataDir := fs.String("data", "data", "data directory (store, embedded NSQ queues, key files)")
	nodeID := fs.String("id", "1", "node ID suffix: -id 2 names this process's nodes login-2, gate-2, game-2")
	fs.Var(&nsqd, "nsqd", "external nsqd TCP address(es); set to use an external NSQ cluster instead of the embedded one")
	fs.Var(&nsqdHTTP, "nsqd-http", "external nsqd HTTP address(es), to create channels ahead of consumers")
	fs.Var(&lookupd, "lookupd", "external nsqlookupd HTTP address(es) for discovery")
	embTCP := fs.String("embedded-nsqd-tcp", "127.0.0.1:4150", "embedded nsqd TCP address")
	embHTTP := fs.String("embedded-nsqd-http", "127.0.0.1:4151", "embedded nsqd HTTP address")
	embLTCP := fs.String("embedded-lookupd-tcp", "127.0.0.1:4160", "embedded nsqlookupd TCP address")
	embLHTTP := fs.String("embedded-lookupd-http", "127.0.0.1:4161", "embedded nsqlookupd HTTP address")
	loginAddr := fs.String("login", "127.0.0.1:8000", "login HTTP listen address")
	gateTCP := fs.String("gate-tcp", "127.0.0.1:7000", "gate TCP listen address (empty disables)")
	gateWS := fs.String("gate-ws", "127.0.0.1:7001", "gate WebSocket listen address (empty disables)")
	publicTCP := fs.String("public-tcp", "", "gate TCP address advertised to clients (default: the listen address)")
	publicWS := fs.String("public-ws", "", "gate WebSocket URL advertised to clients (default: from the listen address)")
	admin := fs.String("admin", "127.0.0.1:8080", "admin HTTP address: /healthz /readyz /metrics open; /tables /plugins /debug/pprof/ /nsqadmin/ need the admin token")
	cert := fs.String("tls-cert", "", "TLS certificate for login HTTPS and gate wss")
	key := fs.String("tls-key", "", "TLS key for -tls-cert")
	fs.Var(&origins, "ws-origin", "browser origins allowed to open WebSockets (repeat; * for any)")
	webClient := fs.Bool("web", false, "serve the game's browser client at / of the login listener (open the login URL); its origin is allowed to open WebSockets")
	ticketKeyFile := fs.String("ticket-key-file", "", "file with the hex ticket signing key that login and gates share (default <data>/ticket.key, created if missing; "+envTicketKey+" wins)")
	clusterKeyFile := fs.String("cluster-key-file", "", "file with the cluster key that signs NSQ messages, the same in every process (default <data>/cluster.key, created if missing only with the embedded NSQ; "+envClusterKey+" wins)")
	adminTokenFile := fs.String("admin-token-file", "", "file with the admin HTTP token (default <data>/admin.token, created if missing; "+envAdminToken+" wins)")
	nsqTLSFlag := fs.Bool("nsq-tls", false, "use TLS to the external nsqd (-nsqd)")
	nsqCA := fs.String("nsq-ca-file", "", "PEM CA certificate(s) that verify the external nsqd's certificate (default: the system's)")
	nsqCert := fs.String("nsq-cert-file", "", "PEM client certificate for an nsqd with --tls-client-auth-policy")
	nsqKey := fs.String("nsq-key-file", "", "PEM key of -nsq-cert-file")
	nsqAuthFile := fs.String("nsq-auth-secret-file", "", "file with the secret for the external nsqd's AUTH (--auth-http-address; "+envNSQAuthSecret+" wins)")
	bcryptCost := fs.Int("bcrypt-cost", 10, "password hashing cost (10 ≈ 50ms per login on 2 cores; lower only for load tests)")
	grace := fs.Duration("grace", 30*time.Second, "how long a disconnected player's actor waits for a reconnect")
	saveInterval := fs.Duration("save-interval", 5*time.Second, "how often a changed player is saved; bounds what a crash can lose")
	leaseTTL := fs.Duration("lease-ttl", 5*time.Second, "how long a node's lease in the store lasts without renewal (renewed every fifth of it): how long the cluster waits before another node may take over the players of a node that stopped answering")
	nodeHeartbeat := fs.Duration("node-heartbeat", time.Second, "how often each node announces itself to the cluster (and probes its own NSQ channel)")
	memberTTL := fs.Duration("member-ttl", 3*time.Second, "how long a node may stay silent before the others suspect it: new players go elsewhere, its sessions' requests wait; only its lease running out (-lease-ttl) makes it gone; at least twice -node-heartbeat")
	drainRate := fs.Float64("drain-rate", 200, "on a drain (SIGTERM, POST /drain): players a game node hands to other game nodes, and clients a gate sends to other gates, per second")
	drainTimeout := fs.Duration("drain-timeout", time.Minute, "how long a drain may take; then the players left are saved and their clients told to log in again")
	rebalanceRate := fs.Float64("rebalance-rate", 100, "players per second moved, with their connections open, to a game node that joins or comes back (0: off)")
	holdTimeout := fs.Duration("hold-timeout", 30*time.Second, "how long a gate holds a session's requests while its player moves or its game node is suspect; then the session is closed")
	storeKind := fs.String("store", "bbolt", "player and account store: bbolt (a file in -data) or postgres (-pg)")
	pgDSN := fs.String("pg", "", "PostgreSQL DSN for -store=postgres")
	heartbeat := fs.Duration("heartbeat", 10*time.Second, "client heartbeat interval (idle timeout is 3x)")
	maxFrame := fs.Int("max-frame", 64<<10, "largest client frame in bytes, both directions")
	clientRate := fs.Float64("client-rate", 100, "frames per second a client session may send (burst: twice that); more is kicked")
	maxConns := fs.Int("max-conns", 10000, "client connections a gate holds at most, logged in or not (keep under the open-file limit); more are refused with server_full")
	maxPending := fs.Int("max-pending", 1024, "client connections a gate holds at most that have not logged in yet")
	authTimeout := fs.Duration("auth-timeout", 10*time.Second, "how long a new client connection has to send its Auth frame")
	handshakeTimeout := fs.Duration("ws-handshake-timeout", 5*time.Second, "how long a WebSocket client has to send its upgrade request (and an HTTP connection may idle without upgrading)")
	sendQueueBytes := fs.Int("send-queue-bytes", 256<<10, "bytes a gate queues for one client at most; a client that lets more pile up unread is kicked (slow_client)")
	tablesPath := fs.String("tables", "", "designer tables data file (tables.bin from citadel-tables export); default: the tables built into the binary")
	tablesWatch := fs.Duration("tables-watch", 0, "reload -tables when the file changes, checking this often (0: only on POST /tables/reload)")
	pluginsDir := fs.String("plugins", "", "plugin folder: one folder per plugin, the newest build in each runs (default <data>/plugins; - for none)")
	pluginsWatch := fs.Duration("plugins-watch", 0, "swap a plugin when a newer build appears in its folder, checking this often (0: only on POST /plugins/swap)")
	buildPlugins := fs.Bool("build-plugins", true, "build the example combat plugin into the plugin folder if it has none (needs the source tree and go)")
	gogc := fs.Int("gogc", defaultGOGC, fmt.Sprintf("garbage collector target percent, %d to %d (as GOGC; the GOGC environment variable wins when set): "+
		"fewer collections for more memory, since on a few cores each collection's mark phase delays requests", minGOGC, maxGOGC))
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")
	gameFlags, _ := g.(GameFlags)
	if gameFlags != nil {
		gameFlags.Flags(fs)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if gameFlags != nil {
		if bad := gameFlags.CheckFlags(); len(bad) > 0 {
			return errors.New(strings.Join(bad, "\n"))
		}
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: every setting is a flag (citadel -h lists them)", fs.Arg(0))
	}
	if len(roles) == 0 {
		roles = listFlag{services.Login, services.Gate, services.Game}
	}
	if _, ok := g.(WebClient); *webClient && !ok {
		return errors.New("-web: this game has no browser client to serve")
	}
	if *webClient {
		origins = append(origins, webOrigins(*loginAddr, *cert != "")...)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level %s: want debug, info, warn or error", *logLevel)
	}
	log, err := framework.NewLogger(os.Stderr, *logLevel, *logFormat)
	if err != nil {
		return fmt.Errorf("-log-format %s: want text or json", *logFormat)
	}
	if *gogc < minGOGC || *gogc > maxGOGC {
		return fmt.Errorf("-gogc %d: want %d to %d (GOGC=off in the environment turns the collector off)", *gogc, minGOGC, maxGOGC)
	}
	if *webClient && len(webOrigins(*loginAddr, *cert != "")) == 0 {
		log.Warn("-web: the page's origin cannot be derived from -login (a port chosen at start?); allow it with -ws-origin or the page cannot open WebSockets", "login", *loginAddr)
	}
	if dsnHasPassword(*pgDSN) {
		log.Warn("the -pg DSN holds a password, which every user can read in the process list; put it in PGPASSWORD or ~/.pgpass instead")
	}
	// Read the secrets from the environment, then remove them from it:
	// plugin processes and builds inherit the environment.
	env := map[string]string{}
	for _, name := range secretEnvs {
		env[name] = os.Getenv(name)
		os.Unsetenv(name)
	}
	cfg := config{Game: g, Roles: roles, DataDir: *dataDir, NodeID: *nodeID,
		NSQDTCP: *embTCP, NSQDHTTP: *embHTTP, LookupdTCP: *embLTCP, LookupdHTTP: *embLHTTP,
		NSQD: nsqd, NSQDHTTPExt: nsqdHTTP, Lookupd: lookupd,
		LoginAddr: *loginAddr, GateTCP: *gateTCP, GateWS: *gateWS, AdminAddr: *admin,
		PublicTCP: *publicTCP, PublicWS: *publicWS, TLSCert: *cert, TLSKey: *key, AllowedOrigins: origins, Web: *webClient,
		BcryptCost: *bcryptCost, Grace: *grace, SaveInterval: *saveInterval, LeaseTTL: *leaseTTL,
		NodeHeartbeat: *nodeHeartbeat, MemberTTL: *memberTTL,
		DrainRate: *drainRate, DrainTimeout: *drainTimeout, RebalanceRate: *rebalanceRate, HoldTimeout: *holdTimeout,
		Store: *storeKind, PostgresDSN: *pgDSN, Heartbeat: *heartbeat, MaxFrame: *maxFrame, ClientRate: *clientRate,
		MaxConns: *maxConns, MaxPending: *maxPending, AuthTimeout: *authTimeout, HandshakeTimeout: *handshakeTimeout, SendQueueBytes: *sendQueueBytes,
		TablesPath: *tablesPath, TablesWatch: *tablesWatch,
		PluginsDir: *pluginsDir, PluginsWatch: *pluginsWatch, BuildPlugins: *buildPlugins, Logger: log,
		TicketKey: env[envTicketKey], TicketKeyFile: *ticketKeyFile, ClusterKey: env[envClusterKey], ClusterKeyFile: *clusterKeyFile,
		AdminToken: env[envAdminToken], AdminTokenFile: *adminTokenFile,
		NSQTLS: *nsqTLSFlag, NSQCAFile: *nsqCA, NSQCertFile: *nsqCert, NSQKeyFile: *nsqKey,
		NSQAuthSecret: env[envNSQAuthSecret], NSQAuthSecretFile: *nsqAuthFile}
	switch cfg.PluginsDir {
	case "":
		cfg.PluginsDir = filepath.Join(*dataDir, "plugins")
	case "-":
		cfg.PluginsDir = ""
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(*gogc)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := start(ctx, cfg)
	if err != nil {
		return err
	}
	if len(roles) < 3 && len(nsqd) == 0 {
		fmt.Fprintln(os.Stderr, "citadel: note: running some roles with the embedded NSQ; other processes must use -nsqd to reach it")
	}
	fmt.Printf("citadel running roles %s (data in %s)\n", strings.Join(roles, ","), *dataDir)
	if srv.broker != nil {
		fmt.Printf("  embedded nsqd %s (http %s)  other processes join with -nsqd %s -nsqd-http %s %s\n",
			srv.broker.TCPAddr(), srv.broker.HTTPAddr(), srv.broker.TCPAddr(), srv.broker.HTTPAddr(), shareHint(srv.clusterKeyFrom, "-cluster-key-file"))
	} else {
		fmt.Printf("  cluster key   %s\n", srv.clusterKeyFrom)
	}
	if srv.ticketKeyFrom != "" {
		fmt.Printf("  ticket key    %s  (login and gate processes elsewhere: %s)\n", srv.ticketKeyFrom, shareHint(srv.ticketKeyFrom, "-ticket-key-file"))
	}
	if srv.LoginURL != "" {
		fmt.Printf("  login HTTP    %s  (POST /v1/register, /v1/login)\n", srv.LoginURL)
		if *webClient {
			fmt.Printf("  browser       %s/  (the game's browser client)\n", srv.LoginURL)
		}
	}
	if srv.GateTCP != "" {
		fmt.Printf("  gate TCP      %s\n", srv.GateTCP)
	}
	if srv.GateWS != "" {
		fmt.Printf("  gate WS       %s\n", srv.GateWS)
	}
	if srv.plugins != nil {
		for _, p := range srv.plugins.List() {
			fmt.Printf("  plugin        %s %s  (pid %d, %s)\n", p.Name, p.Version, p.PID, p.Path)
		}
	}
	if from := srv.adminToken.from; filepath.IsAbs(from) {
		// printf is a shell builtin: the token never shows in a process list.
		fmt.Printf("  admin token   %s  (curl -H @<(printf 'Authorization: Bearer %%s' \"$(cat %s)\") %s/plugins)\n", from, from, srv.Admin)
	} else {
		fmt.Printf("  admin token   from %s\n", envAdminToken)
	}
	fmt.Printf("  admin         %s  (open: /healthz /readyz /metrics; with the token: /tables /plugins /debug/pprof/", srv.Admin)
	if srv.broker != nil {
		fmt.Printf(" /nsqadmin/")
	}
	fmt.Printf(")\n  play: go run ./cmd/citadel-bot -login %s -n 10 -d 30s\n", srv.LoginURL)

	var failed error
	select {
	case <-ctx.Done():
		stop()
		drainFirst(log, srv)
	case <-srv.drainRequested():
		drainFirst(log, srv)
	case failed = <-srv.failed():
		log.Error("stopping", "err", failed)
	}
	stop()
	log.Info("shutting down: closing sessions, saving players")
	shutdown, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.stop(shutdown); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if failed != nil {
		return failed
	}
	log.Info("stopped cleanly")
	return nil
}

// drainFirst hands the process's work to the other nodes before the stop
// (a second SIGTERM or SIGINT cuts it short).
func drainFirst(log *slog.Logger, srv *server) {
	log.Info("draining before the stop: moving players and clients to other nodes", "timeout", srv.cfg.DrainTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), srv.cfg.DrainTimeout)
	defer cancel()
	again, stopAgain := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopAgain()
	srv.drain(again)
}

// shareHint says how another process gets the same secret (never the
// secret): a copy of the file, or the same environment variable.
func shareHint(from, flag string) string {
	if filepath.IsAbs(from) {
		return flag + " <a copy of " + from + ">"
	}
	return "with " + strings.TrimPrefix(from, "the environment variable ") + " set as here"
}
