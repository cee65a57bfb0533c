package game

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/bounded"
	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/services"
	"github.com/vmihailenco/msgpack/v5"
)

// Messages of the exchange protocol (they cross nodes: the two players may
// live on different game nodes).
type (
	// exchangeLock asks a player to lock itself for an exchange and answer
	// with its state. Incarnation is the initiator's node's.
	exchangeLock struct {
		From        framework.Addr
		Incarnation uint64
	}
	// exchangeLocked answers exchangeLock: the peer's state, the epoch it
	// is owned with and the version last committed, so the commit can be
	// conditional on the epoch and its outcome read back by version.
	exchangeLocked struct {
		State   []byte
		Epoch   uint64
		Version uint64
	}
	// exchangeRelease ends a lock: with Commit, State is the peer's new
	// state, already durably committed at Version.
	exchangeRelease struct {
		From    framework.Addr
		Commit  bool
		State   []byte
		Version uint64
	}
	// exchangeExpired settles a lock whose initiator went silent; Version is
	// the lock's (the peer's version when it locked).
	exchangeExpired struct{ Version uint64 }
)

// Exchange error codes (framework.RemoteError codes).
const (
	CodePeerOffline = "peer_offline"
	CodePeerBusy    = "peer_busy"
	CodeExchange    = "exchange_failed"
)

const (
	// exchangeLockSlack: a peer's lock lasts ExchangeTimeout and this
	// much more; by then the initiator has committed or given up. Settling
	// acquires the peer again, which fences any commit the initiator still
	// attempts, so an early settle can cost an exchange but never half of
	// one.
	exchangeLockSlack = time.Second
	// maxStash and maxStashBytes bound the messages a locked player holds
	// (client requests, mail, timers); beyond them the sender is told to
	// retry.
	maxStash      = 1024
	maxStashBytes = 256 << 10
)

// exchangeState is a player's side of an exchange in progress.
type exchangeState struct {
	lockedBy  framework.Addr // the initiator holding this player, if any
	lockedInc uint64         // the incarnation of the initiator's node
	version   uint64         // this player's committed version when it locked
	stash     []any          // client requests, mail and timer messages, in order
	stashed   int            // bytes of the stashed payloads
}

// Exchange changes this player's state and another online player's state
// together: fn gets copies of both, and returns an error to call it off;
// otherwise both records are committed in one store transaction, and only
// then do both players take their new state. Either both changes are saved
// and applied, or neither. While it runs the other player handles nothing
// else (its client's requests wait). It blocks this player for one call to
// the other and one commit.
func (p *Player[S]) Exchange(ctx context.Context, peer uint64, fn func(self, other *S) error) error {
	if peer == p.ID {
		return framework.NewError(CodeExchange, "a player cannot exchange with itself")
	}
	ctx, cancel := context.WithTimeout(ctx, p.svc.cfg.ExchangeTimeout)
	defer cancel()
	// The commit's outcome is read back by version: nothing of this
	// player's may be in flight meanwhile.
	p.waitSnapshot(ctx)
	if !p.save.owned {
		return framework.NewError(services.ErrCodeUnavailable, "this player is served by another node now; log in again")
	}
	node := p.ctx.Node()
	peerAddr := node.ActorAddr(playerActorName(peer)) // a node without an mq has only itself
	if node.Bus() != nil {
		m, ok := node.Members().Pick(services.Game, strconv.FormatUint(peer, 10))
		if !ok {
			return framework.NewError(CodePeerOffline, "no game node is online")
		}
		peerAddr.Node = m.Node
	}
	r, err := p.ctx.Call(ctx, peerAddr, &exchangeLock{From: p.ctx.Self(), Incarnation: node.Incarnation()})
	if errors.Is(err, framework.ErrActorNotFound) {
		return framework.NewError(CodePeerOffline, fmt.Sprintf("player %d is not online", peer))
	}
	release := func(commit bool, state []byte, version uint64) {
		if err := p.ctx.Send(peerAddr, &exchangeRelease{From: p.ctx.Self(), Commit: commit, State: state, Version: version}); err != nil {
			p.logger().Error("cannot release exchange partner; it settles with the store when its lock expires", "peer", peer, "err", err)
		}
	}
	if err != nil {
		// The lock may have been taken and its answer lost: let it go.
		var re *framework.RemoteError
		if !errors.As(err, &re) {
			release(false, nil, 0)
		}
		return err
	}
	locked, ok := r.(*exchangeLocked)
	if !ok {
		return fmt.Errorf("game: exchange lock answered with %T", r)
	}
	self, other := new(S), new(S)
	err = copyState(p.State, self)
	if err == nil {
		err = bounded.Unmarshal(locked.State, other)
	}
	if err == nil {
		err = fn(self, other)
	}
	if err != nil {
		release(false, nil, 0)
		return err
	}
	selfData, err := msgpack.Marshal(self)
	var otherData []byte
	if err == nil {
		otherData, err = msgpack.Marshal(other)
	}
	if err != nil {
		release(false, nil, 0)
		return fmt.Errorf("game: encode exchange: %w", err)
	}
	recs := []store.Record{
		{ID: p.ID, Epoch: p.save.epoch, Data: selfData},
		{ID: peer, Epoch: locked.Epoch, Data: otherData},
	}
	err = p.svc.cfg.Saver.CommitAll(ctx, recs)
	if err != nil && !errors.Is(err, store.ErrFenced) {
		// Not refused, but not confirmed either (a timeout, a lost answer):
		// the store knows. Nobody else writes this player meanwhile, so its
		// next version is the exchange's.
		if committed, rerr := p.readBack(); rerr != nil {
			p.logger().Error("cannot tell whether the exchange committed; its partner settles it with the store", "peer", peer, "err", rerr)
			return framework.NewError(CodeExchange, "the exchange could not be confirmed; check your inventory")
		} else if committed {
			err = nil
			recs[0].Version, recs[1].Version = p.save.version+1, locked.Version+1
		}
	}
	if err != nil {
		release(false, nil, 0)
		var fe *store.FencedError
		if errors.As(err, &fe) && slices.Contains(fe.IDs, p.ID) {
			p.fence("an exchange commit was refused: another node owns this player now")
		}
		p.logger().Warn("exchange not committed; nothing changed", "peer", peer, "err", err)
		return framework.NewError(CodeExchange, "the exchange could not be saved; nothing changed")
	}
	p.State = self
	p.save.version = recs[0].Version
	p.save.savedGen = p.save.gen // the committed state is the current one
	p.save.since = time.Time{}
	release(true, otherData, recs[1].Version)
	return nil
}

// readBack reports whether this player's record in the store is one
// version past the last one this node knows it committed.
func (p *Player[S]) readBack() (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.svc.cfg.SaveTimeout)
	defer cancel()
	rec, err := p.svc.cfg.Store.Load(ctx, p.ID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return rec.Version == p.save.version+1, nil
}

func copyState[S any](from, to *S) error {
	b, err := msgpack.Marshal(from)
	if err != nil {
		return err
	}
	return msgpack.Unmarshal(b, to)
}

// onExchangeLock locks this player for an initiator.
func (p *Player[S]) onExchangeLock(m *exchangeLock) {
	switch {
	case p.State == nil || !p.save.owned:
		p.ctx.ReplyError(framework.NewError(CodePeerOffline, "the player is not served here"))
		return
	case !p.exchange.lockedBy.IsZero() || p.move.target != "":
		p.ctx.ReplyError(framework.NewError(CodePeerBusy, "the player is in another exchange or moving to another server"))
		return
	case !p.svc.cfg.Lease.Valid():
		p.ctx.ReplyError(framework.NewError(services.ErrCodeUnavailable, "the player's node is not sure it still serves it"))
		return
	}
	// The outcome is read back by version: settle the snapshot in flight.
	ctx, cancel := context.WithTimeout(context.Background(), p.svc.cfg.SaveTimeout)
	p.waitSnapshot(ctx)
	cancel()
	if !p.save.owned {
		p.ctx.ReplyError(framework.NewError(CodePeerOffline, "the player is not served here"))
		return
	}
	state, err := msgpack.Marshal(p.State)
	if err != nil {
		p.ctx.ReplyError(err)
		return
	}
	p.exchange.lockedBy, p.exchange.lockedInc, p.exchange.version = m.From, m.Incarnation, p.save.version
	p.ctx.SendAfter(p.svc.cfg.ExchangeTimeout+exchangeLockSlack, &exchangeExpired{Version: p.save.version})
	p.ctx.Reply(&exchangeLocked{State: state, Epoch: p.save.epoch, Version: p.save.version})
}

// onExchangeRelease takes the committed state (or not) and unlocks.
func (p *Player[S]) onExchangeRelease(m *exchangeRelease) {
	if p.exchange.lockedBy.IsZero() || m.From != p.exchange.lockedBy {
		return // a release for a lock that was settled already
	}
	if m.Commit {
		st := new(S)
		if err := bounded.Unmarshal(m.State, st); err != nil {
			// Cannot happen for state we encoded; the store has it anyway.
			p.logger().Error("exchange state does not decode; reloading is needed", "err", err)
		} else {
			p.State = st
			p.save.version = max(p.save.version, m.Version)
			p.save.savedGen = p.save.gen
			p.save.since = time.Time{}
		}
	}
	p.unlock()
}

// onExchangeExpired settles a lock whose initiator never released it.
func (p *Player[S]) onExchangeExpired(m *exchangeExpired) {
	if p.exchange.lockedBy.IsZero() || m.Version != p.exchange.version {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.svc.cfg.SaveTimeout)
	defer cancel()
	if err := p.settleLock(ctx, "the initiator went silent"); err != nil {
		p.logger().Error("cannot settle an expired exchange lock; asking the store again", "err", err)
		if _, err := p.ctx.SendAfter(time.Second, m); err != nil {
			p.logger().Error("cannot retry the expired exchange", "err", err)
		}
	}
}

// settleLock ends a lock without waiting for the initiator: acquiring the
// player again (a new epoch) fences out any commit the initiator might
// still attempt, and the record the store returns says whether one made it
// before: the version after this player's when it locked.
func (p *Player[S]) settleLock(ctx context.Context, why string) error {
	rec, err := p.svc.cfg.Store.Acquire(ctx, p.ID, p.svc.cfg.Lease.Owner())
	if errors.Is(err, store.ErrOwned) || errors.Is(err, store.ErrFenced) {
		p.fence("settling an exchange: another node owns this player now")
		p.unlock()
		return nil
	}
	if err != nil {
		return err
	}
	p.save.epoch = rec.Epoch
	switch {
	case rec.Version > p.exchange.version:
		st := new(S)
		if err := msgpack.Unmarshal(rec.Data, st); err != nil {
			return fmt.Errorf("game: committed exchange state of player %d does not decode: %w", p.ID, err)
		}
		p.State = st
		p.save.version = rec.Version
		p.save.savedGen = p.save.gen
		p.save.since = time.Time{}
		p.logger().Warn("exchange settled with the store: it had committed", "why", why,
			"initiator", p.exchange.lockedBy.String(), "version", rec.Version)
	default:
		p.logger().Warn("exchange settled with the store: it had not committed, and now cannot", "why", why,
			"initiator", p.exchange.lockedBy.String())
	}
	p.unlock()
	return nil
}

// unlock ends an exchange and handles the requests that waited for it.
func (p *Player[S]) unlock() {
	p.exchange.lockedBy, p.exchange.lockedInc = framework.Addr{}, 0
	stash := p.exchange.stash
	p.exchange.stash, p.exchange.stashed = nil, 0
	for _, m := range stash {
		switch m := m.(type) {
		case *services.ClientRequest:
			p.request(m)
		case *mail:
			p.onMail(m)
		default:
			p.onTimer(m)
		}
	}
}

// stash keeps a message for when the exchange ends, or calls full if the
// player holds too many already.
func (p *Player[S]) stash(m any, size int, full func()) {
	if len(p.exchange.stash) >= maxStash || p.exchange.stashed+size > maxStashBytes {
		full()
		return
	}
	p.exchange.stash = append(p.exchange.stash, m)
	p.exchange.stashed += size
}

func registerExchange(r *framework.Registry) error {
	for id, m := range map[framework.MsgID]any{310: (*exchangeLock)(nil), 311: (*exchangeLocked)(nil),
		312: (*exchangeRelease)(nil), 313: (*exchangeExpired)(nil)} {
		if err := r.Register(id, m); err != nil {
			return err
		}
	}
	return nil
}
