package framework

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citadel-go/citadel/mq"
	"github.com/prometheus/client_golang/prometheus"
)

// NodeConfig configures a Node. Zero values are defaults, except Service,
// ID and Registry.
type NodeConfig struct {
	// Service is the role this node plays ("login", "gate", "game").
	Service string
	// Incarnation numbers this start of the node: it must be greater than
	// that of every earlier start of the same node (Service and ID), so
	// other nodes can tell a restart from a delayed message. Issue it from
	// the store (store.Store.StartNode); zero uses the clock (nanoseconds
	// since 1970), which is enough only where the clock never goes back.
	Incarnation uint64
	// ID names the node within its service, unique across the cluster
	// (for example "game-1"). Service and ID use [a-zA-Z0-9_-] and are at
	// most 50 characters together (they form NSQ topic names).
	ID string
	// Registry holds the message types this node sends and receives.
	Registry *Registry
	// MQ connects the node to NSQ for remote delivery and membership. Nil
	// makes a local-only node (actors on it talk directly; nothing remote).
	MQ *mq.BusConfig
	// Logger is the node's logger. Default slog.Default().
	Logger *slog.Logger
	// Metrics is where the node registers its Prometheus metrics. Nil skips
	// registration (Stats still works).
	Metrics prometheus.Registerer

	// MailboxSize is the default mailbox bound. Default 1024.
	MailboxSize int
	// CallTimeout applies to Calls whose context has no deadline. Default 5s.
	CallTimeout time.Duration
	// GapTimeout is how long an inbound stream waits for a missing sequence
	// number before giving it up (later arrivals are still delivered, late).
	// Default 1s.
	GapTimeout time.Duration
	// MaxMessageAge drops envelopes published longer ago than this (by the
	// sender's clock, from the mq's signed seal): how long a message may
	// wait in NSQ for this node, and how long a captured one could be
	// replayed. Default 1h.
	MaxMessageAge time.Duration
	// DrainTimeout bounds how long Stop waits for mailboxes to empty.
	// Default 10s.
	DrainTimeout time.Duration
	// Inbound tunes the consumer of the node's topic. Default MaxInFlight 256.
	Inbound mq.SubscribeOptions

	// HeartbeatInterval is how often the node announces itself. Default 1s.
	HeartbeatInterval time.Duration
	// MemberTTL is how long after its last heartbeat a node becomes
	// suspect: new work avoids it, nothing it holds is given up (see
	// Membership). Default 3 × HeartbeatInterval.
	MemberTTL time.Duration
	// DeadAfter is how long a suspect node without a store lease (a gate,
	// a login node) stays a member before it is dropped. A node with a
	// lease stays until the store says its lease is over (Bury). Default
	// max(20 × MemberTTL, 1m).
	DeadAfter time.Duration
	// Meta is advertised to other nodes in heartbeats (addresses, version).
	Meta map[string]string
}

// DeadLetterFunc is told about a remote Send its target actor did not take:
// who sent it (and the sender's incarnation), to whom, and why.
type DeadLetterFunc func(from Addr, fromIncarnation uint64, to Addr, msg any, err error)

const (
	stateCreated int32 = iota
	stateRunning
	stateStopping
	stateStopped
)

// Node hosts actors, routes messages between them (directly when local,
// over NSQ when remote), correlates requests with replies, and takes part in
// cluster membership.
type Node struct {
	cfg   NodeConfig
	addr  Addr
	epoch uint64
	// leased: the incarnation came from a store lease, so membership lets
	// only the store declare this node dead.
	leased bool
	reg    *Registry
	log    *slog.Logger
	bus    *mq.Bus
	state  atomic.Int32

	procs sync.Map // actor name -> *process
	stats nodeStats

	corr    atomic.Uint64
	callsMu sync.Mutex
	calls   map[uint64]pendingCall

	out sync.Map // nodeKey -> *outStream

	inMu        sync.Mutex
	streams     map[streamKey]*inStream
	retired     map[streamKey]retiredStream
	senders     map[nodeKey]uint64 // the newest incarnation heard from each node
	sub         *mq.Subscription
	inboundHook func(*mq.Message) error // tests only: inject loss and redelivery (see onRemote)
	badLog      LogLimiter
	intern      interner // address strings of received envelopes
	latency     prometheus.Histogram

	members *Membership
	// Probes: the node sends itself a probe through its own topic every
	// heartbeat; one not back within a few heartbeats means its channel
	// does not deliver (Health).
	probeSent, probeGot atomic.Int64 // unix nanoseconds of the last sent, and of the newest received
	selfLoss            atomic.Int64 // unix nanoseconds: the node last had to ask itself to resend (its channel loses messages)
	deadLetter          atomic.Pointer[DeadLetterFunc]
	stopBg              chan struct{}
	bgDone              sync.WaitGroup
}

type callResult struct {
	msg any
	err error
}

// pendingCall is a call waiting for its reply.
type pendingCall struct {
	ch chan callResult
	to Addr
}

// NewNode validates cfg and creates a node. Actors may be spawned right
// away; Start connects it to the cluster.
func NewNode(cfg NodeConfig) (*Node, error) {
	if err := validateNodeName("service", cfg.Service); err != nil {
		return nil, err
	}
	if err := validateNodeName("node", cfg.ID); err != nil {
		return nil, err
	}
	if len(cfg.Service)+len(cfg.ID) > maxNodeNameLen {
		return nil, fmt.Errorf("framework: service %q plus node %q are %d characters; at most %d fit NSQ's names",
			cfg.Service, cfg.ID, len(cfg.Service)+len(cfg.ID), maxNodeNameLen)
	}
	leased := cfg.Incarnation != 0
	if cfg.Incarnation == 0 {
		cfg.Incarnation = uint64(time.Now().UnixNano())
	}
	if cfg.Registry == nil {
		return nil, errors.New("framework: NodeConfig.Registry is required")
	}
	if err := cfg.Registry.Register(1, (*probe)(nil)); err != nil {
		return nil, fmt.Errorf("framework: message ID 1 is the framework's: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MailboxSize <= 0 {
		cfg.MailboxSize = 1024
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 5 * time.Second
	}
	if cfg.GapTimeout <= 0 {
		cfg.GapTimeout = time.Second
	}
	if cfg.MaxMessageAge <= 0 {
		cfg.MaxMessageAge = time.Hour
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = time.Second
	}
	if cfg.MemberTTL <= 0 {
		cfg.MemberTTL = 3 * cfg.HeartbeatInterval
	}
	if cfg.DeadAfter <= 0 {
		cfg.DeadAfter = max(20*cfg.MemberTTL, time.Minute)
	}
	n := &Node{
		cfg:     cfg,
		addr:    Addr{Service: cfg.Service, Node: cfg.ID},
		epoch:   cfg.Incarnation,
		leased:  leased,
		reg:     cfg.Registry,
		calls:   make(map[uint64]pendingCall),
		streams: make(map[streamKey]*inStream),
		retired: make(map[streamKey]retiredStream),
		senders: make(map[nodeKey]uint64),
		stopBg:  make(chan struct{}),
	}
	n.log = cfg.Logger.With("service", cfg.Service, "node", cfg.ID)
	n.stats.kinds = make(map[string]*kindStats)
	n.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:        "citadel_node_remote_latency_seconds",
		Help:        "Time from publish on the sending node to receipt on this node (clocks of both hosts).",
		ConstLabels: prometheus.Labels{"service": cfg.Service, "node": cfg.ID},
		Buckets:     prometheus.ExponentialBuckets(25e-6, 2, 16),
	})
	if cfg.MQ != nil {
		busCfg := *cfg.MQ
		if busCfg.Logger == nil {
			busCfg.Logger = n.log
		}
		bus, err := mq.NewBus(busCfg)
		if err != nil {
			return nil, err
		}
		n.bus = bus
	}
	n.members = newMembership(n)
	if cfg.Metrics != nil {
		for _, c := range []prometheus.Collector{newCollector(n), n.latency} {
			if err := cfg.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("framework: register metrics of node %s: %w", n.addr.Node, err)
			}
		}
	}
	return n, nil
}

// Addr is the node's own address (Actor empty): the sender of messages
// sent with Node.Send.
func (n *Node) Addr() Addr { return n.addr }

// Incarnation is this start of the node (NodeConfig.Incarnation): envelopes
// and heartbeats carry it, and other nodes drop what is addressed to, or
// comes from, an older one.
func (n *Node) Incarnation() uint64 { return n.epoch }

// Registry returns the node's message registry.
func (n *Node) Registry() *Registry { return n.reg }

// Logger returns the node's logger.
func (n *Node) Logger() *slog.Logger { return n.log }

// Bus returns the node's NSQ bus, or nil for a local-only node; services
// use it for their own topics (broadcasts, load reports).
func (n *Node) Bus() *mq.Bus { return n.bus }

// SetDeadLetterHandler installs fn, called for a remote Send whose target
// actor does not exist or refused it (full mailbox, stopping). It runs on the
// node's inbound goroutine and must not block. Local senders get the error
// from Send itself; remote Calls get it as their reply.
func (n *Node) SetDeadLetterHandler(fn DeadLetterFunc) { n.deadLetter.Store(&fn) }

// Done is closed once Stop has stopped the node's actors: background work
// tied to the node ends with it.
func (n *Node) Done() <-chan struct{} { return n.stopBg }

// Members returns the node's view of the cluster.
func (n *Node) Members() *Membership { return n.members }

// ActorAddr returns the address of an actor named name on this node.
func (n *Node) ActorAddr(name string) Addr {
	return Addr{Service: n.addr.Service, Node: n.addr.Node, Actor: name}
}

// Start connects the node to the cluster: it joins membership, creates its
// topic's channel (so nothing sent to it is lost from now on), starts
// consuming, and announces itself. A local-only node just starts.
func (n *Node) Start(ctx context.Context) error {
	if !n.state.CompareAndSwap(stateCreated, stateRunning) {
		return fmt.Errorf("framework: node %s already started", n.addr.Node)
	}
	if n.bus == nil {
		return nil
	}
	if err := n.members.start(); err != nil {
		return err
	}
	topic := NodeTopic(n.cfg.Service, n.cfg.ID)
	if err := n.bus.EnsureChannel(ctx, topic, nodeChannel); err != nil {
		return err
	}
	// Two processes under one name would split its messages between them.
	// A process that died has lost its connection to nsqd; one that is
	// alive (or frozen) still consumes.
	if clients, err := n.bus.ChannelClients(ctx, topic, nodeChannel); err != nil {
		n.log.Warn("cannot check that no other process uses this node's name", "err", err)
	} else if clients > 0 {
		n.members.stop()
		return fmt.Errorf("framework: %w: %d consumer(s) already read %s/%s (a process running as %s/%s): give each process its own node ID (-id), or stop the other one first",
			ErrNameInUse, clients, topic, nodeChannel, n.cfg.Service, n.cfg.ID)
	}
	inbound := n.cfg.Inbound
	inbound.Unpack = true
	inbound.MaxAge = n.cfg.MaxMessageAge
	sub, err := n.bus.Subscribe(topic, nodeChannel, n.onRemote, inbound)
	if err != nil {
		return err
	}
	n.sub = sub
	n.bgDone.Add(1)
	go n.janitor()
	if err := n.members.announce(); err != nil {
		return err
	}
	n.log.Info("node started", "topic", topic, "incarnation", n.epoch)
	return nil
}

// Stop shuts the node down gracefully: it leaves membership (so no new work
// is routed here), waits until mailboxes are empty and no calls are
// outstanding, stops consuming, handles what already arrived, stops every
// actor (each gets Stopped), and finally flushes and closes the bus.
// Messages sent to the node after that stay in NSQ for its next start.
func (n *Node) Stop(ctx context.Context) error {
	if !n.state.CompareAndSwap(stateRunning, stateStopping) &&
		!n.state.CompareAndSwap(stateCreated, stateStopping) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.DrainTimeout)
	defer cancel()
	start := time.Now()
	if n.bus != nil {
		n.members.leave()
	}
	drained := n.waitQuiet(ctx)
	// Each go-nsq consumer takes ~100ms to stop (its cleanup tick); stop the
	// node topic and membership subscriptions together.
	var subs sync.WaitGroup
	if n.bus != nil {
		subs.Add(1)
		go func() { defer subs.Done(); n.members.stop() }()
	}
	if n.sub != nil {
		n.sub.Stop()
	}
	subs.Wait()
	n.inMu.Lock()
	n.flushStreamsLocked()
	n.inMu.Unlock()
	drained = n.waitQuiet(ctx) && drained

	var procs []*process
	n.procs.Range(func(_, v any) bool {
		procs = append(procs, v.(*process))
		return true
	})
	for _, p := range procs {
		p.stop()
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-ctx.Done():
			n.log.Error("actor did not stop in time", "actor", p.addr.String())
		}
	}
	close(n.stopBg)
	n.bgDone.Wait()
	var err error
	if n.bus != nil {
		err = n.bus.Close()
	}
	n.state.Store(stateStopped)
	n.log.Info("node stopped", "drained", drained, "took", time.Since(start).Round(time.Millisecond))
	if !drained {
		return fmt.Errorf("framework: node %s stopped before its mailboxes drained: %w", n.addr.Node, context.DeadlineExceeded)
	}
	return err
}

// probe is what a node sends itself through the mq (framework message 1).
type probe struct{ Sent int64 }

// sendProbe sends the node a probe through its own topic.
func (n *Node) sendProbe() {
	now := time.Now().UnixNano()
	if err := n.sendRemoteTo(kindSend, n.addr, n.addr, n.epoch, &probe{Sent: now}, nil, nil); err == nil {
		n.probeSent.Store(now)
	}
}

// Health reports what keeps the node from doing its work, or nil: it
// cannot publish to NSQ, or its own channel does not deliver (a probe it
// sent itself three heartbeats ago has not come back: a stalled stream),
// or lost a message it sent itself in the last three heartbeats (another
// consumer taking messages off its channel). Orchestrators should
// send it no players while it is unhealthy (readiness).
func (n *Node) Health() error {
	if n.bus == nil || n.state.Load() != stateRunning {
		return nil
	}
	if n.members.publishFailing.Load() {
		return fmt.Errorf("node %s cannot publish to NSQ", n.addr.Node)
	}
	if loss := n.selfLoss.Load(); loss != 0 && time.Since(time.Unix(0, loss)) < 3*n.cfg.HeartbeatInterval {
		return fmt.Errorf("node %s: its own channel lost messages %v ago (another consumer on channel %q of topic %s?)",
			n.addr.Node, time.Since(time.Unix(0, loss)).Round(time.Millisecond), nodeChannel, NodeTopic(n.addr.Service, n.addr.Node))
	}
	sent, got := n.probeSent.Load(), n.probeGot.Load()
	if late := time.Duration(sent - got); sent > got && late > 3*n.cfg.HeartbeatInterval {
		return fmt.Errorf("node %s: its own channel has not delivered a probe for %v (a stalled stream, or another consumer on channel %q of topic %s)",
			n.addr.Node, late.Round(time.Millisecond), nodeChannel, NodeTopic(n.addr.Service, n.addr.Node))
	}
	return nil
}

// waitQuiet waits until no actor has pending messages and no call awaits a
// reply, or ctx ends.
func (n *Node) waitQuiet(ctx context.Context) bool {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		quiet := true
		n.procs.Range(func(_, v any) bool {
			if v.(*process).pending.Load() > 0 {
				quiet = false
			}
			return quiet
		})
		if quiet {
			n.callsMu.Lock()
			quiet = len(n.calls) == 0
			n.callsMu.Unlock()
		}
		if quiet {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// Spawn starts an actor named name on this node.
func (n *Node) Spawn(name string, p Producer, opts SpawnOptions) (Addr, error) {
	return n.spawn(nil, name, p, opts)
}

func (n *Node) spawn(parent *process, name string, prod Producer, opts SpawnOptions) (Addr, error) {
	if err := validateActorName(name); err != nil {
		return Addr{}, err
	}
	if prod == nil {
		return Addr{}, errors.New("framework: Spawn needs a producer")
	}
	if s := n.state.Load(); s == stateStopping || s == stateStopped {
		return Addr{}, fmt.Errorf("framework: spawn %q: %w", name, ErrNodeStopped)
	}
	if opts.Kind == "" {
		opts.Kind = "actor"
	}
	if opts.MailboxSize <= 0 {
		opts.MailboxSize = n.cfg.MailboxSize
	}
	addr := n.ActorAddr(name)
	p := &process{
		node: n, addr: addr, opts: opts,
		kind:   n.stats.kind(opts.Kind),
		parent: parent,
		done:   make(chan struct{}),
	}
	if opts.RestartOnPanic {
		// Otherwise the producer is not kept: its closure may hold what
		// the actor needed only to start.
		p.producer = prod
	}
	p.ctx.proc = p
	if opts.Inline {
		// Senders that find it by name before Started has run only queue.
		p.draining = true
	} else {
		p.mailbox = newMailbox(opts.MailboxSize)
		p.mailbox.running = true // the goroutine started below; senders only queue
	}
	if _, loaded := n.procs.LoadOrStore(name, p); loaded {
		return Addr{}, fmt.Errorf("framework: spawn %s: %w", addr, ErrActorExists)
	}
	if parent != nil {
		parent.mu.Lock()
		if parent.children == nil {
			parent.children = make(map[*process]struct{})
		}
		parent.children[p] = struct{}{}
		parent.mu.Unlock()
	}
	p.actor = prod()
	p.kind.actors.Add(1)
	if opts.Inline {
		p.invoke(&envelope{msg: Started{}})
		p.inlineMu.Lock()
		p.drainLocked()
	} else {
		go p.start()
	}
	return addr, nil
}

func (n *Node) unregister(p *process) {
	n.procs.CompareAndDelete(p.addr.Actor, p)
	p.kind.actors.Add(-1)
}

// StopActor stops a local actor after its current message and waits until
// it has handled Stopped.
func (n *Node) StopActor(ctx context.Context, a Addr) error {
	if !n.isLocal(a) {
		return fmt.Errorf("framework: StopActor %s: not on this node", a)
	}
	v, ok := n.procs.Load(a.Actor)
	if !ok {
		return fmt.Errorf("framework: StopActor %s: %w", a, ErrActorNotFound)
	}
	p := v.(*process)
	p.stop()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Send delivers msg to an actor, local or remote, with the node as sender.
// It returns an error at once for an unregistered type, a message too large
// for the mq, or (locally) a missing actor or full mailbox; remote delivery
// is asynchronous and at least once, de-duplicated and ordered per sending
// node by the receiver.
func (n *Node) Send(to Addr, msg any) error { return n.send(n.addr, to, msg) }

// SendTo is Send to one incarnation of the destination node: to what lives
// in that process only, never to a later start of the node (a session, a
// player's actor). It returns ErrNodeUnknown without sending if the node
// has restarted since or is gone.
func (n *Node) SendTo(to Addr, incarnation uint64, msg any) error {
	return n.sendTo(n.addr, to, incarnation, msg)
}

func (n *Node) sendTo(from, to Addr, incarnation uint64, msg any) error {
	if n.state.Load() == stateStopped {
		return ErrNodeStopped
	}
	if n.isLocal(to) {
		if incarnation != n.epoch {
			return fmt.Errorf("framework: send %T to %s incarnation %d (this is %d): %w", msg, to, incarnation, n.epoch, ErrNodeUnknown)
		}
		return n.send(from, to, msg)
	}
	if current := n.members.epochOf(to.Service, to.Node); current > incarnation {
		return fmt.Errorf("framework: send %T to %s incarnation %d: it has restarted as %d: %w", msg, to, incarnation, current, ErrNodeUnknown)
	}
	return n.sendRemoteTo(kindSend, from, to, incarnation, msg, nil, nil)
}

// Call sends a request and waits for the reply or ctx's deadline (default
// CallTimeout). A callee that does not answer in time, including a node that
// is down, yields a *TimeoutError (errors.Is ErrTimeout).
func (n *Node) Call(ctx context.Context, to Addr, msg any) (any, error) {
	return n.call(ctx, n.addr, to, msg)
}

func (n *Node) isLocal(a Addr) bool {
	return a.Node == n.addr.Node && a.Service == n.addr.Service
}

func (n *Node) send(from, to Addr, msg any) error {
	if n.state.Load() == stateStopped {
		return ErrNodeStopped
	}
	if n.isLocal(to) {
		if _, err := n.reg.ID(msg); err != nil {
			return err
		}
		return n.deliverLocal(to, envelope{from: from, msg: msg})
	}
	return n.sendRemote(kindSend, from, to, msg, nil, nil)
}

func (n *Node) deliverLocal(to Addr, env envelope) error {
	v, ok := n.procs.Load(to.Actor)
	if !ok {
		n.stats.deadLetters.Add(1)
		return fmt.Errorf("framework: %s: %w", to, ErrActorNotFound)
	}
	return v.(*process).enqueue(env)
}

func (n *Node) call(ctx context.Context, from, to Addr, msg any) (any, error) {
	if n.state.Load() == stateStopped {
		return nil, ErrNodeStopped
	}
	if _, err := n.reg.ID(msg); err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.cfg.CallTimeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	id := n.corr.Add(1)
	ch := make(chan callResult, 1)
	n.callsMu.Lock()
	n.calls[id] = pendingCall{ch: ch, to: to}
	n.callsMu.Unlock()
	defer func() {
		n.callsMu.Lock()
		delete(n.calls, id)
		n.callsMu.Unlock()
	}()
	n.stats.calls.Add(1)
	req := &request{corrID: id, replyTo: n.addr, deadline: deadline}
	var err error
	if n.isLocal(to) {
		err = n.deliverLocal(to, envelope{from: from, msg: msg, req: req})
	} else {
		err = n.sendRemote(kindRequest, from, to, msg, req, nil)
	}
	if err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		return r.msg, nil
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			n.stats.callTimeouts.Add(1)
			return nil, &TimeoutError{To: to, MsgType: fmt.Sprintf("%T", msg), cause: ctx.Err()}
		}
		return nil, ctx.Err()
	}
}

// reply answers req with msg or rerr, locally or over the mq.
func (n *Node) reply(req *request, from Addr, msg any, rerr *RemoteError) error {
	if time.Now().After(req.deadline) {
		n.stats.lateReplies.Add(1)
		return fmt.Errorf("framework: reply to %s after its deadline: %w", req.replyTo, ErrTimeout)
	}
	if rerr == nil {
		if _, err := n.reg.ID(msg); err != nil {
			// The caller still gets an answer instead of waiting out its deadline.
			n.log.Error("reply has an unregistered type; the caller gets an error", "type", fmt.Sprintf("%T", msg))
			rerr = toRemoteError(err)
			msg = nil
		}
	}
	if n.isLocal(req.replyTo) {
		n.resolveCall(req.corrID, msg, rerr)
		return nil
	}
	return n.sendRemote(kindReply, from, req.replyTo, msg, req, rerr)
}

func (n *Node) resolveCall(id uint64, msg any, rerr *RemoteError) {
	n.callsMu.Lock()
	c, ok := n.calls[id]
	delete(n.calls, id)
	n.callsMu.Unlock()
	if !ok {
		n.stats.lateReplies.Add(1)
		return
	}
	r := callResult{msg: msg}
	if rerr != nil {
		r.err = rerr
	}
	c.ch <- r
}

// failCallsTo ends the calls waiting on a node that left: their callers
// learn it now rather than at their deadline (and may try another node).
func (n *Node) failCallsTo(m Member) {
	n.callsMu.Lock()
	defer n.callsMu.Unlock()
	for id, c := range n.calls {
		if c.to.Service == m.Service && c.to.Node == m.Node {
			delete(n.calls, id)
			c.ch <- callResult{err: fmt.Errorf("framework: call to %s: %w (incarnation %d)", c.to, ErrNodeLeft, m.Epoch)}
		}
	}
}

// janitor forgets idle inbound streams.
func (n *Node) janitor() {
	defer n.bgDone.Done()
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-n.stopBg:
			return
		case now := <-t.C:
			n.inMu.Lock()
			n.forgetIdleStreamsLocked(now)
			n.inMu.Unlock()
			n.forgetOutStreams()
		}
	}
}
