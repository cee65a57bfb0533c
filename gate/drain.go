package gate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/citadel-go/citadel/services"
	"golang.org/x/time/rate"
)

// reconnectTicketTTL is how long a Reconnect's ticket stays valid: the
// client uses it at once.
const reconnectTicketTTL = 30 * time.Second

// Drain moves this gate's clients to the other gates before it stops:
// login stops handing it out, and each attached client gets a Reconnect
// push (at most perSecond a second) with the address of another gate and
// a ticket for it. A client that follows it opens the new connection,
// resumes its player there and closes this one; Drain returns when no
// session is left or ctx ends (Stop then closes the rest with
// server_shutdown). With no other gate it returns at once.
func (g *Gate) Drain(ctx context.Context, perSecond float64) error {
	members := g.node.Members()
	members.SetDraining(true)
	if perSecond <= 0 {
		perSecond = 500
	}
	lim := rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond/10)))
	told := make(map[uint64]bool)
	start := time.Now()
	for {
		if len(members.Alive(services.Gate)) == 0 {
			return errors.New("gate: no other gate takes clients; they will be closed with server_shutdown")
		}
		left := 0
		var pending []*session
		g.sessions.Range(func(_, v any) bool {
			s := v.(*session)
			left++
			if s.state.Load() == stateActive && !told[s.id] {
				pending = append(pending, s)
			}
			return true
		})
		if left == 0 {
			g.log.Info("drained: every client moved to another gate", "clients", len(told), "took", time.Since(start))
			return nil
		}
		for _, s := range pending {
			if err := lim.Wait(ctx); err != nil {
				return fmt.Errorf("gate: drain stopped with %d sessions left: %w", left, err)
			}
			if g.tellReconnect(s) {
				told[s.id] = true
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gate: drain stopped with %d sessions left: %w", left, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// tellReconnect sends one client a Reconnect to the gate its player maps
// to among those taking clients.
func (g *Gate) tellReconnect(s *session) bool {
	target, ok := g.node.Members().Pick(services.Gate, strconv.FormatUint(s.player, 10))
	if !ok {
		return false
	}
	// A gate that has not announced an address for this client's
	// transport yet (it is starting) is no place to send it: try again on
	// the drain's next round.
	addr := services.MetaTCP
	if s.transport == "ws" {
		addr = services.MetaWS
	}
	if target.Meta[addr] == "" {
		return false
	}
	tok, _, err := g.cfg.Tickets.Issue(s.player, target.Node, reconnectTicketTTL)
	if err != nil {
		g.log.Error("cannot issue a ticket for another gate", "err", err)
		return false
	}
	g.sendTo(s, 0, &services.Reconnect{Gate: target.Node, TCP: target.Meta[services.MetaTCP], WS: target.Meta[services.MetaWS], Ticket: tok})
	g.m.reconnects.Inc()
	return true
}
