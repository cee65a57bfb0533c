package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// LeaseKeeper holds one node incarnation's lease: it starts the
// incarnation (StartNode), renews the lease every Interval, and says at
// any moment whether the node may still act for its players. Once the
// store refuses a renewal (the lease expired while the node was stopped
// or cut off, or a newer incarnation of the node exists), the keeper is
// fenced for good: the node must stop acting for its players at once, as
// another node may already be serving them.
type LeaseKeeper struct {
	store    Store
	owner    Owner
	ttl      time.Duration
	interval time.Duration
	log      *slog.Logger

	validUntil atomic.Int64 // unix nanoseconds by this process's clock
	fenced     chan struct{}
	fenceOnce  sync.Once
	stop       chan struct{}
	done       chan struct{}
	endOnce    sync.Once
}

// LeaseConfig configures StartLease. Zero values are defaults.
type LeaseConfig struct {
	// TTL is how long a renewal keeps the lease: how long the cluster waits
	// before another node may take over this node's players when it stops
	// answering. Default 5s.
	TTL time.Duration
	// Interval between renewals. Default TTL/5.
	Interval time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// StartLease starts a new incarnation of node in st and keeps its lease
// until End. If the node's previous incarnation still holds a lease (its
// process crashed a moment ago), it waits for that lease to run out, at
// most a TTL; if that lease is renewed meanwhile, another process runs
// under the same name and StartLease refuses with ErrNodeRunning.
func StartLease(ctx context.Context, st Store, node string, cfg LeaseConfig) (*LeaseKeeper, error) {
	if cfg.TTL <= 0 {
		cfg.TTL = 5 * time.Second
	}
	if cfg.Interval <= 0 {
		cfg.Interval = cfg.TTL / 5
	}
	if cfg.Interval >= cfg.TTL {
		return nil, errors.New("store: the lease interval must be shorter than its TTL")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := waitPrevious(ctx, st, node, cfg.TTL, cfg.Interval); err != nil {
		return nil, err
	}
	asked := time.Now()
	lease, err := st.StartNode(ctx, node, cfg.TTL)
	if err != nil {
		return nil, err
	}
	k := &LeaseKeeper{store: st, owner: lease.Owner, ttl: cfg.TTL, interval: cfg.Interval,
		log:    cfg.Logger.With("component", "lease", "node", node, "incarnation", lease.Incarnation),
		fenced: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	k.granted(asked)
	go k.loop()
	return k, nil
}

// ErrNodeRunning is StartLease's refusal: another process renews the
// lease of the node name it was asked to start.
var ErrNodeRunning = errors.New("store: another process runs this node")

// waitPrevious returns once no other process holds node's lease: none was
// ever issued, it ended (a clean stop), or it runs out without a renewal
// (the process crashed: at most a TTL). A renewal seen meanwhile means a
// live process has this name: ErrNodeRunning. Starting the node anyway
// would supersede that process and stop it.
func waitPrevious(ctx context.Context, st Store, node string, ttl, interval time.Duration) error {
	find := func() (*Lease, error) {
		ls, err := st.Leases(ctx)
		if err != nil {
			return nil, err
		}
		for i := range ls {
			if ls[i].Node == node {
				return &ls[i], nil
			}
		}
		return nil, nil
	}
	first, err := find()
	if err != nil || first == nil || first.Ended {
		return err
	}
	for deadline := time.Now().Add(ttl); time.Now().Before(first.Expires) && time.Now().Before(deadline); {
		select {
		case <-time.After(interval / 2):
		case <-ctx.Done():
			return ctx.Err()
		}
		cur, err := find()
		switch {
		case err != nil:
			return err
		case cur == nil || cur.Ended:
			return nil
		case cur.Incarnation != first.Incarnation || cur.Expires.After(first.Expires):
			return fmt.Errorf("%w: node %q (incarnation %d) renewed its lease just now: another process runs under this name. "+
				"Give this one another node ID (-id), or stop that one first", ErrNodeRunning, node, cur.Incarnation)
		}
	}
	return nil
}

// granted records a lease granted by a call made at asked: it runs at
// least until asked + TTL by the store's clock, so that is a safe local
// bound (less a tenth, for clocks that run at slightly different rates).
func (k *LeaseKeeper) granted(asked time.Time) {
	k.validUntil.Store(asked.Add(k.ttl - k.ttl/10).UnixNano())
}

// Owner is the incarnation the lease is for.
func (k *LeaseKeeper) Owner() Owner { return k.owner }

// TTL is how long one renewal keeps the lease.
func (k *LeaseKeeper) TTL() time.Duration { return k.ttl }

// Valid reports whether the node may act for its players now: the lease
// was renewed recently enough that no other node can have taken them.
func (k *LeaseKeeper) Valid() bool {
	select {
	case <-k.fenced:
		return false
	default:
	}
	return time.Now().UnixNano() < k.validUntil.Load()
}

// Fenced is closed when the store refused to renew the lease: the node
// has lost its players for good.
func (k *LeaseKeeper) Fenced() <-chan struct{} { return k.fenced }

func (k *LeaseKeeper) loop() {
	defer close(k.done)
	t := time.NewTicker(k.interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-k.stop:
			return
		case <-t.C:
		}
		asked := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), k.ttl)
		_, err := k.store.RenewLease(ctx, k.owner, k.ttl)
		cancel()
		switch {
		case err == nil:
			k.granted(asked)
			if failing {
				k.log.Info("lease renewed again")
				failing = false
			}
		case errors.Is(err, ErrFenced):
			k.log.Error("lease lost: the store refused to renew it (it expired, or a newer incarnation of this node started); this node stops acting for its players", "err", err)
			k.fenceOnce.Do(func() { close(k.fenced) })
			return
		default:
			if !failing {
				k.log.Warn("lease renewal failed; retrying (players stop being served once the lease runs out)", "err", err)
				failing = true
			}
		}
	}
}

// End stops renewing and ends the lease (a clean stop): the node's players
// can be taken over at once.
func (k *LeaseKeeper) End(ctx context.Context) error {
	var err error
	k.endOnce.Do(func() {
		close(k.stop)
		<-k.done
		err = k.store.EndLease(ctx, k.owner)
	})
	return err
}
