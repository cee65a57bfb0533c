package game

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/services"
	"github.com/citadel-go/citadel/tables"
)

// Tables returns the designer tables for the message being handled: the
// version current when the message arrived, the same for the whole
// handler however many reloads happen meanwhile. Nil if the service has
// no tables. It is the game's own generated Set; the game's tables package
// gives it its type: gamedata.Of(p.Tables()).
func (p *Player[S]) Tables() tables.Set { return p.tables }

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
				if err := h.Reload(); err != nil {
					st.Error = err.Error()
				}
				st.Version = h.Pin().TablesInfo().Version
				c.Reply(&st)
			case *services.QueryTables:
				c.Reply(&services.TablesStatus{Node: node, Version: h.Pin().TablesInfo().Version})
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
	return askGameNodes(ctx, n, services.GameTablesActor, msg, func(node string, err error) *services.TablesStatus {
		return &services.TablesStatus{Node: node, Error: err.Error()}
	})
}

// askGameNodes calls actor on every live game node (this one included, if
// it is one) with msg, concurrently, and returns the replies in node order;
// a node whose call failed gets failed(node, err).
func askGameNodes[R any](ctx context.Context, n *framework.Node, actor string, msg any, failed func(node string, err error) *R) []R {
	nodes := map[string]bool{}
	if n.Addr().Service == services.Game {
		nodes[n.Addr().Node] = true
	}
	if n.Bus() != nil {
		for _, m := range n.Members().Alive(services.Game) {
			nodes[m.Node] = true
		}
	}
	names := make([]string, 0, len(nodes))
	for node := range nodes {
		names = append(names, node)
	}
	sort.Strings(names)
	out := make([]R, len(names))
	var wg sync.WaitGroup
	for i, node := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := n.Call(ctx, framework.Addr{Service: services.Game, Node: node, Actor: actor}, msg)
			if err == nil {
				if v, ok := r.(*R); ok {
					out[i] = *v
					return
				}
				err = fmt.Errorf("unexpected reply %T", r)
			}
			out[i] = *failed(node, err)
		}()
	}
	wg.Wait()
	return out
}
