package game

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citadel-go/citadel/framework/store"
	"github.com/prometheus/client_golang/prometheus"
)

// SaverConfig configures a Saver. Zero values are defaults, except Store.
type SaverConfig struct {
	Store store.Store
	// BatchCount and BatchBytes bound one commit. Defaults 512 and 8 MiB.
	BatchCount int
	BatchBytes int
	// BatchDelay is how long the saver waits for a batch to fill once it
	// has one snapshot. Default 10ms.
	BatchDelay time.Duration
	// QueueSize bounds snapshots waiting to be committed. When it is full,
	// players keep their dirty state and try again on their next tick.
	// Default 16384.
	QueueSize int
	// RetryMin and RetryMax bound the backoff between attempts at a failed
	// commit. Defaults 50ms and 5s.
	RetryMin, RetryMax time.Duration
	Logger             *slog.Logger
	// Metrics registers citadel_save_* metrics. Nil skips registration.
	Metrics prometheus.Registerer
}

// Saver commits player snapshots to the store in batches. Each snapshot
// carries a ticket its player reads back: a snapshot counts as saved only
// once its batch has been durably committed.
type Saver struct {
	cfg   SaverConfig
	log   *slog.Logger
	queue chan saveJob
	done  chan struct{}

	mu     sync.RWMutex // Stop closes queue under it
	closed bool

	lag       prometheus.Histogram
	batchSize prometheus.Histogram
	commit    prometheus.Histogram
	failures  prometheus.Counter
	stale     prometheus.Counter
	saved     prometheus.Counter
	deferred  prometheus.Counter
	depth     prometheus.GaugeFunc
}

type saveJob struct {
	rec    store.Record
	ticket *SaveTicket
}

// SaveTicket follows one snapshot through the saver.
type SaveTicket struct {
	// Version of the snapshot: for a record with an epoch, the version the
	// store gave it, set when the commit succeeded.
	Version uint64
	// Since is when the oldest change in the snapshot was made (for the
	// save-lag metric).
	Since time.Time

	done atomic.Bool
	err  error         // set before done
	ch   chan struct{} // closed when done
}

// NewSaveTicket returns a ticket for a snapshot of version v whose oldest
// change was made at since.
func NewSaveTicket(v uint64, since time.Time) *SaveTicket {
	return &SaveTicket{Version: v, Since: since, ch: make(chan struct{})}
}

// Done reports whether the commit has finished; Err is then its result.
func (t *SaveTicket) Done() bool { return t.done.Load() }

// Err is nil when the snapshot is durable, a *store.FencedError if the
// player's epoch moved on (another node owns it now), a *store.StaleError
// if the store holds a newer version (records without an epoch), or the
// error that made the saver give up.
func (t *SaveTicket) Err() error { return t.err }

// Wait waits for the commit or ctx.
func (t *SaveTicket) Wait(ctx context.Context) error {
	select {
	case <-t.ch:
		return t.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (t *SaveTicket) finish(err error) {
	t.err = err
	t.done.Store(true)
	close(t.ch)
}

// ErrSaverStopped is the result of snapshots the saver could not commit
// before it was stopped.
var ErrSaverStopped = errors.New("game: saver stopped before the commit")

// NewSaver validates cfg and starts the saver's goroutine.
func NewSaver(cfg SaverConfig) (*Saver, error) {
	if cfg.Store == nil {
		return nil, errors.New("game: SaverConfig.Store is required")
	}
	if cfg.BatchCount <= 0 {
		cfg.BatchCount = 512
	}
	if cfg.BatchBytes <= 0 {
		cfg.BatchBytes = 8 << 20
	}
	if cfg.BatchDelay <= 0 {
		cfg.BatchDelay = 10 * time.Millisecond
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 16384
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 50 * time.Millisecond
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Saver{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "saver"),
		queue: make(chan saveJob, cfg.QueueSize),
		done:  make(chan struct{}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "citadel_save_lag_seconds",
			Help:    "Time from a player's oldest unsaved change to its durable commit.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "citadel_save_batch_size",
			Help: "Player records per commit.", Buckets: prometheus.ExponentialBuckets(1, 2, 12)}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "citadel_save_commit_seconds",
			Help: "Time of one durable batch commit (each attempt).", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "citadel_save_failures_total",
			Help: "Failed commit attempts (retried with backoff)."}),
		stale: prometheus.NewCounter(prometheus.CounterOpts{Name: "citadel_save_stale_total",
			Help: "Snapshots refused: the player's epoch moved on (another node owns it), or the store held the same or a newer version."}),
		saved: prometheus.NewCounter(prometheus.CounterOpts{Name: "citadel_save_records_total",
			Help: "Player records durably committed."}),
		deferred: prometheus.NewCounter(prometheus.CounterOpts{Name: "citadel_save_deferred_total",
			Help: "Snapshots not queued because the save queue was full (the player stays dirty)."}),
	}
	s.depth = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "citadel_save_queue_depth",
		Help: "Snapshots waiting to be committed."}, func() float64 { return float64(len(s.queue)) })
	if cfg.Metrics != nil {
		for _, c := range []prometheus.Collector{s.lag, s.batchSize, s.commit, s.failures, s.stale, s.saved, s.deferred, s.depth} {
			if err := cfg.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("game: register saver metrics: %w", err)
			}
		}
	}
	go s.run()
	return s, nil
}

// TrySubmit queues a snapshot without waiting; false means the queue is
// full (or the saver stopped) and the caller should keep its dirty state.
func (s *Saver) TrySubmit(rec store.Record, t *SaveTicket) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false
	}
	select {
	case s.queue <- saveJob{rec: rec, ticket: t}:
		return true
	default:
		s.deferred.Inc()
		return false
	}
}

// Submit queues a snapshot, waiting for room until ctx ends.
func (s *Saver) Submit(ctx context.Context, rec store.Record, t *SaveTicket) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrSaverStopped
	}
	select {
	case s.queue <- saveJob{rec: rec, ticket: t}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// QueueDepth reports snapshots waiting to be committed.
func (s *Saver) QueueDepth() int { return len(s.queue) }

func (s *Saver) run() {
	defer close(s.done)
	batch := make([]saveJob, 0, s.cfg.BatchCount)
	for {
		job, ok := <-s.queue
		if !ok {
			return
		}
		batch = append(batch[:0], job)
		size := len(job.rec.Data)
		timer := time.NewTimer(s.cfg.BatchDelay)
	fill:
		for len(batch) < s.cfg.BatchCount && size < s.cfg.BatchBytes {
			select {
			case job, ok = <-s.queue:
				if !ok {
					break fill
				}
				batch = append(batch, job)
				size += len(job.rec.Data)
			case <-timer.C:
				break fill
			}
		}
		timer.Stop()
		s.commitBatch(batch)
		if !ok {
			return
		}
	}
}

// commitBatch commits one batch, retrying with backoff until it succeeds
// or the saver is stopped and out of retries.
func (s *Saver) commitBatch(batch []saveJob) {
	// In key order, a batch's writes touch the store's pages in order.
	slices.SortFunc(batch, func(a, b saveJob) int { return cmp.Compare(a.rec.ID, b.rec.ID) })
	recs := make([]store.Record, len(batch))
	for i, j := range batch {
		recs[i] = j.rec
	}
	backoff := s.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		start := time.Now()
		err := s.cfg.Store.Save(context.Background(), recs)
		s.commit.Observe(time.Since(start).Seconds())
		var se *store.StaleError
		var fe *store.FencedError
		if err == nil || errors.As(err, &se) || errors.As(err, &fe) {
			refused := make(map[uint64]error)
			if se != nil {
				for _, id := range se.IDs {
					refused[id] = &store.StaleError{IDs: []uint64{id}}
				}
			}
			if fe != nil {
				for _, id := range fe.IDs {
					refused[id] = &store.FencedError{IDs: []uint64{id}}
				}
			}
			now := time.Now()
			s.batchSize.Observe(float64(len(batch)))
			for i, j := range batch {
				if err := refused[j.rec.ID]; err != nil {
					s.stale.Inc()
					j.ticket.finish(err)
					continue
				}
				s.saved.Inc()
				s.lag.Observe(now.Sub(j.ticket.Since).Seconds())
				j.ticket.Version = recs[i].Version // the store's, for a record with an epoch
				j.ticket.finish(nil)
			}
			if attempt > 1 {
				s.log.Info("save commit recovered", "records", len(batch), "attempts", attempt)
			}
			return
		}
		s.failures.Inc()
		if errors.Is(err, store.ErrClosed) {
			s.log.Error("store closed; snapshots not saved", "records", len(batch), "err", err)
			for _, j := range batch {
				j.ticket.finish(err)
			}
			return
		}
		if attempt == 1 || attempt%10 == 0 {
			s.log.Warn("save commit failed; retrying", "records", len(batch), "attempt", attempt, "backoff", backoff, "err", err)
		}
		time.Sleep(backoff)
		backoff = min(backoff*2, s.cfg.RetryMax)
	}
}

// Stop commits everything queued and stops. Snapshots still queued when
// ctx ends are not saved (their tickets fail); commits keep retrying until
// then.
func (s *Saver) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.queue)
	s.mu.Unlock()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		n := len(s.queue)
		s.log.Error("saver stopped before committing everything", "queued", n)
		return fmt.Errorf("game: saver stopped with %d snapshots uncommitted: %w", n, ctx.Err())
	}
}

// CommitAll commits records all or nothing, now (outside the batch queue):
// for operations that change several players at once, such as a trade.
// On success the records' versions are the ones the store gave them. It
// retries failures other than staleness and fencing until ctx ends.
func (s *Saver) CommitAll(ctx context.Context, recs []store.Record) error {
	backoff := s.cfg.RetryMin
	for {
		start := time.Now()
		err := s.cfg.Store.SaveAll(ctx, recs)
		s.commit.Observe(time.Since(start).Seconds())
		if err == nil {
			s.saved.Add(float64(len(recs)))
			s.batchSize.Observe(float64(len(recs)))
			return nil
		}
		if errors.Is(err, store.ErrStale) || errors.Is(err, store.ErrFenced) || errors.Is(err, store.ErrClosed) || ctx.Err() != nil {
			if errors.Is(err, store.ErrStale) || errors.Is(err, store.ErrFenced) {
				s.stale.Inc()
			}
			return err
		}
		s.failures.Inc()
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return fmt.Errorf("game: commit gave up: %w (last error: %v)", ctx.Err(), err)
		}
		backoff = min(backoff*2, s.cfg.RetryMax)
	}
}
