package game

import (
	"context"
	"errors"
	"fmt"
	"github.com/citadel-go/citadel/framework/bounded"
	"strconv"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/services"
	"github.com/vmihailenco/msgpack/v5"
)

// Messages of the exchange protocol (they cross nodes: the two players may
// live on different game nodes).
type (
	// exchangeLock asks a player to lock itself for an exchange and answer
	// with its state.
	exchangeLock struct {
		From framework.Addr
	}
	// exchangeLocked answers exchangeLock: the peer's state and the version
	// reserved for its side of the commit.
	exchangeLocked struct {
		State   []byte
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
	// exchangeExpired releases a lock whose initiator went silent.
	exchangeExpired struct{ Version uint64 }
)

// Exchange error codes (framework.RemoteError codes).
const (
	CodePeerOffline = "peer_offline"
	CodePeerBusy    = "peer_busy"
	CodeExchange    = "exchange_failed"
)

const (
	// exchangeLockFactor: a peer's lock lasts this many ExchangeTimeouts,
	// so when it expires the initiator's commit has long been decided.
	exchangeLockFactor = 6
	// maxStash and maxStashBytes bound the client requests a locked player
	// holds; beyond them the client is told to retry.
	maxStash      = 1024
	maxStashBytes = 256 << 10
)

// exchangeState is a player's side of an exchange in progress.
type exchangeState struct {
	lockedBy framework.Addr // the initiator holding this player, if any
	version  uint64         // the version reserved for this player's side
	stash    []*services.ClientRequest
	stashed  int // bytes of the stashed payloads
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
	node := p.ctx.Node()
	peerAddr := node.ActorAddr(playerActorName(peer)) // a node without an mq has only itself
	if node.Bus() != nil {
		m, ok := node.Members().Pick(services.Game, strconv.FormatUint(peer, 10))
		if !ok {
			return framework.NewError(CodePeerOffline, "no game node is online")
		}
		peerAddr.Node = m.Node
	}
	r, err := p.ctx.Call(ctx, peerAddr, &exchangeLock{From: p.ctx.Self()})
	if errors.Is(err, framework.ErrActorNotFound) {
		return framework.NewError(CodePeerOffline, fmt.Sprintf("player %d is not online", peer))
	}
	if err != nil {
		return err
	}
	locked := r.(*exchangeLocked)
	release := func(commit bool, state []byte) {
		if err := p.ctx.Send(peerAddr, &exchangeRelease{From: p.ctx.Self(), Commit: commit, State: state, Version: locked.Version}); err != nil {
			p.log.Error("cannot release exchange partner; its lock expires", "peer", peer, "err", err)
		}
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
		release(false, nil)
		return err
	}
	selfData, err := msgpack.Marshal(self)
	var otherData []byte
	if err == nil {
		otherData, err = msgpack.Marshal(other)
	}
	if err != nil {
		release(false, nil)
		return fmt.Errorf("game: encode exchange: %w", err)
	}
	selfVersion := p.save.next + 1
	err = p.svc.cfg.Saver.CommitAll(ctx, []store.Record{
		{ID: p.ID, Version: selfVersion, Data: selfData},
		{ID: peer, Version: locked.Version, Data: otherData},
	})
	if err != nil {
		release(false, nil)
		p.log.Warn("exchange not committed; nothing changed", "peer", peer, "err", err)
		if errors.Is(err, store.ErrStale) {
			p.svc.conflicts.Inc()
		}
		return framework.NewError(CodeExchange, "the exchange could not be saved; nothing changed")
	}
	p.State = self
	p.save.next = selfVersion
	p.save.version = max(p.save.version, selfVersion)
	p.save.savedGen = p.save.gen // the committed state is the current one
	p.save.since = time.Time{}
	release(true, otherData)
	return nil
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
	case p.State == nil:
		p.ctx.ReplyError(framework.NewError(CodePeerOffline, "the player is not loaded"))
		return
	case !p.exchange.lockedBy.IsZero():
		p.ctx.ReplyError(framework.NewError(CodePeerBusy, "the player is in another exchange"))
		return
	}
	state, err := msgpack.Marshal(p.State)
	if err != nil {
		p.ctx.ReplyError(err)
		return
	}
	p.save.next++
	p.exchange.lockedBy, p.exchange.version = m.From, p.save.next
	p.ctx.SendAfter(exchangeLockFactor*p.svc.cfg.ExchangeTimeout, &exchangeExpired{Version: p.save.next})
	p.ctx.Reply(&exchangeLocked{State: state, Version: p.save.next})
}

// onExchangeRelease takes the committed state (or not) and unlocks.
func (p *Player[S]) onExchangeRelease(m *exchangeRelease) {
	if m.From != p.exchange.lockedBy || m.Version != p.exchange.version {
		return // a release for a lock that expired
	}
	if m.Commit {
		st := new(S)
		if err := bounded.Unmarshal(m.State, st); err != nil {
			// Cannot happen for state we encoded; the store has it anyway.
			p.log.Error("exchange state does not decode; reloading is needed", "err", err)
		} else {
			p.State = st
			p.save.version = max(p.save.version, m.Version)
			p.save.savedGen = p.save.gen
			p.save.since = time.Time{}
		}
	}
	p.unlock()
}

// onExchangeExpired handles a lock whose initiator never released it (its
// node crashed, or the release was lost). The initiator may have committed
// before it went silent, so the store decides: the reserved version stored
// means the exchange happened and this player takes that state; otherwise it
// did not, and cannot any more (the initiator's deadline has passed).
func (p *Player[S]) onExchangeExpired(m *exchangeExpired) {
	if p.exchange.lockedBy.IsZero() || m.Version != p.exchange.version {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.svc.cfg.SaveTimeout)
	rec, err := p.svc.cfg.Store.Load(ctx, p.ID)
	cancel()
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		p.log.Error("exchange lock expired and the store cannot say whether it committed; asking again", "err", err)
		if _, err := p.ctx.SendAfter(time.Second, m); err != nil {
			p.log.Error("cannot retry the expired exchange", "err", err)
		}
		return
	}
	switch {
	case err == nil && rec.Version == m.Version:
		st := new(S)
		if err := msgpack.Unmarshal(rec.Data, st); err != nil {
			p.log.Error("committed exchange state does not decode; keeping the player locked", "err", err)
			return
		}
		p.State = st
		p.save.version = max(p.save.version, rec.Version)
		p.save.savedGen = p.save.gen
		p.save.since = time.Time{}
		p.log.Warn("exchange initiator went silent after committing; took the committed state",
			"initiator", p.exchange.lockedBy.String(), "version", rec.Version)
	case err == nil && rec.Version > m.Version:
		p.svc.conflicts.Inc()
		p.log.Error("the store holds a newer version of this player than the exchange reserved (another node?)",
			"reserved", m.Version, "stored", rec.Version)
	default:
		p.log.Warn("exchange initiator went silent before committing; nothing changed",
			"initiator", p.exchange.lockedBy.String())
	}
	p.unlock()
}

// unlock ends an exchange and handles the requests that waited for it.
func (p *Player[S]) unlock() {
	p.exchange.lockedBy = framework.Addr{}
	stash := p.exchange.stash
	p.exchange.stash, p.exchange.stashed = nil, 0
	for _, r := range stash {
		p.request(r)
	}
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
