// Package plugintest builds the plugin binaries tests need (the combat
// example's v1 and v2, and test plugins that sleep, crash or are broken)
// once per test process.
package plugintest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Binaries are built plugin executables.
type Binaries struct {
	CombatV1, CombatV2 string
	// Sleeper is a test plugin ("sleeper": sleep, echo, panic, pid).
	Sleeper string
	// Panicky is a "combat" plugin whose canary panics.
	Panicky string
	// NotPlugin is an ordinary program; WrongProto a plugin of a newer
	// protocol version.
	NotPlugin, WrongProto string
}

var (
	once  sync.Once
	built Binaries
	err   error
)

// Build builds the binaries (once per process) and returns their paths.
func Build(t testing.TB) Binaries {
	t.Helper()
	once.Do(func() { built, err = build() })
	if err != nil {
		t.Fatalf("build plugins: %v", err)
	}
	return built
}

func build() (Binaries, error) {
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return Binaries{}, fmt.Errorf("find the module: %w", err)
	}
	dir, err := os.MkdirTemp("", "citadel-plugintest-")
	if err != nil {
		return Binaries{}, err
	}
	b := Binaries{
		CombatV1: filepath.Join(dir, "combat-v1"), CombatV2: filepath.Join(dir, "combat-v2"),
		Sleeper: filepath.Join(dir, "sleeper"), Panicky: filepath.Join(dir, "panicky"),
		NotPlugin: filepath.Join(dir, "notplugin"), WrongProto: filepath.Join(dir, "wrongproto"),
	}
	jobs := map[string]string{
		b.CombatV1: "./plugins/examples/combat/v1", b.CombatV2: "./plugins/examples/combat/v2",
		b.Sleeper: "./plugins/testdata/sleeper", b.Panicky: "./plugins/testdata/panicky",
		b.NotPlugin: "./plugins/testdata/notplugin", b.WrongProto: "./plugins/testdata/wrongproto",
	}
	var mu sync.Mutex
	var errs []string
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for out, pkg := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			cmd := exec.Command("go", "build", "-o", out, pkg)
			cmd.Dir = strings.TrimSpace(string(root))
			if msg, err := cmd.CombinedOutput(); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("%s: %v\n%s", pkg, err, msg))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return b, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return b, nil
}

// Install copies the build src into dir/plugin/file (executable, written
// beside and renamed in, as a deploy should) and returns its path: a host
// runs builds only from inside its folder for the plugin.
func Install(t testing.TB, dir, plugin, file, src string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	folder := filepath.Join(dir, plugin)
	if err := os.MkdirAll(folder, 0o755); err != nil {
		t.Fatal(err)
	}
	dst, tmp := filepath.Join(folder, file), filepath.Join(folder, "."+file)
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
	return dst
}
