package mq

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nsqio/nsq/nsqadmin"
	"github.com/nsqio/nsq/nsqd"
	"github.com/nsqio/nsq/nsqlookupd"
)

// BrokerConfig configures an embedded NSQ broker. The zero value of every
// field but DataDir is a sensible default.
type BrokerConfig struct {
	// DataDir holds nsqd's queues and metadata. Required; created if missing.
	// Only one broker may use a data dir at a time (nsqd locks it).
	DataDir string

	// TCPAddr and HTTPAddr are nsqd's listen addresses. Defaults
	// 127.0.0.1:4150 and 127.0.0.1:4151; use "127.0.0.1:0" for an ephemeral port.
	TCPAddr  string
	HTTPAddr string

	// LookupdTCPAddr and LookupdHTTPAddr are the embedded nsqlookupd's listen
	// addresses. Defaults 127.0.0.1:4160 and 127.0.0.1:4161.
	LookupdTCPAddr  string
	LookupdHTTPAddr string
	// NoLookupd skips the embedded nsqlookupd (a single-process deployment
	// does not need discovery).
	NoLookupd bool
	// ExternalLookupdTCP registers the embedded nsqd with these external
	// nsqlookupd TCP addresses as well.
	ExternalLookupdTCP []string

	// MemQueueSize is how many messages per topic and channel nsqd keeps in
	// memory before spilling to disk. 0 means nsqd's default (10000); a
	// negative value means 0: every message is written through to disk, so a
	// SIGKILL loses nothing that was published.
	MemQueueSize int64
	// MaxMsgSize is the largest message nsqd accepts. Default 1 MiB.
	MaxMsgSize int64
	// SyncEvery is how many messages nsqd writes between fsyncs of a disk
	// queue. Default nsqd's (2500).
	SyncEvery int64
	// MsgTimeout is how long a delivered message may stay unanswered before
	// nsqd redelivers it. Default 60s.
	MsgTimeout time.Duration

	// Keys is the cluster keyring BusConfig hands out. Default: a new
	// random key, so only this process can publish and consume (fine for
	// an all-in-one server and tests; other processes need the same keys).
	Keys *Keyring

	// Logger receives nsqd and nsqlookupd logs. Default slog.Default().
	Logger *slog.Logger
	// LogLevel filters the daemons' own logs; they are chatty at info.
	// Default slog.LevelWarn.
	LogLevel *slog.Level
}

// Broker is an embedded nsqd plus (optionally) nsqlookupd, running in this
// process on loopback. Nodes reach it through a Bus like any external NSQ
// cluster: BusConfig returns the addresses.
type Broker struct {
	cfg     BrokerConfig
	log     *slog.Logger
	nsqd    *nsqd.NSQD
	lookupd *nsqlookupd.NSQLookupd

	mu      sync.Mutex
	admins  []*nsqadmin.NSQAdmin
	done    chan struct{}
	closed  bool
	closing atomic.Bool // quiets the daemons' complaints about connections closed by Close
}

// StartBroker starts an embedded broker. It loads the topics and channels
// persisted in DataDir (so messages queued before a clean stop are delivered
// after restart) and returns once nsqd is listening.
func StartBroker(cfg BrokerConfig) (*Broker, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("mq: BrokerConfig.DataDir is required")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("mq: create broker data dir: %w", err)
	}
	if cfg.Keys == nil {
		keys, err := ParseKeyring(GenerateKeyring())
		if err != nil {
			return nil, err
		}
		cfg.Keys = keys
	}
	b := &Broker{cfg: cfg, log: cfg.Logger, done: make(chan struct{})}
	if b.log == nil {
		b.log = slog.Default()
	}
	level := slog.LevelWarn
	if cfg.LogLevel != nil {
		level = *cfg.LogLevel
	}

	var lookupTCP []string
	if !cfg.NoLookupd {
		lo := nsqlookupd.NewOptions()
		lo.TCPAddress = orDefault(cfg.LookupdTCPAddr, "127.0.0.1:4160")
		lo.HTTPAddress = orDefault(cfg.LookupdHTTPAddr, "127.0.0.1:4161")
		lo.BroadcastAddress = hostOf(lo.TCPAddress)
		lo.Logger = slogWriter{log: b.log.With("component", "nsqlookupd"), quiet: &b.closing}
		lo.LogLevel = nsqLevel(level, nsqlookupd.LOG_DEBUG, nsqlookupd.LOG_INFO, nsqlookupd.LOG_WARN, nsqlookupd.LOG_ERROR)
		l, err := nsqlookupd.New(lo)
		if err != nil {
			return nil, fmt.Errorf("mq: start nsqlookupd: %w", err)
		}
		b.lookupd = l
		go b.run("nsqlookupd", l.Main)
		lookupTCP = append(lookupTCP, l.RealTCPAddr().String())
	}
	lookupTCP = append(lookupTCP, cfg.ExternalLookupdTCP...)

	o := nsqd.NewOptions()
	o.DataPath = cfg.DataDir
	o.TCPAddress = orDefault(cfg.TCPAddr, "127.0.0.1:4150")
	o.HTTPAddress = orDefault(cfg.HTTPAddr, "127.0.0.1:4151")
	o.HTTPSAddress = ""
	o.BroadcastAddress = hostOf(o.TCPAddress)
	o.NSQLookupdTCPAddresses = lookupTCP
	o.Logger = slogWriter{log: b.log.With("component", "nsqd"), quiet: &b.closing}
	o.LogLevel = nsqLevel(level, nsqd.LOG_DEBUG, nsqd.LOG_INFO, nsqd.LOG_WARN, nsqd.LOG_ERROR)
	o.StatsdPrefix = ""
	switch {
	case cfg.MemQueueSize < 0:
		o.MemQueueSize = 0
	case cfg.MemQueueSize > 0:
		o.MemQueueSize = cfg.MemQueueSize
	}
	if cfg.MaxMsgSize > 0 {
		o.MaxMsgSize = cfg.MaxMsgSize
	}
	if cfg.SyncEvery > 0 {
		o.SyncEvery = cfg.SyncEvery
	}
	if cfg.MsgTimeout > 0 {
		o.MsgTimeout = cfg.MsgTimeout
	}
	// A deflate stream could look like the start of a frame to frameConn
	// and be held back; snappy and TLS are recognised (and TLS needs a
	// certificate the embedded nsqd does not have). Clients that ask for
	// deflate are told no and go on uncompressed.
	o.DeflateEnabled = false
	n, err := nsqd.New(o)
	if err != nil {
		b.stopLookupd()
		return nil, fmt.Errorf("mq: start nsqd: %w", err)
	}
	// Without LoadMetadata a restarted nsqd forgets its channels, and with
	// them every message queued on them.
	if err := n.LoadMetadata(); err != nil {
		n.Exit()
		b.stopLookupd()
		return nil, fmt.Errorf("mq: load nsqd metadata from %s: %w", cfg.DataDir, err)
	}
	if err := n.PersistMetadata(); err != nil {
		n.Exit()
		b.stopLookupd()
		return nil, fmt.Errorf("mq: persist nsqd metadata in %s: %w", cfg.DataDir, err)
	}
	if !joinFrames(n) {
		b.log.Warn("embedded nsqd: could not join frame writes (nsqd internals changed); consumers get three writes per message")
	}
	b.nsqd = n
	go b.run("nsqd", n.Main)
	if err := b.waitServing(); err != nil {
		b.Close()
		return nil, err
	}
	b.log.Info("embedded NSQ started", "nsqd_tcp", b.TCPAddr(), "nsqd_http", b.HTTPAddr(),
		"lookupd_http", b.LookupdHTTPAddr(), "data_dir", cfg.DataDir)
	return b, nil
}

// waitServing returns once nsqd answers /ping. nsqd.Main starts its servers
// and loops in goroutines and gives no signal; calling Exit before Main has
// registered them all races on nsqd's WaitGroup (seen with -race when a
// broker is closed right after starting), so StartBroker waits for Main to
// be serving and then a moment for its last loops to be registered.
func (b *Broker) waitServing() error {
	deadline := time.Now().Add(10 * time.Second)
	url := "http://" + b.HTTPAddr() + "/ping"
	for {
		resp, err := httpClient.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				time.Sleep(20 * time.Millisecond)
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mq: embedded nsqd did not answer %s within 10s: %v", url, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (b *Broker) run(name string, main func() error) {
	if err := main(); err != nil {
		select {
		case <-b.done:
		default:
			b.log.Error("embedded daemon stopped", "daemon", name, "err", err)
		}
	}
}

// TCPAddr is nsqd's TCP address (for producers and consumers).
func (b *Broker) TCPAddr() string { return b.nsqd.RealTCPAddr().String() }

// HTTPAddr is nsqd's HTTP address (stats, topic and channel creation).
func (b *Broker) HTTPAddr() string { return b.nsqd.RealHTTPAddr().String() }

// LookupdHTTPAddr is the embedded nsqlookupd's HTTP address, or "" without one.
func (b *Broker) LookupdHTTPAddr() string {
	if b.lookupd == nil {
		return ""
	}
	return b.lookupd.RealHTTPAddr().String()
}

// LookupdTCPAddr is the embedded nsqlookupd's TCP address (where other nsqd
// register), or "" without one.
func (b *Broker) LookupdTCPAddr() string {
	if b.lookupd == nil {
		return ""
	}
	return b.lookupd.RealTCPAddr().String()
}

// BusConfig returns a Bus configuration for this broker: publishing goes
// into nsqd in-process, consumers connect to its TCP address directly (no
// lookupd polling delay).
func (b *Broker) BusConfig() BusConfig {
	return BusConfig{NSQD: []string{b.TCPAddr()}, NSQDHTTP: []string{b.HTTPAddr()}, Local: b, Keys: b.cfg.Keys}
}

// put publishes bodies to topic in-process, the way nsqd's HTTP /mpub does.
func (b *Broker) put(topic string, bodies [][]byte) error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return errors.New("embedded broker is closed")
	}
	t := b.nsqd.GetTopic(topic)
	msgs := make([]*nsqd.Message, len(bodies))
	for i, body := range bodies {
		msgs[i] = nsqd.NewMessage(t.GenerateID(), body)
	}
	return t.PutMessages(msgs)
}

// CreateChannel creates topic and channel in-process, so that messages
// published from now on are kept for the channel even before any consumer
// connects.
func (b *Broker) CreateChannel(topic, channel string) error {
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	if err := ValidateChannel(channel); err != nil {
		return err
	}
	b.nsqd.GetTopic(topic).GetChannel(channel)
	return nil
}

// ChannelStats is a snapshot of one channel of the embedded nsqd.
type ChannelStats struct {
	Depth    int64  // messages waiting, in memory and on disk
	InFlight int    // delivered, not yet finished or requeued
	Deferred int    // requeued with a delay, not yet due
	Messages uint64 // messages the channel has received
	Requeues uint64 // REQ responses
	Timeouts uint64 // messages redelivered after MsgTimeout
	Clients  int    // connected consumers
}

// ChannelStats reports the state of a channel; ok is false if the topic or
// channel does not exist.
func (b *Broker) ChannelStats(topic, channel string) (stats ChannelStats, ok bool) {
	for _, ts := range b.nsqd.GetStats(topic, channel, false).Topics {
		for _, cs := range ts.Channels {
			return ChannelStats{
				Depth: cs.Depth, InFlight: cs.InFlightCount, Deferred: cs.DeferredCount,
				Messages: cs.MessageCount, Requeues: cs.RequeueCount, Timeouts: cs.TimeoutCount,
				Clients: cs.ClientCount,
			}, true
		}
	}
	return ChannelStats{}, false
}

// AdminHandler returns the nsqadmin web UI as an http.Handler to mount on the
// node's own mux under basePath (for example mux.Handle("/nsqadmin/", h)).
// It reads cluster state from the embedded nsqlookupd, or from nsqd directly
// without one.
func (b *Broker) AdminHandler(basePath string) (http.Handler, error) {
	o := nsqadmin.NewOptions()
	// nsqadmin.New insists on a listener of its own; it is never served.
	o.HTTPAddress = "127.0.0.1:0"
	o.BasePath = basePath
	o.Logger = slogWriter{log: b.log.With("component", "nsqadmin"), quiet: &b.closing}
	o.LogLevel = nsqadmin.LOG_WARN
	if b.lookupd != nil {
		o.NSQLookupdHTTPAddresses = []string{b.LookupdHTTPAddr()}
	} else {
		o.NSQDHTTPAddresses = []string{b.HTTPAddr()}
	}
	a, err := nsqadmin.New(o)
	if err != nil {
		return nil, fmt.Errorf("mq: nsqadmin: %w", err)
	}
	b.mu.Lock()
	b.admins = append(b.admins, a)
	b.mu.Unlock()
	h := nsqadmin.NewHTTPServer(a)
	index := path.Clean("/" + basePath)
	// nsqadmin serves its index at basePath without a trailing slash and
	// redirects "basePath/" there, while a ServeMux pattern "basePath/"
	// redirects the other way; answer "basePath/" directly.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == index+"/" {
			r2 := r.Clone(r.Context())
			r2.URL.Path = index
			h.ServeHTTP(w, r2)
			return
		}
		h.ServeHTTP(w, r)
	}), nil
}

// Close stops the broker cleanly: nsqd flushes in-memory, in-flight and
// deferred messages to disk and persists its metadata, so a broker started
// later on the same DataDir delivers them.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.closing.Store(true)
	close(b.done)
	admins := b.admins
	b.mu.Unlock()
	for _, a := range admins {
		a.Exit()
	}
	b.nsqd.Exit()
	b.stopLookupd()
	b.log.Info("embedded NSQ stopped", "data_dir", b.cfg.DataDir)
	return nil
}

func (b *Broker) stopLookupd() {
	if b.lookupd != nil {
		b.lookupd.Exit()
	}
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// hostOf returns the host part of a listen address, or 127.0.0.1 for a
// wildcard: it is what the broker advertises to consumers via lookupd.
func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" || host == "0.0.0.0" || host == "::" {
		return "127.0.0.1"
	}
	return host
}

// nsqLevel picks the NSQ daemon level matching l; NSQ's level type is
// internal to its module, so the caller passes the daemon's constants.
func nsqLevel[T any](l slog.Level, debug, info, warn, err T) T {
	switch {
	case l <= slog.LevelDebug:
		return debug
	case l <= slog.LevelInfo:
		return info
	case l <= slog.LevelWarn:
		return warn
	default:
		return err
	}
}
