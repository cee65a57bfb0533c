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
	// into the binary (the schema's embedded data file; Reload then has
	// nothing newer to load).
	Path string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics registers citadel_tables_* metrics. Nil skips registration.
	Metrics prometheus.Registerer
}

// Source is a Holder as a game service sees it, whatever the game's Set
// type: the game pins the current version for each message and reloads on
// an operator's request. *Holder[S] implements it.
type Source interface {
	// Pin returns the current version (the game's own Set); a handler
	// keeps it for its whole message.
	Pin() Set
	// Reload loads the data file again and swaps it in if it is valid.
	Reload() error
}

// Holder holds the tables a server runs with and swaps in new versions.
// S is the game's generated *Set. Current is one atomic load: a handler
// that takes the Set once sees one version for its whole message, however
// many reloads happen meanwhile.
type Holder[S Set] struct {
	cfg    HolderConfig
	schema *Schema[S]
	log    *slog.Logger
	cur    atomic.Pointer[held[S]]

	mu       sync.Mutex // one reload at a time
	lastStat fileStamp

	info    *prometheus.GaugeVec
	reloads *prometheus.CounterVec
	loadDur prometheus.Histogram
}

// held is the current version, typed and as a Set, so neither Current nor
// Pin converts anything.
type held[S Set] struct {
	set S
	pin Set
}

type fileStamp struct {
	size int64
	mod  time.Time
}

// NewHolder loads the initial tables with the game's generated schema
// (gamedata.Schema); an invalid file is an error.
func NewHolder[S Set](schema *Schema[S], cfg HolderConfig) (*Holder[S], error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Holder[S]{cfg: cfg, schema: schema, log: cfg.Logger.With("component", "tables"),
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
	h.log.Info("tables loaded", "version", s.TablesInfo().Version, "source", h.source(), "rows", s.TablesInfo().Rows())
	return h, nil
}

func (h *Holder[S]) source() string {
	if h.cfg.Path == "" {
		return "built in"
	}
	return h.cfg.Path
}

func (h *Holder[S]) load() (S, error) {
	start := time.Now()
	defer func() { h.loadDur.Observe(time.Since(start).Seconds()) }()
	if h.cfg.Path == "" {
		return h.schema.Embedded()
	}
	if st, err := os.Stat(h.cfg.Path); err == nil {
		h.lastStat = fileStamp{st.Size(), st.ModTime()}
	}
	return h.schema.LoadFile(h.cfg.Path)
}

func (h *Holder[S]) swap(s S) {
	if old := h.cur.Swap(&held[S]{set: s, pin: s}); old != nil {
		h.info.DeleteLabelValues(old.set.TablesInfo().Version)
	}
	h.info.WithLabelValues(s.TablesInfo().Version).Set(1)
}

// Current returns the tables in use. Take it once per message.
func (h *Holder[S]) Current() S { return h.cur.Load().set }

// Pin implements Source: Current, as a Set.
func (h *Holder[S]) Pin() Set { return h.cur.Load().pin }

// Reload loads the data file again, validates it and swaps it in. A file
// that does not load or validate is refused: the error lists its problems
// and the current tables stay.
func (h *Holder[S]) Reload() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, err := h.load()
	old := h.Current().TablesInfo().Version
	if err != nil {
		h.reloads.WithLabelValues("refused").Inc()
		h.log.Error("tables reload refused; keeping the current version", "source", h.source(),
			"current", old, "err", err)
		return err
	}
	if old == s.TablesInfo().Version {
		h.reloads.WithLabelValues("unchanged").Inc()
		return nil
	}
	h.swap(s)
	h.reloads.WithLabelValues("ok").Inc()
	h.log.Info("tables reloaded", "version", s.TablesInfo().Version, "previous", old, "source", h.source())
	return nil
}

// Watch reloads when the data file changes (size or modification time),
// checking every interval until ctx ends. A refused file is not retried
// until it changes again.
func (h *Holder[S]) Watch(ctx context.Context, every time.Duration) error {
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
