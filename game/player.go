package game

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/services"
	"github.com/citadel-go/citadel/tables"
	"github.com/vmihailenco/msgpack/v5"
)

// ErrDetached is returned by Push and group calls while the player has no
// session (in its grace period).
var ErrDetached = errors.New("game: player has no session")

// Player is one online player's actor. Handlers get it with the player's
// state; everything on it runs on the player's own goroutine.
type Player[S any] struct {
	// ID is the player's (and account's) ID.
	ID uint64
	// State is the player's state; call MarkDirty after changing it.
	State *S

	svc      *Service[S]
	ctx      *framework.Context
	log      *slog.Logger // built by logger(), on the actor's goroutine
	session  services.SessionRef
	attached bool
	attaches int
	gen      uint64 // attach generation (from the manager)
	save     saveState
	exchange exchangeState
	first    *attachReq // the attach that spawned the actor
	tables   tables.Set // pinned for the message being handled
	move     moveState
	// elsewhere: the node that owns the player, found when a message
	// started this actor (activate); the messages go there.
	elsewhere store.Owner
}

// moveState is a handoff in progress: the actor asked its gate to hold
// the session's requests and waits for Held.
type moveState struct {
	target string // "" when no move is under way
	gen    uint64
}

// Context returns the actor context of the message being handled.
func (p *Player[S]) Context() *framework.Context { return p.ctx }

// Logger returns a logger tagged with the player.
func (p *Player[S]) Logger() *slog.Logger { return p.logger() }

// logger builds the player's logger on first use: most players never log,
// and a tagged logger costs a few hundred bytes each.
func (p *Player[S]) logger() *slog.Logger {
	if p.log == nil {
		p.log = p.svc.log.With("player", p.ID)
	}
	return p.log
}

// Session returns the attached session, if any.
func (p *Player[S]) Session() (services.SessionRef, bool) { return p.session, p.attached }

// Push sends msg to the player's client (a frame with seq 0).
func (p *Player[S]) Push(msg any) error {
	return p.toClient(0, msg)
}

func (p *Player[S]) toClient(seq uint32, msg any) error {
	if !p.attached {
		return ErrDetached
	}
	id, payload, err := p.svc.cfg.Node.Registry().Marshal(msg)
	if err != nil {
		return err
	}
	return p.ctx.SendTo(p.session.Gate, p.session.Incarnation, &services.ToClient{SessionID: p.session.ID, Seq: seq, MsgID: id, Payload: payload})
}

// JoinGroup adds the player's session to a broadcast group on its gate.
func (p *Player[S]) JoinGroup(group string) error {
	if !p.attached {
		return ErrDetached
	}
	return p.ctx.SendTo(p.session.Gate, p.session.Incarnation, &services.JoinGroup{SessionID: p.session.ID, Group: group})
}

// LeaveGroup removes the player's session from a group.
func (p *Player[S]) LeaveGroup(group string) error {
	if !p.attached {
		return ErrDetached
	}
	return p.ctx.SendTo(p.session.Gate, p.session.Incarnation, &services.LeaveGroup{SessionID: p.session.ID, Group: group})
}

// Broadcast pushes msg to every session, on every gate, in any of groups
// (all sessions when groups is empty).
func (p *Player[S]) Broadcast(groups []string, msg any) error {
	return Broadcast(p.svc.cfg.Node, groups, msg)
}

// Broadcast publishes msg on the broadcast topic for every gate.
func Broadcast(n *framework.Node, groups []string, msg any) error {
	if n.Bus() == nil {
		return errors.New("game: broadcast needs a node with an mq")
	}
	id, payload, err := n.Registry().Marshal(msg)
	if err != nil {
		return err
	}
	body, err := msgpack.Marshal(&services.Broadcast{Groups: groups, MsgID: id, Payload: payload})
	if err != nil {
		return err
	}
	return n.Bus().PublishAsync(services.BroadcastTopic, body)
}

// Receive implements framework.Actor.
func (p *Player[S]) Receive(c *framework.Context) {
	p.ctx = c
	if h := p.svc.cfg.Tables; h != nil {
		p.tables = h.Pin()
	}
	switch m := c.Message().(type) {
	case framework.Started:
		p.start()
	case *attachReq:
		p.attach(m)
	case *services.ClientRequest:
		if !p.exchange.lockedBy.IsZero() {
			p.stash(m, len(m.Payload), func() { p.replyError(m.Seq, framework.NewError(CodePeerBusy, "the player is in an exchange; retry")) })
			return
		}
		p.request(m)
	case *mail:
		p.onMail(m)
	case *exchangeLock:
		p.onExchangeLock(m)
	case *exchangeRelease:
		p.onExchangeRelease(m)
	case *exchangeExpired:
		p.onExchangeExpired(m)
	case *gameEnded:
		if !p.exchange.lockedBy.IsZero() && p.exchange.lockedBy.Node == m.Node && p.exchange.lockedInc <= m.Incarnation {
			ctx, cancel := context.WithTimeout(context.Background(), p.svc.cfg.SaveTimeout)
			if err := p.settleLock(ctx, "the initiator's node left"); err != nil {
				p.logger().Error("cannot settle the exchange of a node that left; its lock expires", "err", err)
			}
			cancel()
		}
	case *leaseLost:
		p.fence("this node lost its lease")
	case *releaseRequest:
		p.onReleaseRequest(m)
	case *moveReq:
		p.startMove(m.target)
	case *services.Held:
		p.onHeld(m)
	case *moveExpired:
		if p.move.target != "" && m.gen == p.move.gen {
			p.logger().Warn("the gate did not answer a handoff; keeping the player", "target", p.move.target)
			p.move.target = ""
		}
	case *gateEnded:
		if p.attached && p.session.Gate.Node == m.Node && p.session.Incarnation < m.Incarnation {
			p.logger().Info("the gate of this player's session restarted; waiting for a reconnect", "gate", m.Node)
			p.detach()
		}
	case *services.Detach:
		if p.attached && m.SessionID == p.session.ID && m.Incarnation == p.session.Incarnation {
			p.detach()
		}
	case *saveTick:
		p.onSaveTick()
	case *graceOver:
		if !p.exchange.lockedBy.IsZero() { // retire after the exchange ends
			c.SendAfter(time.Second, m)
			return
		}
		if m.gen == p.gen && !p.attached {
			ctx, cancel := context.WithTimeout(context.Background(), p.svc.cfg.SaveTimeout)
			err := p.handoff(ctx)
			cancel()
			if err != nil {
				p.logger().Error("save at end of grace failed; staying online to retry", "err", err)
				c.SendAfter(p.svc.cfg.Grace, &graceOver{gen: p.gen})
				return
			}
			c.Send(c.Node().ActorAddr(services.GameActorManager), &retire{id: p.ID, gen: p.gen})
		}
	case framework.Stopped:
		p.stopped()
	default:
		p.onTimer(m)
	}
}

// stopped saves the player as its actor stops.
func (p *Player[S]) stopped() {
	if p.State == nil {
		return
	}
	if p.attached {
		p.svc.players.WithLabelValues("attached").Dec()
	} else {
		p.svc.players.WithLabelValues("grace").Dec()
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.svc.cfg.SaveTimeout)
	defer cancel()
	if err := p.flush(ctx); err != nil {
		p.logger().Error("save on stop failed: changes since the last commit are lost", "err", err)
	}
	if p.attached && p.save.owned && p.svc.alone() {
		// Nobody can take the player: say why, rather than leave the
		// client waiting for a node that may not come back. (With
		// another game node, its gate attaches the session there.)
		p.ctx.SendTo(p.session.Gate, p.session.Incarnation, &services.Kick{SessionID: p.session.ID, Code: services.KickShutdown,
			Reason: "the game server is stopping and no other one takes players now; log in again shortly"})
	}
}

// onReleaseRequest lets the player go because another node must serve it:
// the player logged in again and the gates route it there now (a node
// joined or came back). A session still attached here is told it logged
// in elsewhere; the state is saved and released in one transaction, and
// the actor retires. A player in an exchange finishes it first (the
// asking node keeps asking while its wait lasts).
func (p *Player[S]) onReleaseRequest(m *releaseRequest) {
	if p.State == nil || !p.save.owned || !p.exchange.lockedBy.IsZero() {
		return
	}
	p.logger().Info("another node asked for this player; handing it off")
	if p.attached && p.session == m.Session {
		// The same session, attached again elsewhere (its gate gave up on
		// a handoff, or thought this node gone): not a second login.
		p.detach()
	} else if p.attached {
		p.ctx.SendTo(p.session.Gate, p.session.Incarnation, &services.Kick{SessionID: p.session.ID, Code: services.KickElsewhere,
			Reason: "the same account logged in on another server"})
		p.detach()
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.svc.cfg.SaveTimeout)
	err := p.handoff(ctx)
	cancel()
	if err != nil {
		p.logger().Error("handoff failed; keeping the player", "err", err)
		return
	}
	p.ctx.Send(p.ctx.Node().ActorAddr(services.GameActorManager), &retire{id: p.ID, gen: p.gen})
}

// fence stops the player at once because the store says another node owns
// it now (or this node lost its lease): nothing more is saved from here
// (the other node's copy wins), the client is told to log in again, and
// the actor retires.
func (p *Player[S]) fence(why string) {
	if !p.save.owned {
		return
	}
	p.save.owned = false
	p.svc.fenced.Inc()
	p.logger().Error("player fenced: stopping without saving", "why", why)
	if p.attached {
		p.ctx.SendTo(p.session.Gate, p.session.Incarnation, &services.Kick{SessionID: p.session.ID, Code: services.KickUnavailable,
			Reason: "your player is now served by another server; log in again"})
		p.detach()
	}
	p.ctx.Send(p.ctx.Node().ActorAddr(services.GameActorManager), &retire{id: p.ID, gen: p.gen})
}

// detach forgets the session: the player waits out its grace period for a
// reconnect, then saves and stops.
func (p *Player[S]) detach() {
	p.attached = false
	p.svc.players.WithLabelValues("attached").Dec()
	p.svc.players.WithLabelValues("grace").Inc()
	p.detached()
}

// detached starts the grace period of a player with no session.
func (p *Player[S]) detached() {
	if _, err := p.ctx.SendAfter(p.svc.cfg.Grace, &graceOver{gen: p.gen}); err != nil {
		p.logger().Error("cannot start grace timer", "err", err)
	}
}

func (p *Player[S]) start() {
	if p.first == nil {
		p.activate() // started for a message, not a session
		return
	}
	st, rec, err := p.svc.acquire(p.ID)
	if err != nil {
		// A damaged record must not be replaced by a fresh player: refuse
		// the login and leave the record for an operator. A player another
		// node still serves is refused until that node lets it go.
		code, level := services.ErrCodeInternal, slog.LevelError
		switch {
		case errors.Is(err, store.ErrCorrupt):
			code = "corrupt_record"
		case errors.Is(err, store.ErrOwned), errors.Is(err, store.ErrFenced):
			code, level = services.ErrCodeUnavailable, slog.LevelWarn
		}
		p.logger().Log(context.Background(), level, "cannot take the player; refusing the login", "err", err)
		p.first.resp.Error(framework.NewError(code, fmt.Sprintf("player %d cannot be served here now: %v", p.ID, err)))
		p.ctx.Send(p.ctx.Node().ActorAddr(services.GameActorManager), &retire{id: p.ID, gen: p.first.gen})
		return
	}
	p.loaded(st, rec)
	p.svc.players.WithLabelValues("grace").Inc() // attach moves it to attached
	p.attach(p.first)
	p.first = nil
}

// loaded takes the player's state once this node owns the player, and
// runs Config.OnActivate.
func (p *Player[S]) loaded(st *S, rec store.Record) {
	p.State = st
	p.save.version, p.save.epoch, p.save.owned = rec.Version, rec.Epoch, true
	p.scheduleSaves()
	if p.svc.cfg.OnActivate != nil {
		p.svc.cfg.OnActivate(p)
	}
}

func (p *Player[S]) attach(m *attachReq) {
	if p.State == nil || !p.save.owned {
		m.resp.Error(framework.NewError(services.ErrCodeUnavailable, "player is being retired; retry"))
		return
	}
	resumed := p.attaches > 0
	if p.attached && p.session != m.session {
		// A second login: the first session is told why it closes.
		p.ctx.SendTo(p.session.Gate, p.session.Incarnation, &services.Kick{SessionID: p.session.ID, Code: services.KickElsewhere,
			Reason: "the same account logged in from another session"})
	}
	if !p.attached {
		p.svc.players.WithLabelValues("grace").Dec()
		p.svc.players.WithLabelValues("attached").Inc()
	}
	p.attached, p.session, p.gen = true, m.session, m.gen
	p.attaches++
	p.svc.attaches.WithLabelValues(strconv.FormatBool(resumed)).Inc()
	m.resp.Reply(&services.Attached{Actor: p.ctx.Self(), Resumed: resumed})
	if m.moved && !resumed {
		// Handed off with its session open: the client saw nothing, its
		// groups live on the gate, the state is the one just released.
		p.svc.handoffs.WithLabelValues("in").Inc()
		return
	}
	if p.svc.cfg.OnAttach != nil {
		p.svc.cfg.OnAttach(p)
	}
}

// startMove begins handing the player off to another game node with its
// session open: the gate is asked to hold the session's requests; its
// Held (after every request already forwarded) lets the actor save and
// release the player and tell the gate where to attach the session.
func (p *Player[S]) startMove(target string) {
	if p.State == nil || !p.save.owned || p.move.target != "" || !p.exchange.lockedBy.IsZero() {
		return // gone, moving already, or in an exchange (the next pass retries)
	}
	self := p.svc.cfg.Node.Addr().Node
	if target == "" {
		m, ok := p.svc.cfg.Node.Members().Pick(services.Game, strconv.FormatUint(p.ID, 10))
		if !ok || m.Node == self {
			return // nowhere to go
		}
		target = m.Node
	}
	if !p.attached {
		// In its grace period: nothing to move but the state.
		ctx, cancel := context.WithTimeout(context.Background(), p.svc.cfg.SaveTimeout)
		err := p.handoff(ctx)
		cancel()
		if err == nil {
			p.ctx.Send(p.ctx.Node().ActorAddr(services.GameActorManager), &retire{id: p.ID, gen: p.gen})
		}
		return
	}
	p.move.gen++
	p.move.target = target
	if err := p.ctx.SendTo(p.session.Gate, p.session.Incarnation, &services.Hold{SessionID: p.session.ID}); err != nil {
		p.move.target = ""
		return
	}
	p.ctx.SendAfter(p.svc.cfg.HandoffTimeout, &moveExpired{gen: p.move.gen})
}

// onHeld hands the player off: the gate holds its requests and every
// earlier one has been handled.
func (p *Player[S]) onHeld(m *services.Held) {
	if p.move.target == "" || !p.attached || m.SessionID != p.session.ID {
		return
	}
	target := p.move.target
	p.move.target = ""
	ctx, cancel := context.WithTimeout(context.Background(), p.svc.cfg.SaveTimeout)
	err := p.handoff(ctx)
	cancel()
	if err != nil {
		p.logger().Error("handoff failed; keeping the player", "err", err)
		p.svc.handoffs.WithLabelValues("failed").Inc()
		p.ctx.SendTo(p.session.Gate, p.session.Incarnation, &services.Handed{SessionID: p.session.ID, Aborted: true})
		return
	}
	if !p.attached { // fenced meanwhile: fence() closed the session
		return
	}
	p.ctx.SendTo(p.session.Gate, p.session.Incarnation, &services.Handed{SessionID: p.session.ID, Target: target})
	p.svc.handoffs.WithLabelValues("out").Inc()
	p.attached = false
	p.svc.players.WithLabelValues("attached").Dec()
	p.svc.players.WithLabelValues("grace").Inc()
	p.ctx.Send(p.ctx.Node().ActorAddr(services.GameActorManager), &retire{id: p.ID, gen: p.gen})
}

func (p *Player[S]) request(m *services.ClientRequest) {
	if !p.attached || m.SessionID != p.session.ID {
		return // from a session that has since been replaced
	}
	if !p.svc.cfg.Lease.Valid() {
		// The lease may have run out: another node may serve the player
		// now. Act on nothing a client would take as done.
		p.replyError(m.Seq, framework.NewError(services.ErrCodeUnavailable, "this server cannot confirm it still serves your player; retry"))
		return
	}
	h, ok := p.svc.cfg.Router.handlers[m.MsgID]
	if !ok {
		p.svc.requests.WithLabelValues(strconv.Itoa(int(m.MsgID)), "no_handler").Inc()
		p.replyError(m.Seq, framework.NewError(services.ErrCodeNoHandler, fmt.Sprintf("no handler for message %d", m.MsgID)))
		return
	}
	resp, err := p.invoke(h, m.Payload)
	switch {
	case err != nil:
		p.svc.requests.WithLabelValues(h.name, "error").Inc()
		p.replyError(m.Seq, err)
	case resp != nil:
		p.svc.requests.WithLabelValues(h.name, "ok").Inc()
		if err := p.toClient(m.Seq, resp); err != nil {
			p.logger().Error("reply failed", "msg", h.name, "err", err)
		}
	default:
		p.svc.requests.WithLabelValues(h.name, "ok").Inc()
	}
}

// invoke runs a handler, turning a panic into an internal error so the
// client gets an answer and the actor carries on.
func (p *Player[S]) invoke(h handler[S], payload []byte) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			p.svc.requests.WithLabelValues(h.name, "panic").Inc()
			p.logger().Error("handler panicked", "msg", h.name, "panic", fmt.Sprint(r))
			resp, err = nil, errors.New("handler panicked")
		}
	}()
	return h.call(p, payload)
}

func (p *Player[S]) replyError(seq uint32, err error) {
	var re *framework.RemoteError
	if !errors.As(err, &re) {
		p.logger().Error("handler failed", "err", err)
		re = framework.NewError(services.ErrCodeInternal, "internal error")
	}
	if seq == 0 {
		return
	}
	if e := p.toClient(seq, &services.Error{Code: re.Code, Message: re.Message}); e != nil && !errors.Is(e, ErrDetached) {
		p.logger().Error("error reply failed", "err", e)
	}
}

// managed is the manager's record of a player actor.
type managed struct {
	addr framework.Addr
	gen  uint64
}

// manager creates player actors on Attach and stops them on retire, one
// message at a time, so a player is never both stopping and being attached.
type manager[S any] struct {
	svc     *Service[S]
	players map[uint64]*managed
}

func (m *manager[S]) Receive(c *framework.Context) {
	switch msg := c.Message().(type) {
	case *services.Attach:
		r, err := c.Responder()
		if err != nil {
			return
		}
		if e, ok := m.players[msg.PlayerID]; ok {
			e.gen++
			if err := c.Send(e.addr, &attachReq{session: msg.Session, resp: r, gen: e.gen, moved: msg.Moved}); err != nil {
				r.Error(err)
			}
			return
		}
		if m.svc.draining.Load() && len(c.Node().Members().Alive(services.Game)) > 0 {
			r.Error(framework.NewError(services.ErrCodeDraining, "this game node is draining; attach to another"))
			return
		}
		first := &attachReq{session: msg.Session, resp: r, gen: 1, moved: msg.Moved}
		id := msg.PlayerID
		addr, err := c.Node().Spawn(playerActorName(id), func() framework.Actor {
			return &Player[S]{ID: id, svc: m.svc, first: first}
		}, framework.SpawnOptions{Kind: "player", MailboxSize: m.svc.cfg.MailboxSize})
		if err != nil {
			r.Error(err)
			return
		}
		m.players[id] = &managed{addr: addr, gen: 1}
	case *gateEnded, *gameEnded, *leaseLost:
		for _, e := range m.players {
			c.Send(e.addr, msg)
		}
	case *moveReq:
		if e, ok := m.players[msg.id]; ok {
			c.Send(e.addr, msg)
		}
	case *services.ToPlayer:
		m.onMail(c, msg)
	case *listPlayers:
		ids := make([]uint64, 0, len(m.players))
		for id := range m.players {
			ids = append(ids, id)
		}
		c.Reply(&playerList{ids: ids})
	case *releaseRequest:
		if e, ok := m.players[msg.PlayerID]; ok {
			c.Send(e.addr, msg)
			return
		}
		m.svc.releaseOrphan(msg.PlayerID, msg.Incarnation)
	case *retire:
		e, ok := m.players[msg.id]
		if !ok || e.gen != msg.gen {
			return // re-attached since it asked
		}
		ctx, cancel := context.WithTimeout(context.Background(), m.svc.cfg.SaveTimeout)
		defer cancel()
		if err := c.Node().StopActor(ctx, e.addr); err != nil && !errors.Is(err, framework.ErrActorNotFound) {
			m.svc.log.Error("player actor did not stop", "player", msg.id, "err", err)
		}
		delete(m.players, msg.id)
	}
}
