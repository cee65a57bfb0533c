package game_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/game"
)

// flaky is the real bbolt store with injected commit failures (the way a
// database outage looks to the saver).
type flaky struct {
	store.Store
	failing atomic.Bool
	calls   atomic.Int64
	// loseAck: the next SaveAll commits, then reports a lost connection;
	// with downAfter the database is unavailable from then on.
	loseAck, downAfter atomic.Bool
}

func (f *flaky) SaveAll(ctx context.Context, recs []store.Record) error {
	if f.failing.Load() {
		return errors.New("injected: database unavailable")
	}
	err := f.Store.SaveAll(ctx, recs)
	if err == nil && f.loseAck.CompareAndSwap(true, false) {
		f.failing.Store(f.downAfter.Load())
		return errors.New("injected: connection lost before the commit was acknowledged")
	}
	return err
}

func (f *flaky) Save(ctx context.Context, recs []store.Record) error {
	f.calls.Add(1)
	if f.failing.Load() {
		return errors.New("injected: database unavailable")
	}
	return f.Store.Save(ctx, recs)
}

func openBolt(t *testing.T) store.Store {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestSaverBatchesAndReportsPerSnapshot(t *testing.T) {
	st := openBolt(t)
	s, err := game.NewSaver(game.SaverConfig{Store: st, BatchDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Save(context.Background(), []store.Record{{ID: 1000, Version: 5, Data: []byte("newer")}}); err != nil {
		t.Fatal(err)
	}
	var tickets []*game.SaveTicket
	for i := 1; i <= 100; i++ {
		tk := game.NewSaveTicket(1, time.Now())
		if !s.TrySubmit(store.Record{ID: uint64(i), Version: 1, Data: []byte(fmt.Sprint(i))}, tk) {
			t.Fatal("queue full at", i)
		}
		tickets = append(tickets, tk)
	}
	stale := game.NewSaveTicket(4, time.Now())
	s.TrySubmit(store.Record{ID: 1000, Version: 4, Data: []byte("older")}, stale)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, tk := range tickets {
		if err := tk.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := stale.Wait(ctx); !errors.Is(err, store.ErrStale) {
		t.Fatalf("stale snapshot: %v", err)
	}
	if r, _ := st.Load(ctx, 1000); string(r.Data) != "newer" {
		t.Fatalf("a stale snapshot overwrote newer data: %q", r.Data)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if s.TrySubmit(store.Record{ID: 1, Version: 2}, game.NewSaveTicket(2, time.Now())) {
		t.Fatal("accepted after Stop")
	}
}

func TestSaverRetriesAndAppliesBackpressure(t *testing.T) {
	f := &flaky{Store: openBolt(t)}
	f.failing.Store(true)
	s, err := game.NewSaver(game.SaverConfig{Store: f, QueueSize: 4, BatchCount: 2, BatchDelay: time.Millisecond,
		RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	first := game.NewSaveTicket(1, time.Now())
	s.TrySubmit(store.Record{ID: 1, Version: 1, Data: []byte("a")}, first)
	// While commits fail the queue fills; then TrySubmit refuses (the
	// player keeps its dirty state) instead of growing without limit.
	accepted, refused := 0, 0
	for i := 2; i < 20; i++ {
		if s.TrySubmit(store.Record{ID: uint64(i), Version: 1}, game.NewSaveTicket(1, time.Now())) {
			accepted++
		} else {
			refused++
		}
	}
	if refused == 0 || accepted > 6 {
		t.Fatalf("queue of 4 accepted %d and refused %d", accepted, refused)
	}
	time.Sleep(100 * time.Millisecond)
	if first.Done() {
		t.Fatal("a snapshot was reported saved while the store was failing")
	}
	if f.calls.Load() < 3 {
		t.Fatalf("only %d commit attempts; the saver should retry", f.calls.Load())
	}
	f.failing.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := first.Wait(ctx); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	if r, err := f.Load(ctx, 1); err != nil || string(r.Data) != "a" {
		t.Fatalf("stored %q %v", r.Data, err)
	}
	s.Stop(ctx)
}

// A player saves itself on its tick; it is clean only when the commit of
// its snapshot succeeded, and a change made meanwhile stays dirty.
func TestPlayerSavesPeriodicallyAndOnlyCommittedCounts(t *testing.T) {
	r := newRig(t, time.Minute, func(c *rigConfig) { c.saveInterval = 100 * time.Millisecond })
	att, _ := r.attach(7, 100)
	r.reply()
	r.request(att.Actor, 100, 1, &Inc{By: 3})
	r.reply()
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec, err := r.store.Load(context.Background(), 7)
		if err == nil && decodeCounter(t, rec.Data).N == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not saved within 5s of a 100ms save interval: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Commits fail from now on: later changes are not reported saved, and
	// they reach the store once commits work again.
	r.flaky.failing.Store(true)
	r.request(att.Actor, 100, 2, &Inc{By: 4})
	r.reply()
	time.Sleep(400 * time.Millisecond)
	if rec, _ := r.store.Load(context.Background(), 7); decodeCounter(t, rec.Data).N != 3 {
		t.Fatal("a change reached the store while commits failed?")
	}
	r.flaky.failing.Store(false)
	deadline = time.Now().Add(5 * time.Second)
	for {
		rec, _ := r.store.Load(context.Background(), 7)
		if decodeCounter(t, rec.Data).N == 7 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("change not saved after the store recovered")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
