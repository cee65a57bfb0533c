package game

import (
	"context"
	"sort"
	"sync"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/services"
	"github.com/citadel-go/citadel/tables"
)

// Tables returns the designer tables for the message being handled: the
// version current when the message arrived, the same for the whole
// handler however many reloads happen meanwhile. Nil if the service has
// no tables.
func (p *Player[S]) Tables() *tables.Set { return p.tables }

// startTables spawns the node's tables actor, which reloads and reports
// the node's tables for ReloadTablesEverywhere.
func (s *Service[S]) startTables() error {
	h := s.cfg.Tables
	node := s.cfg.Node.Addr().Node
	_, err := s.cfg.Node.Spawn(services.GameTablesActor, func() framework.Actor {
		return framework.ActorFunc(func(c *framework.Context) {
			switch c.Message().(type) {
			case *services.ReloadTables:
				st := services.TablesStatus{Node: node}
				if _, err := h.Reload(); err != nil {
					st.Error = err.Error()
				}
				st.Version = h.Current().Version
				c.Reply(&st)
			case *services.QueryTables:
				c.Reply(&services.TablesStatus{Node: node, Version: h.Current().Version})
			}
		})
	}, framework.SpawnOptions{Kind: "tables"})
	return err
}

// ReloadTablesEverywhere asks every live game node (this one included) to
// reload its tables file, over the mq, and returns what each now runs, in
// node order. A node that refused the new file reports the error and the
// version it kept; a node that did not answer reports the error of the
// call.
func ReloadTablesEverywhere(ctx context.Context, n *framework.Node) []services.TablesStatus {
	return askTables(ctx, n, &services.ReloadTables{})
}

// QueryTablesEverywhere returns the tables version every live game node
// runs.
func QueryTablesEverywhere(ctx context.Context, n *framework.Node) []services.TablesStatus {
	return askTables(ctx, n, &services.QueryTables{})
}

func askTables(ctx context.Context, n *framework.Node, msg any) []services.TablesStatus {
	nodes := map[string]bool{}
	if n.Addr().Service == services.Game {
		nodes[n.Addr().Node] = true
	}
	if n.Bus() != nil {
		for _, m := range n.Members().Alive(services.Game) {
			nodes[m.Node] = true
		}
	}
	out := make([]services.TablesStatus, 0, len(nodes))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for node := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := services.TablesStatus{Node: node}
			r, err := n.Call(ctx, framework.Addr{Service: services.Game, Node: node, Actor: services.GameTablesActor}, msg)
			if err != nil {
				st.Error = err.Error()
			} else {
				st = *r.(*services.TablesStatus)
			}
			mu.Lock()
			out = append(out, st)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}
