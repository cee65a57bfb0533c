package citadel

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/citadel-go/citadel/client"
	"github.com/citadel-go/citadel/plugins/plugintest"
	"github.com/citadel-go/citadel/services"
)

type pluginsReply struct {
	Nodes []services.PluginsStatus
}

func adminPlugins(t testing.TB, srv *server, method, path string, form url.Values) (int, pluginsReply) {
	resp := adminDo(t, srv, method, path, form)
	defer resp.Body.Close()
	var r pluginsReply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, r
}

// Must show 1, end to end: players hunt (the combat plugin decides every
// fight) while the plugin is swapped v1→v2→v1… through the admin API: no
// failed call, and each player's replies change rules version at one point
// per swap.
func TestPluginSwapUnderPlayers(t *testing.T) {
	bins := plugintest.Build(t)
	dir := t.TempDir()
	plugintest.Install(t, dir, "combat", "v1", bins.CombatV1)
	srv := startTestServer(t, func(c *config) { c.PluginsDir, c.ClientRate = dir, 1e6 })
	plugintest.Install(t, dir, "combat", "v2", bins.CombatV2)
	plugintest.Install(t, dir, "combat", "panicky", bins.Panicky)

	const players, swaps = 8, 10
	var failed, hunts atomic.Int64
	seqs := make([][]string, players)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range seqs {
		c := player(t, srv, fmt.Sprintf("hunter%d", i), client.TCP, true)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
				r, err := c.Call(cctx, &services.Hunt{Monster: 101 + int32(i%4)})
				ccancel()
				if err != nil {
					if failed.Add(1) <= 3 {
						t.Errorf("hunt failed: %v", err)
					}
				} else {
					hunts.Add(1)
					rules := r.(*services.Hunted).Rules
					if n := len(seqs[i]); n == 0 || seqs[i][n-1] != rules {
						seqs[i] = append(seqs[i], rules)
					}
				}
				time.Sleep(210 * time.Millisecond) // the settings' hunt cooldown is 200ms
			}
		}()
	}
	for i := 0; i < swaps; i++ {
		time.Sleep(250 * time.Millisecond)
		path := []string{"v2", "v1"}[i%2] // file names in the plugin's folder
		code, r := adminPlugins(t, srv, http.MethodPost, "/plugins/swap", url.Values{"name": {"combat"}, "path": {path}})
		want := []string{"v2", "v1"}[i%2]
		if code != http.StatusOK || len(r.Nodes) != 1 || r.Nodes[0].Plugins[0].Version != want {
			t.Fatalf("swap %d: %d %+v", i, code, r)
		}
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d hunts failed during swaps", failed.Load(), hunts.Load()+failed.Load())
	}
	for i, seq := range seqs {
		if len(seq) > swaps+1 || len(seq) < 2 || seq[len(seq)-1] != "v1" {
			t.Errorf("player %d saw rules %v over %d swaps ending on v1", i, seq, swaps)
		}
	}
	t.Logf("%d hunts, no failure; player 0 saw %v", hunts.Load(), seqs[0])

	// Roll back and a broken build, through the admin API.
	code, r := adminPlugins(t, srv, http.MethodPost, "/plugins/rollback", url.Values{"name": {"combat"}})
	if code != http.StatusOK || r.Nodes[0].Plugins[0].Version != "v2" {
		t.Fatalf("rollback: %d %+v", code, r)
	}
	code, r = adminPlugins(t, srv, http.MethodPost, "/plugins/swap", url.Values{"name": {"combat"}, "path": {"panicky"}})
	if code != http.StatusConflict || r.Nodes[0].Plugins[0].Version != "v2" || r.Nodes[0].Error == "" {
		t.Fatalf("broken build: %d %+v", code, r)
	}
}

var pluginLine = regexp.MustCompile(`plugin\s+combat (\S+)\s+\(pid (\d+)`)

// The quick start's default: `citadel` builds the example combat plugin
// into <data>/plugins on its first run, loads it, fights with it, and
// leaves no plugin process behind when it stops.
func TestBinaryBuildsAndLoadsTheExamplePlugin(t *testing.T) {
	dataDir := t.TempDir()
	p := startProcess(t, dataDir, "-plugins", "", "-log-level", "info")
	m := pluginLine.FindStringSubmatch(p.stdout.String())
	if m == nil || m[1] != "v1" {
		t.Fatalf("no combat plugin loaded:\n%s\n%s", p.stdout.String(), p.stderr.String())
	}
	pid, _ := strconv.Atoi(m[2])
	if _, err := os.Stat(filepath.Join(dataDir, "plugins", "combat", "v1")); err != nil {
		t.Fatal(err)
	}
	lr, err := client.Register(context.Background(), p.loginURL, "hunter", "password-hunter")
	for deadline := time.Now().Add(10 * time.Second); err != nil && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		lr, err = client.Register(context.Background(), p.loginURL, "hunter", "password-hunter")
	}
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Connect(context.Background(), lr, client.Options{Registry: clientRegistry(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if h := call[*services.Hunted](t, c, &services.Hunt{Monster: 101}); h.Rules != "v1" {
		t.Fatalf("hunt decided by %q, want the v1 plugin", h.Rules)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, p.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if syscall.Kill(pid, 0) == nil {
		t.Fatalf("plugin process %d still running after the server stopped", pid)
	}
}

// A swap requested on one node reaches every game node over the mq; each
// reports what it runs.
func TestPluginSwapReachesEveryGameNode(t *testing.T) {
	bins := plugintest.Build(t)
	dirs := []string{t.TempDir(), t.TempDir()}
	for _, d := range dirs {
		plugintest.Install(t, d, "combat", "v1", bins.CombatV1)
	}
	shared := clusterStore(t)
	srv1 := startTestServer(t, func(c *config) { shared(c); c.PluginsDir = dirs[0] })
	startTestServer(t, func(c *config) {
		shared(c)
		c.Roles, c.NodeID, c.PluginsDir = []string{services.Game}, "2", dirs[1]
		c.NSQD, c.NSQDHTTPExt = []string{srv1.broker.TCPAddr()}, []string{srv1.broker.HTTPAddr()}
		c.ClusterKeyFile = srv1.cfg.ClusterKeyFile
	})
	// Deployed to both: each node resolves the file name in its own folder.
	for _, d := range dirs {
		plugintest.Install(t, d, "combat", "v2", bins.CombatV2)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, r := adminPlugins(t, srv1, http.MethodGet, "/plugins", nil); len(r.Nodes) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second game node never appeared")
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, r := adminPlugins(t, srv1, http.MethodPost, "/plugins/swap", url.Values{"name": {"combat"}, "path": {"v2"}})
	if code != http.StatusOK || len(r.Nodes) != 2 {
		t.Fatalf("swap everywhere: %d %+v", code, r)
	}
	for _, n := range r.Nodes {
		if len(n.Plugins) != 1 || n.Plugins[0].Version != "v2" || n.Error != "" {
			t.Fatalf("node %s after the swap: %+v", n.Node, n)
		}
	}
	code, r = adminPlugins(t, srv1, http.MethodPost, "/plugins/rollback", url.Values{"name": {"combat"}})
	if code != http.StatusOK || r.Nodes[0].Plugins[0].Version != "v1" || r.Nodes[1].Plugins[0].Version != "v1" {
		t.Fatalf("rollback everywhere: %d %+v", code, r)
	}
}
