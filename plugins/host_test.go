package plugins_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/citadel-go/citadel/plugins"
	"github.com/citadel-go/citadel/plugins/examples/combat"
	"github.com/citadel-go/citadel/plugins/plugintest"
)

func newHost(t testing.TB, cfg plugins.Config) *plugins.Host {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	h, err := plugins.NewHost(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	return h
}

func fight(ctx context.Context, h *plugins.Host) (*combat.Result, error) {
	return plugins.CallMsg[combat.Result](ctx, h, "combat", "fight",
		&combat.Request{Monster: 7, HP: 90, Defense: 3, XP: 20, Drops: []int32{1, 2}, DropChance: 50, Level: 4, Power: 6, Seed: 42})
}

// alive reports whether a process exists (and is not a zombie).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(stat), ") Z ")
}

// Must show 1: concurrent callers while v1→v2→v1… swaps: zero failed
// calls, and each caller's replies change version at one point per swap
// (never back and forth).
func TestSwapUnderLoadHasNoFailedCalls(t *testing.T) {
	bins := plugintest.Build(t)
	dir := t.TempDir()
	v1, v2 := plugintest.Install(t, dir, "combat", "v1", bins.CombatV1), plugintest.Install(t, dir, "combat", "v2", bins.CombatV2)
	h := newHost(t, plugins.Config{Dir: dir})
	if _, err := h.Swap("combat", v1); err != nil {
		t.Fatal(err)
	}
	const callers, swaps = 8, 20
	var failed atomic.Int64
	seqs := make([][]string, callers)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range seqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				res, err := fight(context.Background(), h)
				if err != nil {
					if failed.Add(1) <= 3 {
						t.Errorf("call failed during swaps: %v", err)
					}
					continue
				}
				if n := len(seqs[i]); n == 0 || seqs[i][n-1] != res.Rules {
					seqs[i] = append(seqs[i], res.Rules)
				}
			}
		}()
	}
	pids := map[int]bool{}
	var swapTimes []time.Duration
	for i := 0; i < swaps; i++ {
		time.Sleep(20 * time.Millisecond)
		path := []string{v2, v1}[i%2]
		start := time.Now()
		info, err := h.Swap("combat", path)
		if err != nil {
			t.Fatal(err)
		}
		swapTimes = append(swapTimes, time.Since(start))
		pids[info.PID] = true
	}
	time.Sleep(20 * time.Millisecond)
	cancel()
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d failed calls", failed.Load())
	}
	final := h.List()[0].Version
	for i, seq := range seqs {
		if len(seq) < 2 || len(seq) > swaps+1 {
			t.Errorf("caller %d saw versions %v over %d swaps", i, seq, swaps)
		}
		if seq[len(seq)-1] != final {
			t.Errorf("caller %d ended on %s, the host runs %s", i, seq[len(seq)-1], final)
		}
	}
	t.Logf("%d swaps, %d processes, swap times %v; caller 0 saw %d version runs", swaps, len(pids), swapTimes[:5], len(seqs[0]))
	h.Stop()
	for pid := range pids {
		if alive(pid) {
			t.Errorf("plugin process %d still running after Stop", pid)
		}
	}
}

// Must show 2: broken builds are refused and the running version keeps
// serving.
func TestBrokenBuildsAreRefused(t *testing.T) {
	bins := plugintest.Build(t)
	dir := t.TempDir()
	h := newHost(t, plugins.Config{Dir: dir, StartTimeout: 5 * time.Second})
	if _, err := h.Swap("combat", plugintest.Install(t, dir, "combat", "v1", bins.CombatV1)); err != nil {
		t.Fatal(err)
	}
	noexec := filepath.Join(dir, "combat", "noexec")
	data, _ := os.ReadFile(bins.CombatV2)
	os.WriteFile(noexec, data, 0o644)
	install := func(src string) string { return plugintest.Install(t, dir, "combat", filepath.Base(src), src) }

	var failed atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if res, err := fight(context.Background(), h); err != nil || res.Rules != "v1" {
				failed.Add(1)
			}
		}
	}()
	for _, tc := range []struct{ name, path, want string }{
		{"panics in its canary", install(bins.Panicky), "canary panicked: this build is broken"},
		{"not a plugin", install(bins.NotPlugin), "Unrecognized remote plugin message"},
		{"wrong protocol version", install(bins.WrongProto), "incompatible API version"},
		{"missing file", "nothing-here", "no such file"},
		{"not executable", noexec, "not executable"},
		{"another plugin", install(bins.Sleeper), `the binary is plugin "sleeper", not "combat"`},
	} {
		_, err := h.Swap("combat", tc.path)
		var le *plugins.LoadError
		if !errors.As(err, &le) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want a LoadError with %q", tc.name, err, tc.want)
		}
		if l := h.List(); len(l) != 1 || l[0].Version != "v1" || l[0].State != "running" {
			t.Fatalf("%s: the running plugin changed: %+v", tc.name, l)
		}
	}
	cancel()
	if res, err := fight(context.Background(), h); err != nil || res.Rules != "v1" {
		t.Fatalf("v1 after refusals: %+v %v", res, err)
	}
	if failed.Load() != 0 {
		t.Fatalf("%d calls failed while broken builds were refused", failed.Load())
	}
}

// Must show 3: a plugin killed mid-run: calls in flight fail with a clear
// error, the host restarts it, later calls succeed; after Stop no plugin
// process remains.
func TestCrashedPluginIsRestarted(t *testing.T) {
	bins := plugintest.Build(t)
	dir := t.TempDir()
	h := newHost(t, plugins.Config{Dir: dir, RestartMin: 20 * time.Millisecond})
	info, err := h.Swap("sleeper", plugintest.Install(t, dir, "sleeper", "dev", bins.Sleeper))
	if err != nil {
		t.Fatal(err)
	}
	first := info.PID
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() {
			_, err := plugins.CallMsg[struct{ Millis int }](context.Background(), h, "sleeper", "sleep", struct{ Millis int }{5000})
			errs <- err
		}()
	}
	time.Sleep(200 * time.Millisecond) // the calls are in flight
	killed := time.Now()
	syscall.Kill(first, syscall.SIGKILL)
	for i := 0; i < 4; i++ {
		err := <-errs
		if !errors.Is(err, plugins.ErrCrashed) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", first)) {
			t.Fatalf("in-flight call: %v, want ErrCrashed naming pid %d", err, first)
		}
	}
	t.Logf("in-flight calls failed %v after the kill", time.Since(killed).Round(time.Millisecond))

	// A call now waits for the restart and succeeds.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var echo struct{ S string }
	for deadline := time.Now().Add(10 * time.Second); ; {
		res, err := plugins.CallMsg[struct{ S string }](ctx, h, "sleeper", "echo", struct{ S string }{"hi"})
		if err == nil {
			echo = *res
			break
		}
		if !errors.Is(err, plugins.ErrCrashed) || time.Now().After(deadline) {
			t.Fatalf("call after the crash: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // only until the host has noticed the exit
	}
	if echo.S != "dev:hi" {
		t.Fatalf("echo %q", echo.S)
	}
	l := h.List()
	if len(l) != 1 || l[0].Restarts != 1 || l[0].PID == first || l[0].State != "running" {
		t.Fatalf("after restart: %+v", l)
	}
	t.Logf("restarted as pid %d %v after the kill", l[0].PID, time.Since(killed).Round(time.Millisecond))
	second := l[0].PID
	h.Stop()
	for _, pid := range []int{first, second} {
		if alive(pid) {
			t.Errorf("plugin process %d still running after Stop", pid)
		}
	}
	if _, err := h.Call(context.Background(), "sleeper", "echo", nil); !errors.Is(err, plugins.ErrNotLoaded) {
		t.Fatalf("call after Stop: %v", err)
	}
}

// A handler's panic is an error for that call only; a call past its
// deadline fails alone; neither costs the process.
func TestPanicsAndTimeoutsKeepThePlugin(t *testing.T) {
	bins := plugintest.Build(t)
	dir := t.TempDir()
	h := newHost(t, plugins.Config{Dir: dir})
	info, err := h.Swap("sleeper", plugintest.Install(t, dir, "sleeper", "dev", bins.Sleeper))
	if err != nil {
		t.Fatal(err)
	}
	_, err = plugins.CallMsg[struct{ S string }](context.Background(), h, "sleeper", "panic", struct{ S string }{"boom"})
	var ce *plugins.CallError
	if !errors.As(err, &ce) || !ce.Panic || !strings.Contains(ce.Message, "assignment to entry in nil map") {
		t.Fatalf("panicking handler: %v", err)
	}
	if _, err := h.Call(context.Background(), "sleeper", "nosuch", nil); !errors.As(err, &ce) || !strings.Contains(ce.Message, `no method "nosuch"`) {
		t.Fatalf("unknown method: %v", err)
	}
	// The deadline travels to the plugin, whose handler may see it first:
	// either way the caller gets context.DeadlineExceeded, never a handler
	// error. Short deadlines, many times, to hit both orders.
	for i := range 30 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+i%10)*time.Millisecond)
		_, err := plugins.CallMsg[struct{ Millis int }](ctx, h, "sleeper", "sleep", struct{ Millis int }{5000})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call %d past its deadline: %v", i, err)
		}
	}
	if _, err := plugins.CallMsg[struct{ S string }](context.Background(), h, "sleeper", "echo", struct{ S string }{"x"}); err != nil {
		t.Fatal(err)
	}
	if l := h.List(); l[0].PID != info.PID || l[0].Restarts != 0 {
		t.Fatalf("the process changed: %+v", l)
	}
	if _, err := h.Call(context.Background(), "nosuch", "x", nil); !errors.Is(err, plugins.ErrNotLoaded) {
		t.Fatalf("unknown plugin: %v", err)
	}
}

func TestRollbackAndDirectoryWatch(t *testing.T) {
	bins := plugintest.Build(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "combat"), 0o755)
	copyBin := func(src, dst string, mod time.Time) {
		data, _ := os.ReadFile(src)
		tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst))
		os.WriteFile(tmp, data, 0o755)
		os.Chtimes(tmp, mod, mod)
		os.Rename(tmp, dst)
	}
	copyBin(bins.CombatV1, filepath.Join(dir, "combat", "build-1"), time.Now().Add(-time.Hour))
	h := newHost(t, plugins.Config{Dir: dir})
	if err := h.LoadDir(); err != nil {
		t.Fatal(err)
	}
	version := func() string { return h.List()[0].Version }
	if version() != "v1" {
		t.Fatalf("loaded %s", version())
	}
	if _, err := h.Rollback("combat"); err == nil {
		t.Fatal("rollback with no previous version succeeded")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.Watch(ctx, 20*time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	copyBin(bins.CombatV2, filepath.Join(dir, "combat", "build-2"), time.Now())
	for deadline := time.Now().Add(10 * time.Second); version() != "v2"; {
		if time.Now().After(deadline) {
			t.Fatal("the watch did not swap to the new build")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if info, err := h.Rollback("combat"); err != nil || info.Version != "v1" || !strings.HasSuffix(info.Previous, "build-2") {
		t.Fatalf("rollback: %+v %v", info, err)
	}
	time.Sleep(100 * time.Millisecond) // the watch does not undo a rollback
	if version() != "v1" {
		t.Fatalf("after rollback the watch swapped to %s", version())
	}
	if res, err := fight(context.Background(), h); err != nil || res.Rules != "v1" {
		t.Fatalf("after rollback: %+v %v", res, err)
	}
}

// Swaps arrive over the mq, so the host itself refuses any build outside
// its folder for the plugin: other programs, paths that climb out, another
// plugin's folder, symlinks that point out. Nothing refused is run.
func TestSwapOnlyFromThePluginFolder(t *testing.T) {
	bins := plugintest.Build(t)
	dir := t.TempDir()
	v1 := plugintest.Install(t, dir, "combat", "v1", bins.CombatV1)
	plugintest.Install(t, dir, "combat", "v2", bins.CombatV2)
	h := newHost(t, plugins.Config{Dir: dir, StartTimeout: 5 * time.Second})
	if _, err := h.Swap("combat", v1); err != nil {
		t.Fatal(err)
	}
	// A program that leaves a mark if it ever runs.
	marker := filepath.Join(t.TempDir(), "ran")
	script := []byte("#!/bin/sh\necho ran >> " + marker + "\n")
	outside := filepath.Join(t.TempDir(), "evil")
	os.WriteFile(outside, script, 0o755)
	os.WriteFile(filepath.Join(dir, "evil"), script, 0o755)
	os.MkdirAll(filepath.Join(dir, "sleeper"), 0o755)
	os.WriteFile(filepath.Join(dir, "sleeper", "evil"), script, 0o755)
	os.Symlink(outside, filepath.Join(dir, "combat", "link-out"))
	os.Symlink("../evil", filepath.Join(dir, "combat", "link-up"))
	os.MkdirAll(filepath.Join(dir, "combat", "subdir"), 0o755)
	folder := filepath.Join(dir, "combat")

	for _, tc := range []struct{ name, plugin, path, want string }{
		{"another program", "combat", outside, "outside the plugin's folder: builds of plugin combat must be files in " + folder},
		{"a system shell", "combat", "/bin/sh", "outside the plugin's folder"},
		{"a relative path that climbs out", "combat", "../evil", "outside the plugin's folder"},
		{"an absolute path that climbs out", "combat", filepath.Join(folder, "..", "evil"), "outside the plugin's folder"},
		{"another plugin's folder", "combat", filepath.Join(dir, "sleeper", "evil"), "outside the plugin's folder"},
		{"a symlink pointing out", "combat", "link-out", "resolves to " + outside + ", outside the plugin's folder"},
		{"a relative symlink pointing up", "combat", "link-up", "outside the plugin's folder"},
		{"the folder itself", "combat", folder, "outside the plugin's folder"},
		{"a folder inside", "combat", "subdir", "not a regular file"},
		{"a name that climbs out", "../combat/../sleeper", "evil", "is not a plugin name"},
		{"an empty name", "", outside, "is not a plugin name"},
	} {
		_, err := h.Swap(tc.plugin, tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a refused program ran")
	}
	if l := h.List(); len(l) != 1 || l[0].Version != "v1" || l[0].Path != v1 {
		t.Fatalf("the running plugin changed: %+v", l)
	}

	// Inside the folder: a file name relative to it, a symlink to a build
	// beside it.
	if info, err := h.Swap("combat", "v2"); err != nil || info.Version != "v2" || info.Path != filepath.Join(folder, "v2") {
		t.Fatalf("relative file name: %+v %v", info, err)
	}
	os.Symlink("v1", filepath.Join(folder, "current"))
	if info, err := h.Swap("combat", "current"); err != nil || info.Version != "v1" {
		t.Fatalf("symlink inside the folder: %+v %v", info, err)
	}
}

func TestHostNeedsItsFolder(t *testing.T) {
	if _, err := plugins.NewHost(plugins.Config{}); err == nil || !strings.Contains(err.Error(), "Config.Dir is required") {
		t.Fatalf("NewHost without Dir: %v", err)
	}
}
