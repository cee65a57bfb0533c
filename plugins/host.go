package plugins

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/citadel-go/citadel/framework/bounded"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vmihailenco/msgpack/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Config configures a Host. Zero values are defaults.
type Config struct {
	// Dir holds one folder per plugin, named after it; the newest file in
	// a plugin's folder is the build to run (LoadDir, Watch). Required: a
	// host runs only builds inside <Dir>/<name>/, because swaps arrive over
	// the mq and a path from a message must not run just any program.
	Dir string
	// CallTimeout bounds a call whose context has no deadline. Default 2s.
	CallTimeout time.Duration
	// StartTimeout bounds starting a binary (handshake). Default 10s.
	StartTimeout time.Duration
	// StopTimeout bounds waiting for calls in flight on a retired version,
	// and then the process's exit (it is killed after). Default 5s.
	StopTimeout time.Duration
	// RestartMin and RestartMax bound the backoff between attempts to
	// restart a crashed plugin. Defaults 100ms and 10s.
	RestartMin, RestartMax time.Duration
	Logger                 *slog.Logger
	// Metrics registers citadel_plugin_* metrics. Nil skips registration.
	Metrics prometheus.Registerer
}

// Errors returned by Call; test with errors.Is.
var (
	ErrNotLoaded   = errors.New("plugins: no such plugin loaded")
	ErrUnavailable = errors.New("plugins: plugin unavailable (restarting after a crash)")
	ErrCrashed     = errors.New("plugins: plugin process failed during the call")
	ErrStopped     = errors.New("plugins: host stopped")
)

// CallError is an error a plugin's handler returned (or a panic it
// recovered from): the plugin process is fine.
type CallError struct {
	Plugin, Version, Method string
	Message                 string
	Panic                   bool
}

func (e *CallError) Error() string {
	what := "failed"
	if e.Panic {
		what = "panicked"
	}
	return fmt.Sprintf("plugin %s %s: %s %s: %s", e.Plugin, e.Version, e.Method, what, e.Message)
}

// LoadError says why a binary was refused; the version running before
// (if any) keeps serving.
type LoadError struct {
	Plugin, Path string
	Err          error
	Stderr       string // the end of what the binary printed
}

func (e *LoadError) Error() string {
	msg := fmt.Sprintf("plugin %s: %s refused: %v", e.Plugin, e.Path, e.Err)
	if e.Stderr != "" {
		msg += "\n  stderr: " + strings.ReplaceAll(strings.TrimSpace(e.Stderr), "\n", "\n  stderr: ")
	}
	return msg
}

func (e *LoadError) Unwrap() error { return e.Err }

// Info describes a loaded plugin.
type Info struct {
	Name     string    `json:"name"`
	Version  string    `json:"version"`
	Path     string    `json:"path"`
	SHA256   string    `json:"sha256"`
	PID      int       `json:"pid"`
	Started  time.Time `json:"started"`
	State    string    `json:"state"` // running, restarting
	Restarts int       `json:"restarts"`
	Previous string    `json:"previous,omitempty"` // what Rollback returns to
	Methods  []string  `json:"methods"`
}

// Host runs plugin processes for a game node.
type Host struct {
	cfg     Config
	log     *slog.Logger
	sockDir string

	mu     sync.Mutex
	slots  map[string]*slot
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup // monitors and restarters

	calls    *prometheus.CounterVec
	callDur  *prometheus.HistogramVec
	swaps    *prometheus.CounterVec
	swapDur  prometheus.Histogram
	restarts *prometheus.CounterVec
	info     *prometheus.GaugeVec
}

// slot is one plugin name and the version serving it.
type slot struct {
	name   string
	swapMu sync.Mutex // one swap, rollback or restart at a time
	cur    atomic.Pointer[instance]

	mu       sync.Mutex
	changed  chan struct{} // closed (and replaced) whenever cur changes
	prev     string
	restarts int
}

// instance is one running plugin process.
type instance struct {
	name, path, version, sha string
	methods                  []string
	pid                      int
	started                  time.Time
	client                   *plugin.Client
	rpc                      *rpcClient
	stderr                   *tail

	mu      sync.Mutex
	refs    int
	retired bool
	drained chan struct{} // closed when retired and no call is in flight

	dead     atomic.Bool   // the process exited without being asked to
	stopping atomic.Bool   // we are stopping it
	exited   chan struct{} // closed by the monitor when the process is gone
}

// NewHost returns a host; load plugins with Swap or LoadDir.
func NewHost(cfg Config) (*Host, error) {
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 2 * time.Second
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 5 * time.Second
	}
	if cfg.RestartMin <= 0 {
		cfg.RestartMin = 100 * time.Millisecond
	}
	if cfg.RestartMax <= 0 {
		cfg.RestartMax = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Dir == "" {
		return nil, errors.New("plugins: Config.Dir is required: a host runs only builds inside <Dir>/<plugin name>/")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("plugins: %w", err)
	}
	cfg.Dir = dir
	// Plugins put their sockets in a folder of ours, which we remove on
	// stop: a crashed plugin leaves none in /tmp.
	sockDir, err := os.MkdirTemp("", "citadel-plugins-")
	if err != nil {
		return nil, err
	}
	h := &Host{cfg: cfg, log: cfg.Logger.With("component", "plugins"), sockDir: sockDir,
		slots: map[string]*slot{}, done: make(chan struct{}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "citadel_plugin_calls_total",
			Help: "Plugin calls by plugin and result (ok, error, panic, failed, unavailable)."}, []string{"plugin", "result"}),
		callDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "citadel_plugin_call_seconds",
			Help: "Plugin call round trips.", Buckets: prometheus.ExponentialBuckets(0.00005, 2, 14)}, []string{"plugin"}),
		swaps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "citadel_plugin_swaps_total",
			Help: "Version swaps (and rollbacks) by result (ok, refused)."}, []string{"plugin", "result"}),
		swapDur: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "citadel_plugin_swap_seconds",
			Help: "From starting the new version to the old one stopped.", Buckets: prometheus.ExponentialBuckets(0.002, 2, 12)}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "citadel_plugin_restarts_total",
			Help: "Restarts after a plugin process crashed."}, []string{"plugin"}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "citadel_plugin_info",
			Help: "1 for each plugin version running."}, []string{"plugin", "version"}),
	}
	if cfg.Metrics != nil {
		for _, c := range []prometheus.Collector{h.calls, h.callDur, h.swaps, h.swapDur, h.restarts, h.info} {
			if err := cfg.Metrics.Register(c); err != nil {
				os.RemoveAll(sockDir)
				return nil, err
			}
		}
	}
	return h, nil
}

func (h *Host) slot(name string, create bool) *slot {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.slots[name]
	if s == nil && create && !h.closed {
		s = &slot{name: name, changed: make(chan struct{})}
		h.slots[name] = s
	}
	return s
}

// set makes inst current and returns the instance it replaces.
func (s *slot) set(inst *instance) *instance {
	old := s.cur.Swap(inst)
	s.mu.Lock()
	if old != nil && inst != nil && old.path != inst.path {
		s.prev = old.path
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return old
}

func (s *slot) changes() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// tail keeps the end of a stream (a plugin's stderr).
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4096 {
		t.buf = t.buf[len(t.buf)-4096:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// checkBinary refuses a missing, non-regular or non-executable file with a
// clear error before go-plugin tries to run it.
func checkBinary(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("no such file")
		}
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("not a regular file")
	}
	if st.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("not executable (mode %v)", st.Mode().Perm())
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(sum.Sum(nil)), nil
}

// validName refuses plugin names that are not a plain folder name: the
// name picks the folder builds must be in, so "../x" must not pick another.
func validName(name string) error {
	if name == "" || name[0] == '.' || strings.ContainsAny(name, `/\`) {
		return fmt.Errorf("plugins: %q is not a plugin name (a folder name, not starting with \".\")", name)
	}
	return nil
}

// buildPath finds the build path names for plugin name: a relative path
// is relative to the plugin's folder <Dir>/<name>. It returns the path
// made absolute (what Info shows) and the file it resolves to with every
// symlink followed (what runs), and refuses a file outside the folder.
func (h *Host) buildPath(name, path string) (abs, real string, err error) {
	folder := filepath.Join(h.cfg.Dir, name)
	if !filepath.IsAbs(path) {
		path = filepath.Join(folder, path)
	}
	abs = filepath.Clean(path)
	where := fmt.Sprintf("builds of plugin %s must be files in %s", name, folder)
	realFolder, err := filepath.EvalSymlinks(folder)
	if err != nil {
		return abs, "", fmt.Errorf("no plugin folder (%s): %w", where, err)
	}
	if real, err = filepath.EvalSymlinks(abs); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return abs, "", fmt.Errorf("no such file (%s)", where)
		}
		return abs, "", fmt.Errorf("%w (%s)", err, where)
	}
	rel, err := filepath.Rel(realFolder, real)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		if real != abs {
			return abs, "", fmt.Errorf("it resolves to %s, outside the plugin's folder: %s", real, where)
		}
		return abs, "", fmt.Errorf("outside the plugin's folder: %s", where)
	}
	return abs, real, nil
}

// start runs a binary, checks its handshake, its name and its canary.
func (h *Host) start(name, path string) (*instance, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	abs, real, err := h.buildPath(name, path)
	if err != nil {
		return nil, &LoadError{Plugin: name, Path: abs, Err: err}
	}
	sha, err := checkBinary(real)
	if err != nil {
		return nil, &LoadError{Plugin: name, Path: abs, Err: err}
	}
	inst := &instance{name: name, path: abs, sha: sha, stderr: &tail{}, drained: make(chan struct{}), exited: make(chan struct{})}
	// The resolved file runs: a symlink re-pointed after the check cannot
	// redirect it.
	cmd := exec.Command(real)
	cmd.Env = append(os.Environ(), "PLUGIN_UNIX_SOCKET_DIR="+h.sockDir)
	dieWithParent(cmd)
	inst.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          map[string]plugin.Plugin{pluginKey: &goPlugin{}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		StartTimeout:     h.cfg.StartTimeout,
		Managed:          true, // plugin.CleanupClients() on the process's exit paths
		Stderr:           inst.stderr,
		Logger:           newHCLog(h.log.With("plugin", name), 0),
	})
	fail := func(err error) (*instance, error) {
		h.kill(inst)
		return nil, &LoadError{Plugin: name, Path: abs, Err: err, Stderr: inst.stderr.String()}
	}
	proto, err := inst.client.Client()
	if err != nil {
		return fail(fmt.Errorf("handshake: %w", err))
	}
	if rc := inst.client.ReattachConfig(); rc != nil {
		inst.pid = rc.Pid
	}
	raw, err := proto.Dispense(pluginKey)
	if err != nil {
		return fail(err)
	}
	inst.rpc = raw.(*rpcClient)
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StartTimeout)
	defer cancel()
	var info infoResponse
	if err := inst.rpc.invoke(ctx, "Info", &infoRequest{}, &info); err != nil {
		return fail(fmt.Errorf("info call: %w", err))
	}
	if info.Name != name {
		return fail(fmt.Errorf("the binary is plugin %q, not %q", info.Name, name))
	}
	inst.version, inst.methods = info.Version, info.Methods
	var canary canaryResponse
	if err := inst.rpc.invoke(ctx, "Canary", &canaryRequest{}, &canary); err != nil {
		return fail(fmt.Errorf("canary call: %w", err))
	}
	if canary.Error != "" {
		return fail(fmt.Errorf("canary: %s", canary.Error))
	}
	inst.started = time.Now()
	h.wg.Add(1)
	go h.monitor(inst)
	return inst, nil
}

// kill stops a process: go-plugin's Kill asks it to exit, but waits for a
// stuck process forever, so after StopTimeout the process is killed.
func (h *Host) kill(inst *instance) {
	inst.stopping.Store(true)
	pid := inst.pid
	if rc := inst.client.ReattachConfig(); pid == 0 && rc != nil {
		pid = rc.Pid
	}
	done := make(chan struct{})
	go func() {
		inst.client.Kill()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(h.cfg.StopTimeout):
		if pid > 0 {
			h.log.Warn("plugin did not stop; killing it", "plugin", inst.name, "version", inst.version, "pid", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
		<-done
	}
}

// monitor notices a process that exited without being asked to and starts
// the restart of the same binary.
func (h *Host) monitor(inst *instance) {
	defer h.wg.Done()
	t := time.NewTicker(25 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case <-t.C:
		}
		if !inst.client.Exited() {
			continue
		}
		close(inst.exited)
		if inst.stopping.Load() {
			return
		}
		inst.dead.Store(true)
		h.log.Error("plugin process exited; restarting it", "plugin", inst.name, "version", inst.version, "pid", inst.pid,
			"stderr", strings.TrimSpace(inst.stderr.String()))
		if s := h.slot(inst.name, false); s != nil {
			s.set(s.cur.Load()) // wake callers waiting on this version
			h.wg.Add(1)
			go h.restart(s, inst)
		}
		return
	}
}

// restart starts dead's binary again, with backoff, until it runs, the
// slot moves on (a swap), or the host stops.
func (h *Host) restart(s *slot, dead *instance) {
	defer h.wg.Done()
	backoff := h.cfg.RestartMin
	for attempt := 1; ; attempt++ {
		select {
		case <-h.done:
			return
		case <-time.After(backoff):
		}
		s.swapMu.Lock()
		if s.cur.Load() != dead {
			s.swapMu.Unlock()
			return // swapped (or stopped) meanwhile
		}
		inst, err := h.start(s.name, dead.path)
		if err == nil {
			s.set(inst)
			s.mu.Lock()
			s.restarts++
			s.mu.Unlock()
			s.swapMu.Unlock()
			h.kill(dead) // reap what is left of it
			h.restarts.WithLabelValues(s.name).Inc()
			h.info.DeleteLabelValues(s.name, dead.version)
			h.info.WithLabelValues(s.name, inst.version).Set(1)
			h.log.Info("plugin restarted", "plugin", s.name, "version", inst.version, "pid", inst.pid, "attempts", attempt)
			return
		}
		s.swapMu.Unlock()
		h.log.Error("plugin restart failed; retrying", "plugin", s.name, "attempt", attempt, "backoff", backoff, "err", err)
		backoff = min(2*backoff, h.cfg.RestartMax)
	}
}

// acquire counts a call on inst; false if inst is retired.
func (inst *instance) acquire() bool {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	if inst.retired {
		return false
	}
	inst.refs++
	return true
}

func (inst *instance) release() {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	inst.refs--
	if inst.retired && inst.refs == 0 {
		close(inst.drained)
	}
}

// retire stops new calls on inst, waits (up to StopTimeout) for the ones
// in flight, then stops the process.
func (h *Host) retire(inst *instance) {
	inst.mu.Lock()
	inst.retired = true
	if inst.refs == 0 {
		close(inst.drained)
	}
	inst.mu.Unlock()
	select {
	case <-inst.drained:
	case <-time.After(h.cfg.StopTimeout):
		h.log.Warn("calls still in flight on a retired plugin version; stopping it anyway", "plugin", inst.name, "version", inst.version)
	}
	h.kill(inst)
	h.info.DeleteLabelValues(inst.name, inst.version)
}

// Swap starts the binary at path as plugin name, checks it (inside the
// plugin's folder <Dir>/<name>/, where a relative path starts; handshake,
// name, canary) and switches calls to it; calls in flight on the previous
// version finish there, then it is stopped. A binary that fails any check
// is refused and the running version keeps serving. It also loads a
// plugin for the first time.
func (h *Host) Swap(name, path string) (Info, error) {
	s := h.slot(name, true)
	if s == nil {
		return Info{}, ErrStopped
	}
	s.swapMu.Lock()
	defer s.swapMu.Unlock()
	began := time.Now()
	inst, err := h.start(name, path)
	if err != nil {
		h.swaps.WithLabelValues(name, "refused").Inc()
		h.log.Error("plugin refused; the running version stays", "plugin", name, "path", path, "err", err)
		if s.cur.Load() == nil {
			h.mu.Lock()
			delete(h.slots, name)
			h.mu.Unlock()
		}
		return Info{}, err
	}
	switched := time.Since(began)
	old := s.set(inst)
	h.info.WithLabelValues(name, inst.version).Set(1)
	if old != nil {
		h.retire(old)
	}
	h.swaps.WithLabelValues(name, "ok").Inc()
	h.swapDur.Observe(time.Since(began).Seconds())
	args := []any{"plugin", name, "version", inst.version, "pid", inst.pid, "path", inst.path,
		"switched_after", switched.Round(time.Microsecond), "total", time.Since(began).Round(time.Microsecond)}
	if old != nil {
		args = append(args, "previous", old.version)
	}
	h.log.Info("plugin loaded", args...)
	return s.info(inst), nil
}

// Rollback swaps back to the binary that ran before the last swap.
func (h *Host) Rollback(name string) (Info, error) {
	s := h.slot(name, false)
	if s == nil {
		return Info{}, fmt.Errorf("%w: %s", ErrNotLoaded, name)
	}
	s.mu.Lock()
	prev := s.prev
	s.mu.Unlock()
	if prev == "" {
		return Info{}, fmt.Errorf("plugins: %s has no previous version to roll back to", name)
	}
	return h.Swap(name, prev)
}

func (s *slot) info(inst *instance) Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	state := "running"
	if inst.dead.Load() {
		state = "restarting"
	}
	return Info{Name: s.name, Version: inst.version, Path: inst.path, SHA256: inst.sha, PID: inst.pid, Started: inst.started,
		State: state, Restarts: s.restarts, Previous: s.prev, Methods: inst.methods}
}

// List describes the loaded plugins, by name.
func (h *Host) List() []Info {
	h.mu.Lock()
	slots := make([]*slot, 0, len(h.slots))
	for _, s := range h.slots {
		slots = append(slots, s)
	}
	h.mu.Unlock()
	var out []Info
	for _, s := range slots {
		if inst := s.cur.Load(); inst != nil {
			out = append(out, s.info(inst))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Call calls method on plugin name with msgpack request bytes and returns
// the result bytes. During a swap it goes to exactly one version; while a
// crashed plugin restarts it waits (until ctx's deadline, or CallTimeout).
// A *CallError is the handler's own failure; ErrCrashed, ErrUnavailable,
// ErrNotLoaded and context errors are the host's.
func (h *Host) Call(ctx context.Context, name, method string, req []byte) ([]byte, error) {
	s := h.slot(name, false)
	if s == nil {
		h.calls.WithLabelValues(name, "unavailable").Inc()
		return nil, fmt.Errorf("%w: %s", ErrNotLoaded, name)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.cfg.CallTimeout)
		defer cancel()
	}
	for {
		changed := s.changes()
		inst := s.cur.Load()
		if inst == nil {
			h.calls.WithLabelValues(name, "unavailable").Inc()
			return nil, fmt.Errorf("%w: %s", ErrNotLoaded, name)
		}
		if inst.dead.Load() {
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				h.calls.WithLabelValues(name, "unavailable").Inc()
				return nil, fmt.Errorf("%w: %s %s: %v", ErrUnavailable, name, inst.version, ctx.Err())
			}
		}
		if !inst.acquire() {
			continue // swapped out just now: the new version takes it
		}
		start := time.Now()
		var resp callResponse
		err := inst.rpc.invoke(ctx, "Call", &callRequest{Method: method, Payload: req}, &resp)
		inst.release()
		h.callDur.WithLabelValues(name).Observe(time.Since(start).Seconds())
		if err == nil && ctx.Err() != nil {
			err = ctx.Err() // answered, but after the caller's deadline
		}
		switch {
		case err != nil:
			h.calls.WithLabelValues(name, "failed").Inc()
			if c := status.Code(err); c == codes.Unavailable || c == codes.Canceled && ctx.Err() == nil {
				return nil, fmt.Errorf("%w: %s %s (pid %d) %s: %v", ErrCrashed, name, inst.version, inst.pid, method, err)
			}
			switch {
			case ctx.Err() != nil:
				err = ctx.Err()
			case status.Code(err) == codes.DeadlineExceeded:
				// The plugin saw the deadline (propagated by gRPC) a moment
				// before this side's timer fired.
				err = context.DeadlineExceeded
			}
			return nil, fmt.Errorf("plugins: %s %s %s: %w", name, inst.version, method, err)
		case resp.Error != "":
			result := "error"
			if resp.Panic {
				result = "panic"
			}
			h.calls.WithLabelValues(name, result).Inc()
			return nil, &CallError{Plugin: name, Version: inst.version, Method: method, Message: resp.Error, Panic: resp.Panic}
		}
		h.calls.WithLabelValues(name, "ok").Inc()
		return resp.Payload, nil
	}
}

// CallMsg calls method with req encoded and decodes the result into
// Resp, with msgpack.
func CallMsg[Resp any](ctx context.Context, h *Host, name, method string, req any) (*Resp, error) {
	raw, err := msgpack.Marshal(req)
	if err != nil {
		return nil, err
	}
	out, err := h.Call(ctx, name, method, raw)
	if err != nil {
		return nil, err
	}
	resp := new(Resp)
	if err := bounded.Unmarshal(out, resp); err != nil {
		return nil, fmt.Errorf("plugins: %s %s: decode result: %w", name, method, err)
	}
	return resp, nil
}

// Stop stops every plugin: calls in flight finish (up to StopTimeout),
// then the processes are stopped; none is left running.
func (h *Host) Stop() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	slots := h.slots
	h.slots = map[string]*slot{}
	close(h.done)
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.swapMu.Lock()
			defer s.swapMu.Unlock()
			if old := s.set(nil); old != nil {
				h.retire(old)
			}
		}()
	}
	wg.Wait()
	h.wg.Wait()
	os.RemoveAll(h.sockDir)
}
