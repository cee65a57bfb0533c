package game

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/services"
	"github.com/prometheus/client_golang/prometheus"
)

// Messages from other actors and from a player's own timers.
//
// Any actor reaches player N by ID with SendToPlayer or CallPlayer: the
// message goes to the game node the ring picks for N, which delivers it to
// N's actor there, passes it once to the node that owns N now (a player
// that moved, or logged in before the ring changed), or, if N is online
// nowhere, starts N's actor (loading N from the store, as a login does).
// A player started that way has no session: it stays for the grace
// period, then saves and stops, like a player whose client left. Its
// handlers run in the player's mailbox order with its client requests,
// and wait, like them, while the player is in an exchange.

// NoReply is the reply type of a message handler that answers nothing
// (its messages are sent, not called).
type NoReply struct{}

// mailHandler runs a handler for a message from an actor or a timer.
type mailHandler[S any] struct {
	name string
	call func(p *Player[S], msg any) (any, error)
}

// HandleMessage registers fn for messages of type *M that reach the player
// from other actors (SendToPlayer, CallPlayer, or a send to the actor's
// address) or from its own timers (Player.SendAfter, Player.Every). It is
// the same typed handler as Handle's: fn runs on the player's actor with
// its state, and its reply (or error) answers a CallPlayer; a sent message
// gets no answer, and an error is logged. Use NoReply as R for a handler
// that answers nothing. *M, and *R unless NoReply, must be registered in
// the router's registry, on every game node.
func HandleMessage[S, M, R any](r *Router[S], fn func(p *Player[S], m *M) (*R, error)) error {
	t := reflect.TypeFor[*M]()
	if _, err := r.reg.ID((*M)(nil)); err != nil {
		return fmt.Errorf("game: message handler for %v: %w", t, err)
	}
	if reflect.TypeFor[R]() != reflect.TypeFor[NoReply]() {
		if _, err := r.reg.ID((*R)(nil)); err != nil {
			return fmt.Errorf("game: message handler for %v replies with %v: %w", t, reflect.TypeFor[*R](), err)
		}
	}
	if _, dup := r.mail[t]; dup {
		return fmt.Errorf("game: a message handler for %v is already registered", t)
	}
	r.mail[t] = mailHandler[S]{
		name: reflect.TypeFor[M]().Name(),
		call: func(p *Player[S], msg any) (any, error) {
			resp, err := fn(p, msg.(*M))
			if err != nil || resp == nil {
				return nil, err
			}
			return resp, nil
		},
	}
	return nil
}

// MustHandleMessage is HandleMessage for start-up wiring, where a mistake
// is a bug.
func MustHandleMessage[S, M, R any](r *Router[S], fn func(p *Player[S], m *M) (*R, error)) {
	if err := HandleMessage(r, fn); err != nil {
		panic(err)
	}
}

// SendToPlayer delivers msg to player id's actor, wherever the player is
// online, starting it if the player is online nowhere (see HandleMessage).
// msg must be registered in n's registry and in the game nodes'. It
// returns once the message is on its way; a message the player cannot
// take (no handler, the player cannot be loaded) is logged on the game
// node and counted in citadel_game_mail_total.
func SendToPlayer(n *framework.Node, id uint64, msg any) error {
	to, tp, err := toPlayer(n, id, msg)
	if err != nil {
		return err
	}
	return n.Send(to, tp)
}

// CallPlayer is SendToPlayer that waits for the handler's reply (or its
// error, a *framework.RemoteError with the code) until ctx ends.
func CallPlayer(ctx context.Context, n *framework.Node, id uint64, msg any) (any, error) {
	to, tp, err := toPlayer(n, id, msg)
	if err != nil {
		return nil, err
	}
	return n.Call(ctx, to, tp)
}

func toPlayer(n *framework.Node, id uint64, msg any) (framework.Addr, *services.ToPlayer, error) {
	m, ok := n.Members().Pick(services.Game, strconv.FormatUint(id, 10))
	if !ok {
		return framework.Addr{}, nil, fmt.Errorf("game: no game node is up to take a message for player %d: %w", id, framework.ErrNodeUnknown)
	}
	if _, err := n.Registry().ID((*services.ToPlayer)(nil)); err != nil {
		// A node that is not a game node (a login, a tool) sends too.
		if err := services.RegisterInternal(n.Registry()); err != nil {
			return framework.Addr{}, nil, err
		}
	}
	msgID, payload, err := n.Registry().Marshal(msg)
	if err != nil {
		return framework.Addr{}, nil, fmt.Errorf("game: message for player %d: %w", id, err)
	}
	to := framework.Addr{Service: services.Game, Node: m.Node, Actor: services.GameActorManager}
	return to, &services.ToPlayer{PlayerID: id, MsgID: msgID, Payload: payload}, nil
}

// mail is a ToPlayer on its way to the player's actor, with the
// responder of a CallPlayer (nil for a send).
type mail struct {
	msg  *services.ToPlayer
	resp *framework.Responder
	gen  uint64 // the manager's generation of the actor: a retire asked for before this mail is ignored
}

// answer replies to a call (nothing for a send), and counts the result in
// results (citadel_game_mail_total).
func (m *mail) answer(results *prometheus.CounterVec, reply any, err error) {
	if err != nil {
		results.WithLabelValues("error").Inc()
		if m.resp != nil {
			m.resp.Error(err)
		}
		return
	}
	results.WithLabelValues("ok").Inc()
	if m.resp != nil {
		if reply == nil {
			reply = &services.Delivered{}
		}
		m.resp.Reply(reply)
	}
}

// mailForwardTimeout bounds a call passed on to the player's owner.
const mailForwardTimeout = 10 * time.Second

// forward passes mail on to the manager of the node that owns the player,
// once: a message passed on already is refused (the player is moving;
// the sender retries).
func (s *Service[S]) forward(m *mail, owner store.Owner) {
	if m.msg.Hops > 0 || owner.Node == s.cfg.Node.Addr().Node {
		m.answer(s.mail, nil, framework.NewError(services.ErrCodeUnavailable, fmt.Sprintf("player %d is moving between game nodes; retry", m.msg.PlayerID)))
		return
	}
	fwd := *m.msg
	fwd.Hops++
	to := framework.Addr{Service: services.Game, Node: owner.Node, Actor: services.GameActorManager}
	s.mail.WithLabelValues("forwarded").Inc()
	if m.resp == nil {
		if err := s.cfg.Node.SendTo(to, owner.Incarnation, &fwd); err != nil {
			s.log.Warn("cannot pass a player's message on to its node", "player", fwd.PlayerID, "node", owner.Node, "err", err)
		}
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), mailForwardTimeout)
		defer cancel()
		reply, err := s.cfg.Node.Call(ctx, to, &fwd)
		if err != nil {
			m.resp.Error(err)
			return
		}
		m.resp.Reply(reply)
	}()
}

// onMail handles a message for the player from another actor. A player
// with no session stays for a grace period after its last message.
func (p *Player[S]) onMail(m *mail) {
	p.gen = max(p.gen, m.gen)
	switch {
	case p.elsewhere.Node != "":
		p.svc.forward(m, p.elsewhere)
		p.retire()
		return
	case p.State == nil || !p.save.owned:
		// Handed off, fenced or failed to load: tell the sender to retry,
		// by when the player's new owner serves it.
		m.answer(p.svc.mail, nil, framework.NewError(services.ErrCodeUnavailable, fmt.Sprintf("player %d is moving or cannot be served here now; retry", p.ID)))
		p.retire()
		return
	case !p.exchange.lockedBy.IsZero():
		p.stash(m, len(m.msg.Payload), func() {
			m.answer(p.svc.mail, nil, framework.NewError(CodePeerBusy, "the player is in an exchange; retry"))
		})
		return
	}
	if !p.attached {
		p.detached() // a new grace period from this message
	}
	msg, err := p.svc.cfg.Node.Registry().Unmarshal(m.msg.MsgID, m.msg.Payload)
	if err != nil {
		m.answer(p.svc.mail, nil, framework.NewError(CodeBadRequest, err.Error()))
		return
	}
	h, ok := p.svc.cfg.Router.mail[reflect.TypeOf(msg)]
	if !ok {
		m.answer(p.svc.mail, nil, framework.NewError(services.ErrCodeNoHandler, fmt.Sprintf("no player handler for %T", msg)))
		return
	}
	reply, err := p.deliver(h, msg)
	m.answer(p.svc.mail, reply, err)
}

// retire asks the manager to stop this actor (ignored if the manager gave
// it a session or a message since).
func (p *Player[S]) retire() {
	p.ctx.Send(p.ctx.Node().ActorAddr(services.GameActorManager), &retire{id: p.ID, gen: p.gen})
}

// deliver runs h for a message from an actor or a timer.
func (p *Player[S]) deliver(h mailHandler[S], msg any) (reply any, err error) {
	if !p.svc.cfg.Lease.Valid() {
		return nil, framework.NewError(services.ErrCodeUnavailable, "this server cannot confirm it still serves the player; retry")
	}
	defer func() {
		if r := recover(); r != nil {
			p.svc.requests.WithLabelValues(h.name, "panic").Inc()
			p.logger().Error("message handler panicked", "msg", h.name, "panic", fmt.Sprint(r))
			reply, err = nil, errors.New("handler panicked")
		}
	}()
	reply, err = h.call(p, msg)
	var re *framework.RemoteError
	if err != nil && !errors.As(err, &re) {
		p.logger().Error("message handler failed", "msg", h.name, "err", err)
		err = framework.NewError(services.ErrCodeInternal, "internal error")
	}
	return reply, err
}

// onTimer handles a message from one of the player's own timers (or sent
// straight to the actor's address). One with no handler is ignored: a
// timer cannot be armed for it.
func (p *Player[S]) onTimer(msg any) {
	h, ok := p.svc.cfg.Router.mail[reflect.TypeOf(msg)]
	if !ok || p.State == nil || !p.save.owned {
		return
	}
	if !p.exchange.lockedBy.IsZero() {
		p.stash(msg, 0, func() {
			p.logger().Warn("timer message dropped: the player is in an exchange and holds too many waiting messages", "msg", fmt.Sprintf("%T", msg))
		})
		return
	}
	if _, err := p.deliver(h, msg); err != nil {
		p.logger().Warn("timer message handler failed", "msg", fmt.Sprintf("%T", msg), "err", err)
	}
}

// SendAfter delivers msg to this player's handler for its type
// (HandleMessage) once, after d. A player's timers live with its actor:
// they stop when the player leaves this node (it stops, or moves to
// another game node with its session open), so arm the ones a player
// always needs in Config.OnActivate, which runs wherever the player's
// actor starts.
func (p *Player[S]) SendAfter(d time.Duration, msg any) (*framework.Timer, error) {
	if err := p.canHandle(msg); err != nil {
		return nil, err
	}
	return p.ctx.SendAfter(d, msg)
}

// Every delivers msg to this player's handler for its type every d, until
// the timer is stopped or the actor stops (see SendAfter).
func (p *Player[S]) Every(d time.Duration, msg any) (*framework.Timer, error) {
	if err := p.canHandle(msg); err != nil {
		return nil, err
	}
	return p.ctx.Every(d, msg)
}

func (p *Player[S]) canHandle(msg any) error {
	if _, ok := p.svc.cfg.Router.mail[reflect.TypeOf(msg)]; !ok {
		return fmt.Errorf("game: player timer message %T has no handler: register one with game.HandleMessage", msg)
	}
	return nil
}

// activate loads a player for a message when it is online nowhere: it
// takes the player only if nobody owns it; if another node does, the
// messages go there.
func (p *Player[S]) activate() {
	ctx, cancel := context.WithTimeout(context.Background(), p.svc.cfg.SaveTimeout)
	rec, err := p.svc.cfg.Store.Acquire(ctx, p.ID, p.svc.cfg.Lease.Owner())
	cancel()
	var owned *store.OwnedError
	switch {
	case errors.As(err, &owned):
		p.elsewhere = owned.Owner
	case err == nil:
		st, rec, err := p.svc.decode(p.ID, rec)
		if err == nil {
			p.loaded(st, rec)
			p.svc.players.WithLabelValues("grace").Inc() // its grace starts with its message
			return
		}
		p.logger().Error("cannot load the player for a message", "err", err)
	default:
		p.logger().Error("cannot load the player for a message", "err", err)
	}
	p.retire()
}

// onMail delivers a message for a player to its actor here, passes it on
// to the node that owns the player, or starts the player's actor for it.
func (m *manager[S]) onMail(c *framework.Context, msg *services.ToPlayer) {
	ml := &mail{msg: msg}
	if c.IsRequest() {
		r, err := c.Responder()
		if err != nil {
			return
		}
		ml.resp = r
	}
	if e, ok := m.players[msg.PlayerID]; ok {
		e.gen++
		ml.gen = e.gen
		if err := c.Send(e.addr, ml); err != nil {
			ml.answer(m.svc.mail, nil, err)
		}
		return
	}
	svc := m.svc
	if svc.draining.Load() && msg.Hops == 0 {
		// New players go elsewhere: so do players started for a message.
		if o, ok := c.Node().Members().Pick(services.Game, strconv.FormatUint(msg.PlayerID, 10)); ok && o.Node != c.Node().Addr().Node {
			svc.forward(ml, store.Owner{Node: o.Node, Incarnation: o.Epoch})
			return
		}
	}
	id := msg.PlayerID
	addr, err := c.Node().Spawn(playerActorName(id), func() framework.Actor {
		return &Player[S]{ID: id, svc: svc, gen: 1}
	}, framework.SpawnOptions{Kind: "player", MailboxSize: svc.cfg.MailboxSize})
	if err != nil {
		ml.answer(svc.mail, nil, err)
		return
	}
	svc.mail.WithLabelValues("activated").Inc()
	m.players[id] = &managed{addr: addr, gen: 1}
	ml.gen = 1
	if err := c.Send(addr, ml); err != nil {
		ml.answer(svc.mail, nil, err)
	}
}
