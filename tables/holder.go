package tables

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HolderConfig configures a Holder.
type HolderConfig struct {
	// Path is the data file to load and reload. Empty uses the tables built
	// into the binary (and Reload has nothing newer to load).
	Path string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics registers citadel_tables_* metrics. Nil skips registration.
	Metrics prometheus.Registerer
}

// Holder holds the tables a server runs with and swaps in new versions.
// Current is one atomic load: a handler that takes the Set once sees one
// version for its whole message, however many reloads happen meanwhile.
type Holder struct {
	cfg HolderConfig
	log *slog.Logger
	cur atomic.Pointer[Set]

	mu       sync.Mutex // one reload at a time
	lastStat fileStamp

	info    *prometheus.GaugeVec
	reloads *prometheus.CounterVec
	loadDur prometheus.Histogram
}

type fileStamp struct {
	size int64
	mod  time.Time
}

// NewHolder loads the initial tables; an invalid file is an error.
func NewHolder(cfg HolderConfig) (*Holder, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Holder{cfg: cfg, log: cfg.Logger.With("component", "tables"),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "citadel_tables_info",
			Help: "1 for the tables version this process runs."}, []string{"version"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "citadel_tables_reloads_total",
			Help: "Table reloads by result (ok, unchanged, refused)."}, []string{"result"}),
		loadDur: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "citadel_tables_load_seconds",
			Help: "Time to read, decode and validate a tables file.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}),
	}
	if cfg.Metrics != nil {
		for _, c := range []prometheus.Collector{h.info, h.reloads, h.loadDur} {
			if err := cfg.Metrics.Register(c); err != nil {
				return nil, err
			}
		}
	}
	s, err := h.load()
	if err != nil {
		return nil, err
	}
	h.swap(s)
	h.log.Info("tables loaded", "version", s.Version, "source", h.source(), "rows", s.Rows())
	return h, nil
}

func (h *Holder) source() string {
	if h.cfg.Path == "" {
		return "built in"
	}
	return h.cfg.Path
}

func (h *Holder) load() (*Set, error) {
	start := time.Now()
	defer func() { h.loadDur.Observe(time.Since(start).Seconds()) }()
	if h.cfg.Path == "" {
		return Embedded()
	}
	if st, err := os.Stat(h.cfg.Path); err == nil {
		h.lastStat = fileStamp{st.Size(), st.ModTime()}
	}
	return LoadFile(h.cfg.Path)
}

func (h *Holder) swap(s *Set) {
	if old := h.cur.Swap(s); old != nil {
		h.info.DeleteLabelValues(old.Version)
	}
	h.info.WithLabelValues(s.Version).Set(1)
}

// Current returns the tables in use. Take it once per message.
func (h *Holder) Current() *Set { return h.cur.Load() }

// Reload loads the data file again, validates it and swaps it in. A file
// that does not load or validate is refused: the error lists its problems
// and the current tables stay.
func (h *Holder) Reload() (*Set, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, err := h.load()
	if err != nil {
		h.reloads.WithLabelValues("refused").Inc()
		h.log.Error("tables reload refused; keeping the current version", "source", h.source(),
			"current", h.Current().Version, "err", err)
		return nil, err
	}
	old := h.Current()
	if old != nil && old.Version == s.Version {
		h.reloads.WithLabelValues("unchanged").Inc()
		return old, nil
	}
	h.swap(s)
	h.reloads.WithLabelValues("ok").Inc()
	h.log.Info("tables reloaded", "version", s.Version, "previous", old.Version, "source", h.source())
	return s, nil
}

// Watch reloads when the data file changes (size or modification time),
// checking every interval until ctx ends. A refused file is not retried
// until it changes again.
func (h *Holder) Watch(ctx context.Context, every time.Duration) error {
	if h.cfg.Path == "" {
		return errors.New("tables: nothing to watch: the tables are built in (set a path)")
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		st, err := os.Stat(h.cfg.Path)
		if err != nil {
			continue
		}
		h.mu.Lock()
		changed := (fileStamp{st.Size(), st.ModTime()}) != h.lastStat
		h.mu.Unlock()
		if changed {
			h.Reload() // logs either way
		}
	}
}
