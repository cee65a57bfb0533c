package citadel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citadel-go/citadel/client"
	"github.com/citadel-go/citadel/game/sample"
	"github.com/citadel-go/citadel/services"
	"github.com/citadel-go/citadel/tables/tablestest"
)

// tableVariant is a tables data file and what ItemInfo{sword} must answer
// with it.
type tableVariant struct {
	data         []byte
	version      string
	price, power int32
}

// exportTables exports the sample's tables with the sword's price and power
// changed.
func exportTables(t testing.TB, price, power int32) tableVariant {
	t.Helper()
	data, version := tablestest.Export(t, "game/sample/gamedata/src", tablestest.Replace("Item.csv", "4,sword,Iron Sword,Weapon,120,12,",
		fmt.Sprintf("4,sword,Iron Sword,Weapon,%d,%d,", price, power)))
	return tableVariant{data: data, version: version, price: price, power: power}
}

// replaceFile swaps path's content atomically, as a deploy would.
func replaceFile(t testing.TB, path string, data []byte) {
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

type tablesReply struct {
	Nodes []services.TablesStatus
}

func adminTables(t testing.TB, srv *server, method, path string) (int, tablesReply) {
	resp := adminDo(t, srv, method, path, nil)
	defer resp.Body.Close()
	var r tablesReply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, r
}

// Must show 3: bots play while the tables are reloaded 100 times, each
// reply consistent with exactly one version and no handler error; then a
// broken file is refused and the old tables stay.
func TestTablesHotReloadUnderLoad(t *testing.T) {
	a, b := exportTables(t, 120, 12), exportTables(t, 121, 13)
	variants := map[string]tableVariant{a.version: a, b.version: b}
	path := filepath.Join(t.TempDir(), "tables.bin")
	replaceFile(t, path, a.data)
	srv := startTestServer(t, func(c *config) { c.TablesPath, c.ClientRate = path, 1e6 })

	var errs atomic.Int64
	var seen sync.Map // version -> count
	fail := func(format string, args ...any) {
		if errs.Add(1) <= 5 {
			t.Errorf(format, args...)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		c := player(t, srv, fmt.Sprintf("reloader%d", i), client.TCP, true)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				var msg any = &services.ItemInfo{Item: "sword"}
				switch n % 4 {
				case 1:
					msg = &services.Hunt{Monster: 101 + int32(n%8)/2}
				case 2:
					msg = &services.PickUp{Item: "apple", Count: 1}
				case 3:
					msg = &services.UseItem{Item: "apple"}
				}
				cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
				r, err := c.Call(cctx, msg)
				ccancel()
				var se *client.ServerError
				switch {
				case ctx.Err() != nil:
					return
				case errors.As(err, &se) && (se.Code == sample.CodeTooSoon || se.Code == sample.CodeNoItem):
				case err != nil:
					fail("%T: %v", msg, err)
				}
				if st, ok := r.(*services.ItemStats); ok {
					v, known := variants[st.Version]
					if !known || st.Price != v.price || st.Power != v.power {
						fail("ItemStats %+v matches no exported version", st)
					}
					cnt, _ := seen.LoadOrStore(st.Version, new(atomic.Int64))
					cnt.(*atomic.Int64).Add(1)
				}
			}
		}()
	}

	start := time.Now()
	for i := 0; i < 100; i++ {
		v := []tableVariant{b, a}[i%2]
		replaceFile(t, path, v.data)
		code, r := adminTables(t, srv, http.MethodPost, "/tables/reload")
		if code != http.StatusOK || len(r.Nodes) != 1 || r.Nodes[0].Version != v.version {
			t.Fatalf("reload %d: %d %+v, want version %s", i, code, r, v.version)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("100 reloads in %v", time.Since(start).Round(time.Millisecond))

	// A broken file is refused; the node keeps (and reports) the version
	// it runs.
	replaceFile(t, path, b.data[:len(b.data)-20])
	code, r := adminTables(t, srv, http.MethodPost, "/tables/reload")
	if code != http.StatusConflict || len(r.Nodes) != 1 || r.Nodes[0].Version != a.version || !strings.Contains(r.Nodes[0].Error, "checksum") {
		t.Fatalf("broken reload: %d %+v", code, r)
	}
	time.Sleep(100 * time.Millisecond)
	cancel()
	wg.Wait()
	if code, r := adminTables(t, srv, http.MethodGet, "/tables"); code != http.StatusOK || r.Nodes[0].Version != a.version {
		t.Fatalf("after a refused reload: %d %+v", code, r)
	}
	counts := map[string]int64{}
	seen.Range(func(k, v any) bool { counts[k.(string)] = v.(*atomic.Int64).Load(); return true })
	if counts[a.version] == 0 || counts[b.version] == 0 {
		t.Fatalf("replies by version %v: the bots did not see both versions", counts)
	}
	if errs.Load() != 0 {
		t.Fatalf("%d failed calls", errs.Load())
	}
	t.Logf("ItemInfo replies by version: %v", counts)
}

// A reload on one node is announced over the mq: every game node reloads
// and reports the version it runs; a node whose file is broken keeps its
// version and says why.
func TestTablesReloadReachesEveryGameNode(t *testing.T) {
	a, b := exportTables(t, 120, 12), exportTables(t, 121, 13)
	dir := t.TempDir()
	path1, path2 := filepath.Join(dir, "one.bin"), filepath.Join(dir, "two.bin")
	replaceFile(t, path1, a.data)
	replaceFile(t, path2, a.data)
	shared := clusterStore(t)
	srv1 := startTestServer(t, func(c *config) { shared(c); c.TablesPath = path1 })
	startTestServer(t, func(c *config) {
		shared(c)
		c.Roles, c.NodeID, c.TablesPath = []string{services.Game}, "2", path2
		c.NSQD, c.NSQDHTTPExt = []string{srv1.broker.TCPAddr()}, []string{srv1.broker.HTTPAddr()}
		c.ClusterKeyFile = srv1.cfg.ClusterKeyFile
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, r := adminTables(t, srv1, http.MethodGet, "/tables"); len(r.Nodes) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second game node never appeared")
		}
		time.Sleep(50 * time.Millisecond)
	}

	replaceFile(t, path1, b.data)
	replaceFile(t, path2, b.data)
	code, r := adminTables(t, srv1, http.MethodPost, "/tables/reload")
	if code != http.StatusOK || len(r.Nodes) != 2 || r.Nodes[0].Version != b.version || r.Nodes[1].Version != b.version {
		t.Fatalf("reload everywhere: %d %+v", code, r)
	}

	replaceFile(t, path1, a.data)
	replaceFile(t, path2, []byte("not a tables file"))
	code, r = adminTables(t, srv1, http.MethodPost, "/tables/reload")
	if code != http.StatusConflict || r.Nodes[0].Version != a.version || r.Nodes[0].Error != "" ||
		r.Nodes[1].Version != b.version || !strings.Contains(r.Nodes[1].Error, "not a Citadel tables file") {
		t.Fatalf("one node refused: %d %+v", code, r)
	}
}
