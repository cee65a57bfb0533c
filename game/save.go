package game

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/citadel-go/citadel/framework/store"
	"github.com/vmihailenco/msgpack/v5"
)

// saveState is a player's side of the save pipeline. Everything here runs on
// the player's actor goroutine; the saver reports back through the ticket.
type saveState struct {
	gen        uint64      // bumped by every MarkDirty
	savedGen   uint64      // the generation of the state last committed
	version    uint64      // the version last committed (the store decides versions)
	epoch      uint64      // the ownership epoch this node holds the player with
	owned      bool        // acquired and neither fenced nor released: this node may save the player
	inflight   *SaveTicket // the snapshot with the saver, if any
	inflightAt uint64      // its generation
	since      time.Time   // when the oldest change not in a snapshot was made
}

// MarkDirty records that State changed and must be saved.
func (p *Player[S]) MarkDirty() {
	if p.save.since.IsZero() {
		p.save.since = time.Now()
	}
	p.save.gen++
}

// Dirty reports whether State has changes not yet durably committed.
func (p *Player[S]) Dirty() bool { return p.save.gen != p.save.savedGen }

// Version is the version of the player's last durable commit.
func (p *Player[S]) Version() uint64 { return p.save.version }

// tickPeriod is how often a player snapshots: 90% of SaveInterval, so a
// change made just after a tick is committed within SaveInterval as long as
// the commit takes less than the remaining 10%.
func (p *Player[S]) tickPeriod() time.Duration {
	return p.svc.cfg.SaveInterval - p.svc.cfg.SaveInterval/10
}

// scheduleSaves starts the player's save ticks at a random point of the
// period, so a node's players spread their snapshots evenly.
func (p *Player[S]) scheduleSaves() {
	iv := p.tickPeriod()
	if _, err := p.ctx.SendAfter(time.Duration(rand.Int64N(int64(iv)))+time.Millisecond, &saveTick{}); err != nil {
		p.logger().Error("cannot schedule saves", "err", err)
	}
}

func (p *Player[S]) onSaveTick() {
	p.collect()
	if p.exchange.lockedBy.IsZero() { // a locked player's next version is reserved
		p.snapshot(context.Background(), false)
	}
	if _, err := p.ctx.SendAfter(p.tickPeriod(), &saveTick{}); err != nil && p.State != nil {
		p.logger().Error("cannot schedule the next save", "err", err)
	}
}

// collect reads the result of the snapshot in flight, if it is done.
func (p *Player[S]) collect() {
	t := p.save.inflight
	if t == nil || !t.Done() {
		return
	}
	p.save.inflight = nil
	err := t.Err()
	switch {
	case err == nil:
		p.save.version = max(p.save.version, t.Version)
		p.save.savedGen = max(p.save.savedGen, p.save.inflightAt)
	case errors.Is(err, store.ErrFenced):
		p.fence("a save was refused: another node owns this player now")
	default:
		p.logger().Error("save failed; the state stays dirty and is saved again", "version", t.Version, "err", err)
	}
}

// snapshot encodes the state and hands it to the saver if it changed and
// nothing is in flight. With wait it blocks until the saver takes it.
func (p *Player[S]) snapshot(ctx context.Context, wait bool) error {
	if !p.Dirty() || p.save.inflight != nil || p.State == nil || !p.save.owned {
		return nil
	}
	data, err := msgpack.Marshal(p.State)
	if err != nil {
		return fmt.Errorf("game: encode player %d: %w", p.ID, err)
	}
	since := p.save.since
	if since.IsZero() {
		since = time.Now()
	}
	t := NewSaveTicket(0, since) // the store decides the version
	rec := store.Record{ID: p.ID, Epoch: p.save.epoch, Data: data}
	if wait {
		if err := p.svc.cfg.Saver.Submit(ctx, rec, t); err != nil {
			return err
		}
	} else if !p.svc.cfg.Saver.TrySubmit(rec, t) {
		return nil // queue full: still dirty, next tick tries again
	}
	p.save.inflight, p.save.inflightAt = t, p.save.gen
	p.save.since = time.Time{}
	return nil
}

// flush saves everything and waits for the commit (shutdown). A player
// locked in an exchange first settles it with the store.
func (p *Player[S]) flush(ctx context.Context) error {
	if !p.save.owned {
		return nil // fenced or released: nothing of this node's to save
	}
	if !p.exchange.lockedBy.IsZero() {
		if err := p.settleLock(ctx, "this node is stopping"); err != nil {
			return err
		}
	}
	for i := 0; i < 3; i++ { // a failed or stale in-flight snapshot may need another
		if t := p.save.inflight; t != nil {
			t.Wait(ctx)
			p.collect()
		}
		if !p.Dirty() {
			return nil
		}
		if err := p.snapshot(ctx, true); err != nil {
			return err
		}
		if p.save.inflight == nil {
			break
		}
	}
	if p.Dirty() && p.save.owned {
		return fmt.Errorf("game: player %d still has unsaved changes", p.ID)
	}
	return nil
}

// waitSnapshot waits for the snapshot in flight, if any, and takes its
// result.
func (p *Player[S]) waitSnapshot(ctx context.Context) {
	if t := p.save.inflight; t != nil {
		t.Wait(ctx)
		p.collect()
	}
}

// handoff saves the player and gives up its ownership in one store
// transaction (logout at the end of the grace period): the next node to
// take the player starts from this state at once, with no wait for a lease
// to run out.
func (p *Player[S]) handoff(ctx context.Context) error {
	p.waitSnapshot(ctx)
	if !p.save.owned {
		return nil
	}
	rec := store.Record{ID: p.ID, Epoch: p.save.epoch}
	if p.Dirty() {
		data, err := msgpack.Marshal(p.State)
		if err != nil {
			return fmt.Errorf("game: encode player %d: %w", p.ID, err)
		}
		rec.Data = data
	}
	err := p.svc.cfg.Store.Release(ctx, rec)
	switch {
	case errors.Is(err, store.ErrFenced):
		p.fence("the handoff was refused: another node owns this player now")
		return nil
	case err != nil:
		return err
	}
	p.save.savedGen, p.save.owned = p.save.gen, false // released: nothing more is ours to save
	return nil
}
