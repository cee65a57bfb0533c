// Package game runs players as actors on a game node: one actor per online
// player, created when a gate attaches a session, fed the player's client
// messages in order, answering through typed handlers, and saving the
// player's state when the player leaves. Package game/sample is a small game
// built on it.
package game

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/plugins"
	"github.com/citadel-go/citadel/services"
	"github.com/citadel-go/citadel/tables"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/time/rate"
)

// Config configures a game service for player state S (msgpack-encodable).
type Config[S any] struct {
	// Node is the game node (service "game").
	Node *framework.Node
	// Store holds player records.
	Store store.Store
	// Lease is this node's lease in Store (store.StartLease): a player is
	// acquired in the node's name, so no other node serves it while the
	// lease holds, and the node stops serving players as soon as it cannot
	// be sure the lease still does.
	Lease *store.LeaseKeeper
	// Saver commits player snapshots (batched, durable); it must use Store.
	// Stop it after the node, so players saving as they stop get through.
	Saver *Saver
	// SaveInterval bounds what a crash can lose: a change older than
	// SaveInterval is durably committed. A dirty player snapshots itself
	// every 90% of it (the rest is the commit's budget); each player's
	// ticks start at a random point, so snapshots spread evenly. Default 5s.
	SaveInterval time.Duration
	// Router holds the client message handlers.
	Router *Router[S]
	// Tables holds the designer tables (a *tables.Holder of the game's
	// generated Set); optional. Handlers read them with Player.Tables, and
	// ReloadTablesEverywhere reloads them on every game node.
	Tables tables.Source
	// Plugins runs the game logic loaded from plugin binaries; optional.
	// Handlers reach it with Player.Plugins; SwapPluginEverywhere swaps a
	// plugin on every game node.
	Plugins *plugins.Host
	// NewState returns the state of a player who has never been saved.
	NewState func(id uint64) *S
	// OnAttach runs on the player's actor after a session attaches (new or
	// resumed), e.g. to push the player's state and rejoin chat groups.
	OnAttach func(p *Player[S])
	// OnActivate runs on the player's actor once its state is loaded, on
	// whichever node the actor starts: a login, a handoff from another
	// node, or a message from an actor (SendToPlayer) for a player online
	// nowhere. Arm the player's timers here (Player.Every); no session is
	// attached yet.
	OnActivate func(p *Player[S])
	// Grace is how long a disconnected player's actor waits for a
	// reconnect before it saves and stops. Default 30s.
	Grace time.Duration
	// MailboxSize bounds each player's mailbox. Default 256.
	MailboxSize int
	// SaveTimeout bounds one save. Default 10s.
	SaveTimeout time.Duration
	// ExchangeTimeout bounds an Exchange's initiator (lock, change, commit).
	// The other player stays locked for up to 1s longer; if the initiator
	// has not released it by then, it settles with the store (acquiring
	// itself again fences a late commit, and the record says whether one
	// made it). Use the same value on every game node. Default 5s.
	ExchangeTimeout time.Duration
	// AcquireWait bounds how long a login waits for a player another node
	// still holds in the store: that node is asked to save and let it go,
	// or, if it crashed or is cut off, its lease runs out. Past it, the
	// login is refused as unavailable (the client retries). Keep it below
	// the gates' AttachTimeout. Default 3s; negative: no wait.
	AcquireWait time.Duration
	// HandoffTimeout bounds a handoff's wait for the gate's Held; past it
	// the player stays here. Use the gates' HandoffTimeout. Default 5s.
	HandoffTimeout time.Duration
	// DrainRate bounds the players Drain hands off per second. Default 200.
	DrainRate float64
	// RebalanceRate bounds the players per second that move to a game node
	// that joined (or came back), when the ring now maps them there.
	// Default 100; negative turns rebalancing off.
	RebalanceRate float64
	// Logger defaults to the node's.
	Logger *slog.Logger
	// Metrics registers citadel_game_* metrics. Nil skips registration.
	Metrics prometheus.Registerer
}

// Service is the game service on one node.
type Service[S any] struct {
	cfg     Config[S]
	log     *slog.Logger
	unwatch func()
	storeID string
	started int64 // unix milliseconds, announced: the later of two conflicting nodes refuses
	stopped chan error
	stopOne sync.Once
	// draining: Drain has begun; new players go elsewhere.
	draining atomic.Bool
	// rebalancing: a rebalance pass runs (one at a time).
	rebalancing   atomic.Bool
	stopRebalance <-chan struct{}

	requests  *prometheus.CounterVec
	attaches  *prometheus.CounterVec
	players   *prometheus.GaugeVec
	conflicts prometheus.Counter
	fenced    prometheus.Counter
	handoffs  *prometheus.CounterVec
	mail      *prometheus.CounterVec
	// acquireWaits: logins that waited for another node's hold on their player.
	acquireWaits *prometheus.CounterVec
}

// New validates cfg and registers the runtime's messages in the node's
// registry.
func New[S any](cfg Config[S]) (*Service[S], error) {
	if cfg.Node == nil || cfg.Store == nil || cfg.Lease == nil || cfg.Saver == nil || cfg.Router == nil || cfg.NewState == nil {
		return nil, errors.New("game: Config needs Node, Store, Lease, Saver, Router and NewState")
	}
	if o := cfg.Lease.Owner(); o.Node != cfg.Node.Addr().Node || o.Incarnation != cfg.Node.Incarnation() {
		// Other nodes find a player's owner in the store and reach it by
		// that incarnation.
		return nil, fmt.Errorf("game: the lease is %s but the node is %q incarnation %d: start the node with NodeConfig.Incarnation set to the lease's",
			o, cfg.Node.Addr().Node, cfg.Node.Incarnation())
	}
	if cfg.SaveInterval <= 0 {
		cfg.SaveInterval = 5 * time.Second
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 30 * time.Second
	}
	if cfg.MailboxSize <= 0 {
		cfg.MailboxSize = 256
	}
	if cfg.SaveTimeout <= 0 {
		cfg.SaveTimeout = 10 * time.Second
	}
	if cfg.ExchangeTimeout <= 0 {
		cfg.ExchangeTimeout = 5 * time.Second
	}
	switch {
	case cfg.AcquireWait == 0:
		cfg.AcquireWait = 3 * time.Second
	case cfg.AcquireWait < 0:
		cfg.AcquireWait = 0
	}
	if cfg.HandoffTimeout <= 0 {
		cfg.HandoffTimeout = 5 * time.Second
	}
	if cfg.DrainRate <= 0 {
		cfg.DrainRate = 200
	}
	if cfg.RebalanceRate == 0 {
		cfg.RebalanceRate = 100
	}
	if cfg.Logger == nil {
		cfg.Logger = cfg.Node.Logger()
	}
	reg := cfg.Node.Registry()
	if err := services.RegisterClient(reg); err != nil { // the runtime answers with Error and pushes Kicked
		return nil, err
	}
	if err := services.RegisterInternal(reg); err != nil {
		return nil, err
	}
	if err := registerLocal(reg); err != nil {
		return nil, err
	}
	if err := registerExchange(reg); err != nil {
		return nil, err
	}
	if err := services.RegisterTables(reg); err != nil {
		return nil, err
	}
	if err := services.RegisterPlugins(reg); err != nil {
		return nil, err
	}
	s := &Service[S]{
		cfg: cfg,
		log: cfg.Logger.With("component", "game"),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "citadel_game_requests_total", Help: "Client requests handled, by message type and result (ok, error, no_handler, panic).",
		}, []string{"msg", "result"}),
		attaches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "citadel_game_attaches_total", Help: "Sessions attached to player actors, by whether the actor was resumed.",
		}, []string{"resumed"}),
		players: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "citadel_game_players", Help: "Player actors by state (attached, grace).",
		}, []string{"state"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "citadel_game_save_conflicts_total",
			Help: "Snapshots refused because another writer stored a newer version of the player.",
		}),
		acquireWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "citadel_game_acquire_waits_total",
			Help: "Logins that waited for another node to let their player go, by outcome (acquired, gave_up: refused as unavailable).",
		}, []string{"outcome"}),
		handoffs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "citadel_game_handoffs_total",
			Help: "Players handed between game nodes with their session open, by direction and outcome: out (saved, released, the gate told), in (attached here from another node), failed (the save and release failed; the player stayed).",
		}, []string{"outcome"}),
		mail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "citadel_game_mail_total",
			Help: "Messages from actors to players (SendToPlayer, CallPlayer), by result: ok, error (refused or failed; a call gets the error), forwarded (passed on to the node that owns the player), activated (the player was online nowhere and was loaded for it).",
		}, []string{"result"}),
		fenced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "citadel_game_fenced_total",
			Help: "Player actors stopped because the store said another node owns the player now (fenced), or this node lost its lease.",
		}),
	}
	if cfg.Metrics != nil {
		for _, c := range []prometheus.Collector{s.requests, s.attaches, s.players, s.conflicts, s.fenced, s.acquireWaits, s.handoffs, s.mail} {
			if err := cfg.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("game: register metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Start spawns the manager actor that receives Attach requests, and tells
// gates about client messages for players that are not here.
func (s *Service[S]) Start() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.SaveTimeout)
	id, err := s.cfg.Store.ID(ctx)
	cancel()
	if err != nil {
		return fmt.Errorf("game: read the store's identity: %w", err)
	}
	s.storeID, s.started, s.stopped = id, time.Now().UnixMilli(), make(chan error, 1)
	s.stopRebalance = s.cfg.Node.Done()
	members := s.cfg.Node.Members()
	members.SetMeta(services.MetaStore, id)
	members.SetMeta(services.MetaStarted, strconv.FormatInt(s.started, 10))
	s.cfg.Node.SetDeadLetterHandler(s.deadLetter)
	if s.cfg.Tables != nil {
		if err := s.startTables(); err != nil {
			return err
		}
	}
	if s.cfg.Plugins != nil {
		if err := s.startPlugins(); err != nil {
			return err
		}
	}
	_, err = s.cfg.Node.Spawn(services.GameActorManager, func() framework.Actor {
		return &manager[S]{svc: s, players: make(map[uint64]*managed)}
	}, framework.SpawnOptions{Kind: "player_manager", MailboxSize: 4096})
	if err != nil {
		return err
	}
	// A gate that restarted took its sessions with it: their players start
	// their grace period (the clients log in again, through any gate). A
	// game node that left or restarted will not finish the exchanges it
	// started: the players it locked settle them with the store at once.
	manager := s.cfg.Node.ActorAddr(services.GameActorManager)
	s.unwatch = members.Watch(func(ev framework.MemberEvent) {
		switch {
		case ev.Kind == framework.MemberJoined && ev.Member.Service == services.Game:
			if err := s.checkStore(ev.Member); err != nil {
				s.stop(err)
			} else if ev.Member.Node != s.cfg.Node.Addr().Node {
				go s.rebalance(ev.Member.Node)
			}
		case ev.Kind == framework.MemberSuspect && ev.Member.Service == services.Game && ev.Member.Leased:
			go s.watchSuspect(ev.Member)
		case ev.Kind == framework.MemberJoined && ev.Member.Service == services.Gate:
			s.cfg.Node.Send(manager, &gateEnded{Node: ev.Member.Node, Incarnation: ev.Member.Epoch})
		case ev.Kind == framework.MemberLeft && ev.Member.Service == services.Game:
			s.cfg.Node.Send(manager, &gameEnded{Node: ev.Member.Node, Incarnation: ev.Member.Epoch})
		}
	})
	for _, m := range members.Alive(services.Game) { // after Watch: a join in between is not missed
		if err := s.checkStore(m); err != nil {
			s.unwatch()
			return err
		}
	}
	go func() {
		<-s.cfg.Lease.Fenced()
		s.stop(errors.New("game: this node lost its lease in the store (it could not renew it in time, or another process started a node of the same name); its players stopped without saving"))
	}()
	return nil
}

// checkStore refuses to share a cluster with a game node on another store:
// each would take players as new characters that the other has saved
// (two game nodes on bbolt each have their own file). Of two such nodes,
// the one that started later stops.
func (s *Service[S]) checkStore(m framework.Member) error {
	if m.Node == s.cfg.Node.Addr().Node {
		return nil
	}
	theirs := m.Meta[services.MetaStore]
	if theirs == "" || theirs == s.storeID {
		return nil // a node not serving yet checks for itself when it starts
	}
	started, _ := strconv.ParseInt(m.Meta[services.MetaStarted], 10, 64)
	if started > s.started || (started == s.started && m.Node > s.cfg.Node.Addr().Node) {
		s.log.Error("a game node on another store joined; it stops itself", "node", m.Node, "its_store", theirs, "this_store", s.storeID)
		return nil
	}
	return fmt.Errorf("game: game node %s already runs on another store (%q; this node's is %q): every game node of a cluster must share one store. "+
		"bbolt serves one process: run one game node per cluster on bbolt, or use -store postgres for several", m.Node, theirs, s.storeID)
}

// stop ends the service for good: every player actor stops without saving
// and Stopped reports why.
func (s *Service[S]) stop(err error) {
	s.stopOne.Do(func() {
		s.log.Error("game service stopping", "err", err)
		s.cfg.Node.Send(s.cfg.Node.ActorAddr(services.GameActorManager), &leaseLost{})
		s.stopped <- err
	})
}

// Drain hands every player on this node off to the other game nodes, at
// most DrainRate a second, with their sessions open, and returns once no
// player is left here, or when ctx ends (Stop then saves the rest and
// their clients are told to log in again). New players go to other nodes
// from now on. With no other game node it returns at once: the players
// are saved and kicked on Stop, as without a drain.
func (s *Service[S]) Drain(ctx context.Context) error {
	s.draining.Store(true)
	members := s.cfg.Node.Members()
	members.SetDraining(true)
	manager := s.cfg.Node.ActorAddr(services.GameActorManager)
	lim := rate.NewLimiter(rate.Limit(s.cfg.DrainRate), max(1, int(s.cfg.DrainRate/10)))
	start := time.Now()
	for pass := 1; ; pass++ {
		if s.alone() {
			return errors.New("game: no other game node takes players; they will be saved and told to log in again")
		}
		ids, err := s.playerIDs(ctx)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			s.log.Info("drained: every player handed off", "passes", pass-1, "took", time.Since(start))
			return nil
		}
		s.log.Info("draining", "players", len(ids), "pass", pass)
		for _, id := range ids {
			if err := lim.Wait(ctx); err != nil {
				return fmt.Errorf("game: drain stopped with players left: %w", err)
			}
			s.cfg.Node.Send(manager, &moveReq{id: id})
		}
		// The moves finish within a handoff; then what is left (a player in
		// an exchange, a handoff that failed) goes in the next pass.
		select {
		case <-ctx.Done():
			return fmt.Errorf("game: drain stopped with players left: %w", ctx.Err())
		case <-time.After(min(s.cfg.HandoffTimeout, time.Second)):
		}
	}
}

// alone reports whether no other game node takes players now.
func (s *Service[S]) alone() bool {
	self := s.cfg.Node.Addr().Node
	for _, m := range s.cfg.Node.Members().Alive(services.Game) {
		if m.Node != self {
			return false
		}
	}
	return true
}

// Draining reports whether Drain has begun.
func (s *Service[S]) Draining() bool { return s.draining.Load() }

// playerIDs lists the players on this node.
func (s *Service[S]) playerIDs(ctx context.Context) ([]uint64, error) {
	r, err := s.cfg.Node.Call(ctx, s.cfg.Node.ActorAddr(services.GameActorManager), &listPlayers{})
	if err != nil {
		return nil, fmt.Errorf("game: list players: %w", err)
	}
	return r.(*playerList).ids, nil
}

// rebalance moves the players the ring now maps to node (which joined or
// came back) there, at most RebalanceRate a second.
func (s *Service[S]) rebalance(node string) {
	if s.cfg.RebalanceRate < 0 || s.draining.Load() || !s.rebalancing.CompareAndSwap(false, true) {
		return
	}
	defer s.rebalancing.Store(false)
	// Give every gate time to hear of the node, so none attaches there
	// before it is known.
	select {
	case <-s.stopRebalance:
		return
	case <-time.After(2 * s.cfg.Node.Members().HeartbeatInterval()):
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ids, err := s.playerIDs(ctx)
	if err != nil {
		return
	}
	members := s.cfg.Node.Members()
	manager := s.cfg.Node.ActorAddr(services.GameActorManager)
	lim := rate.NewLimiter(rate.Limit(s.cfg.RebalanceRate), max(1, int(s.cfg.RebalanceRate/10)))
	moved := 0
	for _, id := range ids {
		m, ok := members.Pick(services.Game, strconv.FormatUint(id, 10))
		if !ok || m.Node != node {
			continue
		}
		select {
		case <-s.stopRebalance:
			return
		default:
		}
		if s.draining.Load() || lim.Wait(ctx) != nil {
			return
		}
		s.cfg.Node.Send(manager, &moveReq{id: id, target: node})
		moved++
	}
	if moved > 0 {
		s.log.Info("rebalanced players to a game node that joined", "node", node, "players", moved)
	}
}

// clockSlack is how far this host's clock may be off the store's before a
// suspect node's lease is judged over by the store's expiry (it is judged
// over anyway once it was not renewed for a whole TTL).
const clockSlack = 250 * time.Millisecond

// watchSuspect buries a suspect game node once the store shows its lease
// is over (ended, superseded, or not renewed for a whole lease TTL), so
// gates attach its sessions elsewhere; a node that beats again is left
// alone.
func (s *Service[S]) watchSuspect(m framework.Member) {
	members := s.cfg.Node.Members()
	ttl := s.cfg.Lease.TTL()
	var seen time.Time
	var seenAt time.Time
	for {
		cur, ok := members.Get(m.Service, m.Node)
		if !ok || cur.Epoch != m.Epoch || !cur.Suspect {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.SaveTimeout)
		leases, err := s.cfg.Store.Leases(ctx)
		cancel()
		if err == nil {
			over := true // not listed: never issued, cannot hold players
			for _, l := range leases {
				if l.Node != m.Node {
					continue
				}
				switch {
				case l.Incarnation != m.Epoch || l.Ended:
				case time.Now().After(l.Expires.Add(clockSlack)):
					// Expired by this clock too, with room for the clocks
					// of this host and the store's to differ.
				case !l.Expires.Equal(seen):
					// Renewed since the last look (or the first look):
					// whatever the clocks say, a lease not renewed for a
					// whole TTL from now on is over.
					seen, seenAt, over = l.Expires, time.Now(), false
				default:
					over = time.Since(seenAt) > ttl
				}
			}
			if over {
				s.log.Warn("a suspect game node's lease is over; telling every node it is gone", "node", m.Node, "incarnation", m.Epoch)
				if err := members.Bury(m); err != nil {
					s.log.Warn("cannot announce a dead game node; others will find out themselves", "node", m.Node, "err", err)
				}
				return
			}
		}
		select {
		case <-s.stopRebalance:
			return
		case <-time.After(min(ttl/10, 250*time.Millisecond)):
		}
	}
}

// Stopped delivers the reason once the service has stopped serving players
// on its own: this node lost its lease (other nodes own its players now),
// or it found another game node on another store. The process should stop
// (and may start again, as a new incarnation).
func (s *Service[S]) Stopped() <-chan error { return s.stopped }

// deadLetter answers a client request for a player actor that does not
// exist (the game node restarted, or the actor just retired or moved):
// the gate attaches the session again, wherever the player is now.
func (s *Service[S]) deadLetter(from framework.Addr, fromIncarnation uint64, to framework.Addr, msg any, err error) {
	req, ok := msg.(*services.ClientRequest)
	if !ok || from.Service != services.Gate {
		return
	}
	gate := framework.Addr{Service: from.Service, Node: from.Node, Actor: services.GateSessionsActor}
	_ = s.cfg.Node.SendTo(gate, fromIncarnation, &services.NotHere{SessionID: req.SessionID, Actor: to})
}

func playerActorName(id uint64) string { return fmt.Sprintf("player-%d", id) }

// acquire makes this node the player's owner (a new epoch) and reads its
// state; a player never saved gets NewState.
func (s *Service[S]) acquire(id uint64) (*S, store.Record, error) {
	deadline := time.Now().Add(s.cfg.AcquireWait)
	var asked store.Owner
	var askedAt time.Time
	waited := false
	for pause := 50 * time.Millisecond; ; pause = min(2*pause, 500*time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.SaveTimeout)
		rec, err := s.cfg.Store.Acquire(ctx, id, s.cfg.Lease.Owner())
		cancel()
		var owned *store.OwnedError
		if !errors.As(err, &owned) {
			if waited {
				s.acquireWaits.WithLabelValues("acquired").Inc()
			}
			if err != nil {
				return nil, rec, err
			}
			return s.decode(id, rec)
		}
		// Another incarnation holds the player: ask it to let go (it is
		// alive and the player logged in again here), or wait for its
		// lease to run out (it crashed or is cut off).
		if owned.Owner != asked || time.Since(askedAt) >= 500*time.Millisecond {
			asked, askedAt = owned.Owner, time.Now()
			to := framework.Addr{Service: services.Game, Node: asked.Node, Actor: services.GameActorManager}
			s.cfg.Node.SendTo(to, asked.Incarnation, &releaseRequest{PlayerID: id, Incarnation: asked.Incarnation}) // a dead node: ErrNodeUnknown; its lease runs out
		}
		wait := pause
		if left := time.Until(owned.Expires) + 20*time.Millisecond; left > 0 && left < wait {
			wait = left
		}
		if time.Now().Add(wait).After(deadline) {
			s.acquireWaits.WithLabelValues("gave_up").Inc()
			return nil, rec, err
		}
		waited = true
		time.Sleep(wait)
	}
}

// decode turns an acquired record into the player's state.
func (s *Service[S]) decode(id uint64, rec store.Record) (*S, store.Record, error) {
	if rec.Data == nil {
		return s.cfg.NewState(id), rec, nil
	}
	st := new(S)
	if err := msgpack.Unmarshal(rec.Data, st); err != nil {
		return nil, rec, &store.CorruptError{ID: id, Reason: "state does not decode: " + err.Error()}
	}
	return st, rec, nil
}

// releaseOrphan lets go of a player this node owns in the store but runs
// no actor for (one that stopped without releasing it, e.g. its save on
// stop failed): another node asked for it.
func (s *Service[S]) releaseOrphan(id, incarnation uint64) {
	if incarnation != s.cfg.Lease.Owner().Incarnation {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.SaveTimeout)
	defer cancel()
	rec, err := s.cfg.Store.Acquire(ctx, id, s.cfg.Lease.Owner())
	if err == nil {
		err = s.cfg.Store.Release(ctx, store.Record{ID: id, Epoch: rec.Epoch})
	}
	if err != nil && !errors.Is(err, store.ErrOwned) && !errors.Is(err, store.ErrFenced) {
		s.log.Warn("cannot release a player another node asked for", "player", id, "err", err)
	}
}
