package citadel

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/citadel-go/citadel/game"
	"github.com/citadel-go/citadel/plugins"
	"github.com/citadel-go/citadel/services"
)

// PluginSources is a game whose plugins the server can build: on a first
// run from the game's source tree (the module the working directory is
// in), each plugin folder without a build gets one from its package (a
// path relative to the module root, by plugin name), unless
// -build-plugins=false.
type PluginSources interface {
	PluginSources() map[string]string
}

// startPlugins starts the plugin host and loads every plugin in the folder.
func (s *server) startPlugins() error {
	cfg := s.cfg
	if err := os.MkdirAll(cfg.PluginsDir, 0o755); err != nil {
		return fmt.Errorf("plugins: %w", err)
	}
	if src, ok := cfg.Game.(PluginSources); ok && cfg.BuildPlugins {
		for name, pkg := range src.PluginSources() {
			s.buildExample(name, pkg)
		}
	}
	var err error
	if s.plugins, err = plugins.NewHost(plugins.Config{Dir: cfg.PluginsDir, Logger: s.log, Metrics: s.metrics}); err != nil {
		return err
	}
	if err := s.plugins.LoadDir(); err != nil {
		s.log.Warn("some plugins did not load; the sample game's combat falls back to its built-in rules", "err", err)
	}
	if cfg.PluginsWatch > 0 {
		go s.plugins.Watch(s.bg, cfg.PluginsWatch)
	}
	return nil
}

// buildExample builds an example plugin into its folder when the folder
// has no build and the source is here (a checkout); it logs and carries on
// when it cannot.
func (s *server) buildExample(name, pkg string) {
	dir := filepath.Join(s.cfg.PluginsDir, name)
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return
	}
	// The source tree: the module the working directory is in.
	gomod, _ := exec.Command("go", "env", "GOMOD").Output()
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if _, err := os.Stat(filepath.Join(root, pkg, "main.go")); len(gomod) == 0 || err != nil {
		s.log.Info("no plugin build and no source to build it from", "plugin", name, "folder", dir)
		return
	}
	out, err := filepath.Abs(filepath.Join(dir, "v1"))
	if err != nil {
		s.log.Error("plugin folder", "err", err)
		return
	}
	s.log.Info("building the example plugin (the first build takes a while)", "plugin", name, "into", out)
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		s.log.Error("building the example plugin failed", "plugin", name, "err", err, "output", string(msg))
		return
	}
	s.log.Info("built the example plugin", "plugin", name, "took", time.Since(start).Round(time.Millisecond))
}

// pluginsHandler serves GET /plugins (every game node's plugins),
// POST /plugins/swap?name=N&path=P (every game node swaps N to the build
// at P on its disk: a file name relative to the node's folder for N, or a
// path inside it; each node refuses anything else) and
// POST /plugins/rollback?name=N. JSON; 409 if a node refused (it keeps
// what it runs).
func (s *server) pluginsHandler(w http.ResponseWriter, r *http.Request) {
	n := s.nodes[0]
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	name, path := r.FormValue("name"), r.FormValue("path")
	var sts []services.PluginsStatus
	switch {
	case r.URL.Path == "/plugins" && r.Method == http.MethodGet:
		sts = game.QueryPluginsEverywhere(ctx, n)
	case r.URL.Path == "/plugins/swap" && r.Method == http.MethodPost && name != "" && path != "":
		sts = game.SwapPluginEverywhere(ctx, n, name, path)
	case r.URL.Path == "/plugins/rollback" && r.Method == http.MethodPost && name != "":
		sts = game.RollbackPluginEverywhere(ctx, n, name)
	default:
		http.Error(w, "GET /plugins, POST /plugins/swap?name=N&path=P (P: a build in the plugin's folder, e.g. v2), POST /plugins/rollback?name=N", http.StatusBadRequest)
		return
	}
	writeNodes(w, sts, func(st services.PluginsStatus) string { return st.Error })
}
