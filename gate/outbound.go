package gate

import (
	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/bounded"
	"github.com/citadel-go/citadel/mq"
	"github.com/citadel-go/citadel/services"
)

// sessionGone tells the sessions actor a session closed (local only; IDs
// 350–399 are the gate's).
type sessionGone struct{ s *session }

func registerLocal(r *framework.Registry) error {
	return r.Register(350, (*sessionGone)(nil))
}

// maxGroups bounds the broadcast groups one session is in (a game that
// lets clients name groups must not let one client grow the gate's maps).
const maxGroups = 256

// outbound is the gate's "sessions" actor: it delivers what game nodes
// send to sessions, and owns broadcast group membership.
type outbound struct {
	g      *Gate
	groups map[string]map[uint64]*session
}

func newOutbound(g *Gate) *outbound {
	return &outbound{g: g, groups: make(map[string]map[uint64]*session)}
}

func (o *outbound) find(id uint64) *session {
	v, ok := o.g.sessions.Load(id)
	if !ok {
		o.g.m.dropped.Inc()
		return nil
	}
	return v.(*session)
}

func (o *outbound) Receive(c *framework.Context) {
	g := o.g
	switch m := c.Message().(type) {
	case *services.ToClient:
		if s := o.find(m.SessionID); s != nil {
			if data, err := frameData(m.MsgID, m.Seq, m.Payload, g.cfg.MaxFrame); err == nil {
				g.deliver(s, data, true)
			} else {
				g.log.Error("reply too large for the client; dropped", "session", m.SessionID, "msg", m.MsgID, "err", err)
			}
		}
	case *services.ToClients:
		data, err := frameData(m.MsgID, 0, m.Payload, g.cfg.MaxFrame)
		if err != nil {
			g.log.Error("push too large for clients; dropped", "msg", m.MsgID, "err", err)
			return
		}
		for _, id := range m.SessionIDs {
			if s := o.find(id); s != nil {
				g.deliver(s, data, false)
			}
		}
	case *services.Broadcast:
		o.broadcast(m)
	case *services.Hold:
		if s := o.find(m.SessionID); s != nil {
			g.onHold(s, c.Sender())
		}
	case *services.Handed:
		if s := o.find(m.SessionID); s != nil {
			g.onHanded(s, c.Sender(), m)
		}
	case *services.NotHere:
		if s := o.find(m.SessionID); s != nil {
			g.onNotHere(s, m)
		}
	case *services.Kick:
		if s := o.find(m.SessionID); s != nil {
			g.kick(s, m.Code, m.Reason)
		}
	case *services.JoinGroup:
		if s := o.find(m.SessionID); s != nil && len(s.groups) >= maxGroups {
			g.log.Warn("session is in too many broadcast groups; join ignored", "session", s.id, "player", s.player,
				"group", m.Group, "groups", len(s.groups), "max", maxGroups)
		} else if s != nil {
			members, ok := o.groups[m.Group]
			if !ok {
				members = make(map[uint64]*session)
				o.groups[m.Group] = members
			}
			if _, in := members[s.id]; !in {
				members[s.id] = s
				s.groups = append(s.groups, m.Group)
			}
		}
	case *services.LeaveGroup:
		if s := o.find(m.SessionID); s != nil {
			o.leave(s.id, m.Group)
			for i, grp := range s.groups {
				if grp == m.Group {
					s.groups = append(s.groups[:i], s.groups[i+1:]...)
					break
				}
			}
		}
	case *sessionGone:
		for _, grp := range m.s.groups {
			o.leave(m.s.id, grp)
		}
		m.s.groups = nil
	}
}

func (o *outbound) leave(id uint64, group string) {
	if members, ok := o.groups[group]; ok {
		delete(members, id)
		if len(members) == 0 {
			delete(o.groups, group)
		}
	}
}

// broadcast pushes one frame to each session in any of the groups (every
// session if there are none), once even if it is in several.
func (o *outbound) broadcast(b *services.Broadcast) {
	g := o.g
	data, err := frameData(b.MsgID, 0, b.Payload, g.cfg.MaxFrame)
	if err != nil {
		g.log.Error("broadcast too large for clients; dropped", "msg", b.MsgID, "err", err)
		return
	}
	if len(b.Groups) == 0 {
		g.sessions.Range(func(_, v any) bool {
			if s := v.(*session); s.state.Load() == stateActive {
				g.deliver(s, data, false)
			}
			return true
		})
		return
	}
	if len(b.Groups) == 1 {
		for _, s := range o.groups[b.Groups[0]] {
			g.deliver(s, data, false)
		}
		return
	}
	seen := make(map[uint64]bool)
	for _, grp := range b.Groups {
		for id, s := range o.groups[grp] {
			if !seen[id] {
				seen[id] = true
				g.deliver(s, data, false)
			}
		}
	}
}

// onBroadcast receives Broadcast messages from the mq and hands them to
// the sessions actor, which owns the groups.
func (g *Gate) onBroadcast(m *mq.Message) error {
	var b services.Broadcast
	if err := bounded.Unmarshal(m.Body, &b); err != nil {
		g.log.Warn("undecodable broadcast dropped", "err", err, "bytes", len(m.Body))
		return nil
	}
	return g.node.Send(g.self, &b)
}
