package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/citadel-go/citadel/client"
	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/services"
)

// The ledger is the players' side of the story: N players over the Go SDK
// that move (each acknowledged Move carries the player's move counter, so
// every acknowledged state has a number), trade in pairs, log out and in
// again now and then, and log in again whenever they lose their session.
// Every state the server acknowledged is recorded with its time, as a tree:
// a Move's state is a child of the state it was applied to. When the
// server later shows a player an older state (a new session's PlayerInfo,
// or the store at the end), the acknowledged states between that one and
// the player's newest are lost; a state from a branch lost earlier coming
// back means an older copy of the player was serving it.

// Player pacing and client timeouts.
const (
	movePace     = 50 * time.Millisecond // pause between a player's operations
	callTimeout  = 5 * time.Second       // a Move; a player that waits longer logs in again
	tradeTimeout = 6 * time.Second       // a trade: the game answers within its 5s ExchangeTimeout
	loginTimeout = 10 * time.Second      // login HTTP plus gate connect and attach
	infoTimeout  = 5 * time.Second       // from AuthOK to the PlayerInfo push
	tradeEvery   = time.Second           // mean pause between a pair's trade offers
)

// state is a player state the server acknowledged.
type state struct {
	moves  int64
	x, y   int32
	parent *state
	ack    time.Time
	// unacked: a Move sent whose answer never came, and which the next
	// session did not show applied; a copy that applied it later may
	// still show it.
	unacked bool
}

// lossEvent is an observation of an older state than the player's newest:
// the acknowledged states in lost were undone.
type lossEvent struct {
	at          time.Time
	source      string   // "login" (a new session's PlayerInfo) or "store" (after the scenario)
	lost        []*state // newest first
	resurrected bool     // the state shown had itself been lost before: an older copy served it
	unknown     bool     // the state shown is none the player ever reached
}

// player is one simulated player and everything it saw.
type player struct {
	l         *ledger
	name      string
	id        uint64
	partner   *player
	initiator bool                       // this side of the pair offers, the other accepts
	offers    chan services.TradeOffered // offers from the partner, to accept

	mu       sync.Mutex
	root     *state
	cur      *state
	byMoves  map[int64][]*state
	pending  *state // a Move sent whose outcome is unknown (its parent is cur)
	items    map[string]int32
	first    map[string]int32 // inventory at the first login: what the player started with
	acks     []time.Time      // every acknowledged operation
	waits    []wait           // how long each acknowledged move took
	failures []failure        // every involuntary loss of the session or a call
	losses   []lossEvent
	disorder []string // acknowledgements that broke the counter's order
	nMoves   int
	nTrades  int
}

// wait is one acknowledged move's round trip, as the player saw it.
type wait struct {
	at time.Time
	d  time.Duration
}

// failure is a call or session the player lost without asking to.
type failure struct {
	at    time.Time
	cause string
}

// ledger runs the players of one scenario.
type ledger struct {
	loginURL string
	reg      *framework.Registry
	players  []*player
	churn    time.Duration // mean time between a player's voluntary re-logins
}

func newLedger(loginURL string, n int, churn time.Duration) (*ledger, error) {
	reg := framework.NewRegistry()
	if err := services.RegisterClient(reg); err != nil {
		return nil, err
	}
	if err := services.RegisterSample(reg); err != nil {
		return nil, err
	}
	l := &ledger{loginURL: loginURL, reg: reg, churn: churn}
	for i := 0; i < n; i++ {
		l.players = append(l.players, &player{l: l, name: fmt.Sprintf("chaos%03d", i),
			byMoves: map[int64][]*state{}, offers: make(chan services.TradeOffered, 1)})
	}
	for i := 0; i+1 < n; i += 2 {
		a, b := l.players[i], l.players[i+1]
		a.partner, b.partner, a.initiator = b, a, true
	}
	return l, nil
}

// register creates every player's account and logs each in once, so that
// the run starts with every ID known and every first state recorded.
func (l *ledger) register(ctx context.Context) error {
	return parallel(len(l.players), func(i int) error {
		p := l.players[i]
		deadline := time.Now().Add(startTimeout)
		for {
			rctx, cancel := context.WithTimeout(ctx, loginTimeout)
			lr, err := client.Register(rctx, l.loginURL, p.name, "pw-"+p.name)
			cancel()
			var le *client.LoginError
			if errors.As(err, &le) && le.Code == services.LoginCodeNameTaken {
				return fmt.Errorf("register %s: the name is taken: the schema is not fresh", p.name)
			}
			if err == nil {
				p.id = lr.PlayerID
				return nil
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("register %s: %w", p.name, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// run plays every player until ctx ends, then closes their sessions.
func (l *ledger) run(ctx context.Context) *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, p := range l.players {
		wg.Add(1)
		go func() { defer wg.Done(); p.play(ctx) }()
	}
	return &wg
}

// session is one connection of a player.
type session struct {
	c *client.Conn
}

// pushBuffer holds the pushes (mostly other players' moves) that arrive
// while a call waits, for drain.
const pushBuffer = 8192

func (p *player) play(ctx context.Context) {
	var s *session
	defer func() {
		if s != nil {
			s.c.Close()
		}
	}()
	churnAt := p.nextChurn()
	nextOffer := time.Now().Add(randDur(tradeEvery))
	for ctx.Err() == nil {
		if s == nil {
			s = p.connect(ctx)
			continue
		}
		now := time.Now()
		var ok bool
		switch {
		case now.After(churnAt):
			// Log out and straight back in, as players do.
			s.c.Close()
			s, ok, churnAt = nil, true, p.nextChurn()
		case p.initiator && now.After(nextOffer):
			ok = p.offer(ctx, s)
			nextOffer = now.Add(randDur(tradeEvery))
		default:
			select {
			case o := <-p.offers:
				ok = p.accept(ctx, s, o)
			default:
				ok = p.move(ctx, s)
			}
		}
		if !ok {
			s.c.Close()
			s = nil
			continue
		}
		select {
		case <-time.After(movePace):
		case <-ctx.Done():
		}
	}
}

func (p *player) nextChurn() time.Time {
	return time.Now().Add(p.l.churn/2 + randDur(p.l.churn))
}

// randDur is uniform in [0, 2*mean).
func randDur(mean time.Duration) time.Duration {
	return time.Duration(rand.Int64N(int64(2 * mean)))
}

// connect logs in and attaches, retrying until it works or ctx ends; the
// PlayerInfo the new session starts with is an observation of the
// player's state.
func (p *player) connect(ctx context.Context) *session {
	for backoff := 250 * time.Millisecond; ctx.Err() == nil; backoff = min(2*backoff, 2*time.Second) {
		s, err := p.dial(ctx)
		if err == nil {
			return s
		}
		if ctx.Err() != nil {
			return nil
		}
		p.fail(failureCause("login", err))
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
	}
	return nil
}

func (p *player) dial(ctx context.Context) (*session, error) {
	lctx, cancel := context.WithTimeout(ctx, loginTimeout)
	defer cancel()
	lr, err := client.Login(lctx, p.l.loginURL, p.name, "pw-"+p.name)
	if err != nil {
		return nil, err
	}
	c, err := client.Connect(lctx, lr, client.Options{Registry: p.l.reg, DialTimeout: loginTimeout, PushBuffer: pushBuffer})
	if err != nil {
		return nil, err
	}
	s := &session{c: c}
	timeout := time.NewTimer(infoTimeout)
	defer timeout.Stop()
	for {
		select {
		case m := <-c.Pushes():
			if p.push(m, "login") {
				return s, nil
			}
		case <-c.Done():
			return nil, c.Err()
		case <-timeout.C:
			c.Close()
			return nil, errors.New("no PlayerInfo after AuthOK")
		case <-ctx.Done():
			c.Close()
			return nil, ctx.Err()
		}
	}
}

// drain handles the pushes that arrived, in order. The player's own
// goroutine calls it after every call: the client SDK queues a push before
// it delivers a reply that came after it, so a PlayerInfo pushed on an
// open session (the session was moved to another copy of the player) is
// seen before any answer that copy gave.
func (p *player) drain(s *session) {
	for {
		select {
		case m := <-s.c.Pushes():
			p.push(m, "session")
		default:
			return
		}
	}
}

// push handles one push; it reports whether it was a PlayerInfo, which is
// an observation of the player's state (a new session's, or one moved to
// another copy of the player).
func (p *player) push(m any, source string) bool {
	switch m := m.(type) {
	case *services.PlayerInfo:
		p.observe(m.Moves, m.X, m.Y, source, m.Items, time.Now())
		return true
	case *services.TradeDone:
		p.mu.Lock()
		p.items = m.Items
		p.mu.Unlock()
	}
	return false
}

// move walks one step; false means the session is lost or out of step
// and the player must log in again.
func (p *player) move(ctx context.Context, s *session) bool {
	next := p.begin()
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	sent := time.Now()
	r, err := s.c.Call(cctx, &services.Move{X: next.x, Y: next.y})
	took := time.Since(sent)
	cancel()
	p.drain(s)
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		var se *client.ServerError
		if errors.As(err, &se) {
			// Refused, so not applied; a refused step means the server's
			// position differs from the acknowledged one: look again.
			p.mu.Lock()
			p.pending = nil
			p.mu.Unlock()
		}
		p.fail(failureCause("move", err))
		return false
	}
	now := time.Now()
	if !p.acknowledged(next, r, now) {
		return false
	}
	p.mu.Lock()
	p.waits = append(p.waits, wait{now, took})
	p.mu.Unlock()
	return true
}

// begin records a step about to be sent: the state it leads to, pending
// until its answer comes.
func (p *player) begin() *state {
	p.mu.Lock()
	defer p.mu.Unlock()
	next := &state{moves: p.cur.moves + 1, x: walkTo(p.cur.x), y: walkTo(p.cur.y), parent: p.cur}
	p.pending = next
	return next
}

// acknowledged records the answer r to the step to next; false if it does
// not follow from the newest state the player saw (the one it was sent
// from, or one a PlayerInfo showed while it was on its way).
func (p *player) acknowledged(next *state, r any, at time.Time) bool {
	moved, ok := r.(*services.Moved)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending = nil
	cur := p.cur
	if cur != next.parent {
		next = &state{moves: cur.moves + 1, x: next.x, y: next.y, parent: cur}
	}
	if !ok || moved.Moves != next.moves || moved.X != next.x || moved.Y != next.y {
		p.disorder = append(p.disorder, fmt.Sprintf("%s: after move %d at %d,%d the Move to %d,%d was acknowledged as %+v",
			at.Format("15:04:05.000"), cur.moves, cur.x, cur.y, next.x, next.y, r))
		p.failures = append(p.failures, failure{at, "move: acknowledged out of order"})
		return false
	}
	next.ack = at
	p.add(next)
	p.acks = append(p.acks, at)
	p.nMoves++
	return true
}

// offer offers the partner one of our items for one of theirs and hands
// the offer to the partner to accept.
func (p *player) offer(ctx context.Context, s *session) bool {
	give, take := p.pick(), p.partner.pick()
	if give == "" || take == "" {
		return true
	}
	cctx, cancel := context.WithTimeout(ctx, tradeTimeout)
	r, err := s.c.Call(cctx, &services.TradeOffer{With: p.partner.id, Give: give, Take: take})
	cancel()
	p.drain(s)
	var se *client.ServerError
	switch {
	case errors.As(err, &se):
		return true // no such item any more, too many offers: the game said no
	case err != nil:
		if ctx.Err() == nil {
			p.fail(failureCause("trade offer", err))
		}
		return false
	}
	o, ok := r.(*services.TradeOffered)
	if !ok {
		return true
	}
	p.acked(time.Now())
	select {
	case <-p.partner.offers: // an older one, never accepted
	default:
	}
	select {
	case p.partner.offers <- *o:
	default:
	}
	return true
}

// accept accepts the partner's offer on its terms.
func (p *player) accept(ctx context.Context, s *session, o services.TradeOffered) bool {
	if time.Now().UnixMilli() >= o.ExpiresAtMs {
		return true
	}
	cctx, cancel := context.WithTimeout(ctx, tradeTimeout)
	r, err := s.c.Call(cctx, &services.TradeAccept{OfferID: o.OfferID, From: o.From, Give: o.Take, Take: o.Give})
	cancel()
	p.drain(s)
	var se *client.ServerError
	switch {
	case errors.As(err, &se):
		return true // the offer is gone, an item is missing, the partner is offline
	case err != nil:
		if ctx.Err() == nil {
			p.fail(failureCause("trade accept", err))
		}
		return false
	}
	inv, ok := r.(*services.Inventory)
	if !ok {
		return true
	}
	now := time.Now()
	p.mu.Lock()
	p.items = inv.Items
	p.nTrades++
	p.mu.Unlock()
	p.acked(now)
	return true
}

// pick chooses an item the player has, by its last known inventory.
func (p *player) pick() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var have []string
	for k, n := range p.items {
		if n > 0 {
			have = append(have, k)
		}
	}
	if len(have) == 0 {
		return ""
	}
	sort.Strings(have)
	return have[rand.IntN(len(have))]
}

func (p *player) acked(at time.Time) {
	p.mu.Lock()
	p.acks = append(p.acks, at)
	p.mu.Unlock()
}

func (p *player) fail(cause string) {
	p.mu.Lock()
	p.failures = append(p.failures, failure{time.Now(), cause})
	p.mu.Unlock()
}

// failureCause names a failure by what the player was doing and a short
// cause: kicked with a code, a server error code, a timeout, a lost
// connection.
func failureCause(what string, err error) string {
	var ke *client.KickedError
	var se *client.ServerError
	var le *client.LoginError
	switch {
	case errors.As(err, &ke):
		return what + ": kicked " + ke.Code
	case errors.As(err, &se):
		return what + ": refused " + se.Code
	case errors.As(err, &le):
		return what + ": login " + le.Code
	case errors.Is(err, context.DeadlineExceeded):
		return what + ": timeout"
	default:
		return what + ": connection lost"
	}
}

// add makes s the player's newest state.
func (p *player) add(s *state) {
	p.cur = s
	p.byMoves[s.moves] = append(p.byMoves[s.moves], s)
}

// observe compares a state the server shows (a new session's PlayerInfo,
// or the store after the scenario) with what was acknowledged. items is
// the inventory shown with it, if any.
func (p *player) observe(moves int64, x, y int32, source string, items map[string]int32, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if items != nil {
		p.items = items
	}
	if p.root == nil { // the first login
		p.root = &state{moves: moves, x: x, y: y, ack: now}
		p.first = items
		p.add(p.root)
		return
	}
	pending := p.pending
	p.pending = nil
	cur := p.cur
	if pending != nil && pending.moves == moves && pending.x == x && pending.y == y {
		pending.ack = now // applied, its answer lost: acknowledged now
		p.add(pending)
		return
	}
	if pending != nil {
		pending.unacked = true
		p.byMoves[pending.moves] = append(p.byMoves[pending.moves], pending)
	}
	if cur.moves == moves && cur.x == x && cur.y == y {
		return
	}
	var seen *state
	for _, s := range p.byMoves[moves] {
		if s.x == x && s.y == y && (seen == nil || isAncestor(s, cur)) {
			seen = s
		}
	}
	ev := lossEvent{at: now, source: source}
	if seen == nil {
		// A state the player never reached: everything it had is gone.
		ev.unknown = true
		for s := cur; s.parent != nil; s = s.parent {
			if !s.unacked {
				ev.lost = append(ev.lost, s)
			}
		}
		seen = &state{moves: moves, x: x, y: y, ack: now}
		p.add(seen)
	} else {
		anc := lca(seen, cur)
		for s := cur; s != anc && s.parent != nil; s = s.parent {
			if !s.unacked {
				ev.lost = append(ev.lost, s)
			}
		}
		ev.resurrected = anc != seen
		p.cur = seen
	}
	p.losses = append(p.losses, ev)
}

func isAncestor(a, s *state) bool {
	for ; s != nil; s = s.parent {
		if s == a {
			return true
		}
	}
	return false
}

// lca is the newest state both a and b descend from.
func lca(a, b *state) *state {
	depth := func(s *state) int {
		d := 0
		for ; s.parent != nil; s = s.parent {
			d++
		}
		return d
	}
	da, db := depth(a), depth(b)
	for ; da > db; da-- {
		a = a.parent
	}
	for ; db > da; db-- {
		b = b.parent
	}
	for a != b {
		a, b = a.parent, b.parent
	}
	return a
}

// walkTo takes a random step from v that stays on the map.
func walkTo(v int32) int32 {
	d := rand.Int32N(2*services.MaxStep+1) - services.MaxStep
	if v+d < 0 || v+d >= services.MapSize {
		return v - d
	}
	return v + d
}
