package gate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/services"
)

// Moving a session's player between game nodes without closing the
// session (docs/runtime.md, "Handoff"). The gate holds the session's
// client requests while:
//   - the player's actor hands the player off (Hold ... Handed): the
//     actor asked for the hold, the gate answered Held after every request
//     it had forwarded, the actor saved and released the player, and the
//     gate attaches the session to the next node and forwards the held
//     requests there, in order;
//   - the player's game node is suspect (no heartbeats): nothing is given
//     up; when it beats again the held requests go to it;
//   - the player's game node left (its lease is over, or it restarted) or
//     has no actor for the session (NotHere): the gate attaches the
//     session again wherever the player maps now.
// A hold lasts at most HoldTimeout; then the session is closed with
// game_unavailable and the client logs in again.

// forward sends a client request to the player's actor, or holds it.
func (g *Gate) forward(s *session, req *services.ClientRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.holding {
		if len(s.heldReqs) < g.cfg.MaxHeldRequests && s.heldReqBytes+len(req.Payload) <= g.cfg.SendQueueBytes {
			// The payload lies in the connection's read buffer, which the
			// next frame overwrites (a request sent at once is encoded
			// before that).
			req.Payload = bytes.Clone(req.Payload)
			s.heldReqs = append(s.heldReqs, req)
			s.heldReqBytes += len(req.Payload)
			return
		}
		if req.Seq != 0 {
			g.sendTo(s, req.Seq, &services.Error{Code: services.ErrCodeUnavailable, Message: "the game is moving your player; retry shortly"})
		}
		g.m.heldOverflow.Inc()
		return
	}
	if err := g.node.Send(s.actor, req); err != nil {
		g.log.Warn("cannot forward client message", "session", s.id, "player", s.player, "err", err)
		if req.Seq != 0 {
			g.sendTo(s, req.Seq, &services.Error{Code: services.ErrCodeUnavailable, Message: "the game is not reachable; retry"})
		}
	}
}

// holdLocked starts holding the session's requests (s.mu held).
func (g *Gate) holdLocked(s *session) {
	if s.holding {
		return
	}
	s.holding, s.holdSince = true, time.Now()
	g.holds.Store(s.id, s)
	g.m.holding.Inc()
}

// releaseLocked forwards the held requests to the session's actor, in
// order, and stops holding (s.mu held).
func (g *Gate) releaseLocked(s *session) {
	if !s.holding {
		return
	}
	for _, req := range s.heldReqs {
		if err := g.node.Send(s.actor, req); err != nil && req.Seq != 0 {
			g.sendTo(s, req.Seq, &services.Error{Code: services.ErrCodeUnavailable, Message: "the game is not reachable; retry"})
		}
	}
	g.m.pause.Observe(time.Since(s.holdSince).Seconds())
	s.holding, s.heldReqs, s.heldReqBytes, s.moving = false, nil, 0, false
	g.holds.Delete(s.id)
	g.m.holding.Dec()
}

// setActor sets the session's actor (under s.mu once the session is
// active).
func (s *session) setActor(a framework.Addr) {
	s.actor = a
	s.cur.Store(&a)
}

// actorOf reads the session's current actor without s.mu (a kick can run
// under it).
func (s *session) actorOf() framework.Addr {
	if a := s.cur.Load(); a != nil {
		return *a
	}
	return framework.Addr{}
}

// onHold: the player's actor is about to hand the player off.
func (g *Gate) onHold(s *session, from framework.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.Load() != stateActive || from.Node != s.actor.Node || s.reattaching {
		return // not (or no longer) the session's actor: its node will time out and keep the player
	}
	g.holdLocked(s)
	s.moving = true
	s.moveGen++
	gen := s.moveGen
	if err := g.node.Send(s.actor, &services.Held{SessionID: s.id}); err != nil {
		s.moving = false
		g.releaseLocked(s)
		return
	}
	// Bounded: an actor that never says Handed (its node died mid-move)
	// leaves the session to a clean re-attach; the store decides who owns
	// the player, never two nodes.
	time.AfterFunc(g.cfg.HandoffTimeout, func() {
		s.mu.Lock()
		late := s.moving && s.moveGen == gen
		s.mu.Unlock()
		if late {
			g.log.Warn("handoff did not finish in time; attaching the session again", "session", s.id, "player", s.player)
			g.m.handoffs.WithLabelValues("timed_out").Inc()
			g.reattach(s, "", false)
		}
	})
}

// onHanded: the old actor saved and released the player (or gave up).
func (g *Gate) onHanded(s *session, from framework.Addr, m *services.Handed) {
	s.mu.Lock()
	if !s.moving || from.Node != s.actor.Node {
		s.mu.Unlock()
		return
	}
	s.moving = false
	if m.Aborted {
		g.m.handoffs.WithLabelValues("aborted").Inc()
		g.releaseLocked(s)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	g.reattach(s, m.Target, true)
}

// onNotHere: a game node has no actor for the session.
func (g *Gate) onNotHere(s *session, m *services.NotHere) {
	if s.state.Load() == stateActive && s.actorOf() == m.Actor {
		g.reattach(s, "", false)
	}
}

// onGameMember holds, releases or re-attaches the sessions whose players
// are on a game node that became suspect, recovered, or left.
func (g *Gate) onGameMember(ev framework.MemberEvent) {
	node := ev.Member.Node
	g.sessions.Range(func(_, v any) bool {
		s := v.(*session)
		if s.state.Load() != stateActive {
			return true
		}
		s.mu.Lock()
		here := s.actor.Node == node
		switch {
		case !here:
		case ev.Kind == framework.MemberSuspect:
			g.holdLocked(s)
		case ev.Kind == framework.MemberRecovered && s.holding && !s.moving && !s.reattaching:
			g.releaseLocked(s)
		}
		s.mu.Unlock()
		if here && ev.Kind == framework.MemberLeft {
			g.reattach(s, "", false)
		}
		return true
	})
}

// reattach attaches the session again, on target if that node takes
// players, else where the player maps now, retrying until HoldTimeout;
// then forwards the held requests there. moved: the player was handed
// off (its state is the one just saved), not lost with its node.
func (g *Gate) reattach(s *session, target string, moved bool) {
	s.mu.Lock()
	if s.reattaching || s.isClosing() {
		s.mu.Unlock()
		return
	}
	s.reattaching, s.moving = true, false
	g.holdLocked(s)
	since := s.holdSince
	s.mu.Unlock()
	go func() {
		outcome := g.attachAgain(s, target, moved, since)
		g.m.handoffs.WithLabelValues(outcome).Inc()
	}()
}

func (g *Gate) attachAgain(s *session, target string, moved bool, since time.Time) string {
	deadline := since.Add(g.cfg.HoldTimeout)
	ref := services.SessionRef{Gate: g.self, Incarnation: g.node.Incarnation(), ID: s.id}
	members := g.node.Members()
	var lastErr error
	for pause := 20 * time.Millisecond; ; pause = min(2*pause, time.Second) {
		if s.isClosing() {
			return "closed"
		}
		node := ""
		if m, ok := members.Get(services.Game, target); ok && target != "" && !m.Suspect && !m.Draining {
			node = m.Node
		} else if m, ok := members.Pick(services.Game, strconv.FormatUint(s.player, 10)); ok {
			node = m.Node
		}
		if node != "" {
			ctx, cancel := context.WithTimeout(context.Background(), min(g.cfg.AttachTimeout, time.Until(deadline)))
			manager := framework.Addr{Service: services.Game, Node: node, Actor: services.GameActorManager}
			g.attachSlots <- struct{}{}
			r, err := g.node.Call(ctx, manager, &services.Attach{PlayerID: s.player, Session: ref, Moved: moved})
			<-g.attachSlots
			cancel()
			if att, ok := r.(*services.Attached); ok && err == nil {
				s.mu.Lock()
				s.setActor(att.Actor)
				s.reattaching = false
				g.releaseLocked(s)
				closing := s.isClosing()
				s.mu.Unlock()
				if closing { // closed meanwhile: cleanup told the old actor
					g.node.Send(att.Actor, &services.Detach{PlayerID: s.player, Incarnation: g.node.Incarnation(), SessionID: s.id})
				}
				if moved {
					return "moved"
				}
				return "reattached"
			}
			if err == nil {
				err = fmt.Errorf("answered Attach with %T", r)
			}
			lastErr = fmt.Errorf("game node %s: %w", node, err)
			target = "" // that node would not take it: wherever the ring says
		} else {
			lastErr = errors.New("no game node takes players")
		}
		if time.Now().Add(pause).After(deadline) {
			s.mu.Lock()
			s.reattaching = false
			s.mu.Unlock()
			g.kick(s, services.KickUnavailable, fmt.Sprintf("the player could not be attached to a game node within %v (%v); log in again", g.cfg.HoldTimeout, lastErr))
			return "failed"
		}
		time.Sleep(pause)
	}
}

// watchHolds closes sessions held for longer than HoldTimeout without a
// re-attach under way (their node stays suspect and nobody buried it,
// e.g. the only game node froze for good).
func (g *Gate) watchHolds(stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case ev := <-g.gameEvents:
			g.onGameMember(ev)
		case now := <-t.C:
			g.holds.Range(func(_, v any) bool {
				s := v.(*session)
				s.mu.Lock()
				if s.isClosing() && s.holding {
					s.holding, s.heldReqs = false, nil
					g.holds.Delete(s.id)
					g.m.holding.Dec()
				}
				stale := s.holding && !s.reattaching && now.Sub(s.holdSince) > g.cfg.HoldTimeout
				s.mu.Unlock()
				if stale {
					g.kick(s, services.KickUnavailable, fmt.Sprintf("the game node serving this player did not answer for %v; log in again", g.cfg.HoldTimeout))
				}
				return true
			})
		}
	}
}
