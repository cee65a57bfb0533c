package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citadel-go/citadel/framework/store"
)

// long is a lease that cannot expire during a test; short ones are made by
// renewing with a short TTL once everything that needs the lease is done,
// so a slow machine cannot expire a lease too early.
const long = time.Hour

// runOwnership checks incarnations, leases, Acquire/Release and fenced saves.
func runOwnership(t *testing.T, b Backend) {
	ctx := context.Background()

	t.Run("incarnations increase per node, also after reopening", func(t *testing.T) {
		s := b.Open(t)
		a1 := start(t, s, "a")
		a2 := start(t, s, "a")
		b1 := start(t, s, "b")
		if a1.Incarnation == 0 || a2.Incarnation <= a1.Incarnation || b1.Incarnation == 0 {
			t.Fatalf("incarnations a %d then %d, b %d: want non-zero and increasing", a1.Incarnation, a2.Incarnation, b1.Incarnation)
		}
		if a2.Ended || a2.Expires.IsZero() || a2.Node != "a" {
			t.Fatalf("StartNode returned %+v", a2)
		}
		expectLeases(t, s, a2, b1)

		s = b.Reopen(t, s)
		a3 := start(t, s, "a")
		if a3.Incarnation <= a2.Incarnation {
			t.Fatalf("after reopening, incarnation %d follows %d", a3.Incarnation, a2.Incarnation)
		}
		expectLeases(t, s, a3, b1)

		for _, c := range []struct {
			node string
			ttl  time.Duration
		}{{"", long}, {strings.Repeat("n", 256), long}, {"a", 0}, {"a", -time.Second}} {
			if l, err := s.StartNode(ctx, c.node, c.ttl); err == nil {
				t.Fatalf("StartNode(%q, %v) = %+v, want an error", c.node, c.ttl, l)
			}
		}
		expectLeases(t, s, a3, b1)
	})

	t.Run("a lease renews until superseded, ended or expired", func(t *testing.T) {
		s := b.Open(t)
		a1 := start(t, s, "a")
		r, err := s.RenewLease(ctx, a1.Owner, 2*long)
		if err != nil || r.Owner != a1.Owner || r.Ended || !r.Expires.After(a1.Expires) {
			t.Fatalf("renewal of %+v = %+v, %v; want a later expiry", a1, r, err)
		}
		expectLeases(t, s, r)

		a2 := start(t, s, "a")
		expectFenced(t, "renewal of a superseded incarnation", renewErr(s, a1.Owner))
		expectLeases(t, s, a2)
		if _, err := s.RenewLease(ctx, a2.Owner, long); err != nil {
			t.Fatal(err)
		}
		expectFenced(t, "renewal of an incarnation never issued", renewErr(s, store.Owner{Node: "a", Incarnation: a2.Incarnation + 1}))
		expectFenced(t, "renewal for a node never started", renewErr(s, store.Owner{Node: "nobody", Incarnation: 1}))
		if _, err := s.RenewLease(ctx, a2.Owner, 0); err == nil || errors.Is(err, store.ErrFenced) {
			t.Fatalf("renewal with TTL 0: %v, want an error about the TTL", err)
		}

		must(t, s.EndLease(ctx, a2.Owner))
		expectFenced(t, "renewal of an ended lease", renewErr(s, a2.Owner))
		leases := expectLeaseCount(t, s, 1)
		if !leases[0].Ended || leases[0].Owner != a2.Owner {
			t.Fatalf("after EndLease: %+v", leases[0])
		}
		must(t, s.EndLease(ctx, a2.Owner)) // again: nothing to do
		must(t, s.EndLease(ctx, a1.Owner)) // superseded: nothing to do
		for _, o := range []store.Owner{{Node: "a", Incarnation: a2.Incarnation + 1}, {Node: "nobody", Incarnation: 1}} {
			if err := s.EndLease(ctx, o); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("EndLease(%v) of an incarnation never issued: %v", o, err)
			}
		}

		// Expiry: a 1µs TTL has lapsed by the next call; polled, not timed.
		c := start(t, s, "c")
		if _, err := s.RenewLease(ctx, c.Owner, time.Microsecond); err != nil {
			t.Fatal(err)
		}
		poll(t, "a renewal refused once the lease expired", func() (bool, error) {
			_, err := s.RenewLease(ctx, c.Owner, time.Microsecond)
			if errors.Is(err, store.ErrFenced) {
				return true, nil
			}
			return false, err
		})
		expectFenced(t, "renewal of an expired lease", renewErr(s, c.Owner))
	})

	t.Run("Acquire: free, own, released, ended, superseded; a live owner refuses", func(t *testing.T) {
		s := b.Open(t)
		a, bb := start(t, s, "a"), start(t, s, "b")

		rec := acquire(t, s, 1, a.Owner)
		if rec.ID != 1 || rec.Version != 0 || rec.Data != nil || rec.Epoch == 0 {
			t.Fatalf("Acquire of a new player = %+v, want version 0, no data, an epoch", rec)
		}
		e := rec.Epoch
		expectOwner(t, s, 1, a.Owner, e)
		if _, err := s.Load(ctx, 1); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Load of a player acquired but never saved: %v", err)
		}

		_, err := s.Acquire(ctx, 1, bb.Owner)
		var oe *store.OwnedError
		if !errors.As(err, &oe) || !errors.Is(err, store.ErrOwned) || oe.ID != 1 || oe.Owner != a.Owner || !oe.Expires.Equal(a.Expires) {
			t.Fatalf("Acquire of a player a live node holds: %v, want *OwnedError naming %v until %v", err, a.Owner, a.Expires)
		}
		expectOwner(t, s, 1, a.Owner, e)

		e = acquireNext(t, s, 1, a.Owner, e) // its own player again

		must(t, s.Release(ctx, store.Record{ID: 1, Epoch: e}))
		expectOwner(t, s, 1, store.Owner{}, e)
		e = acquireNext(t, s, 1, bb.Owner, e) // released: no wait for a's lease

		must(t, s.EndLease(ctx, bb.Owner))
		e = acquireNext(t, s, 1, a.Owner, e) // b's lease ended

		acquireNext(t, s, 2, a.Owner, 0)
		a2, c := start(t, s, "a"), start(t, s, "c")
		e = acquireNext(t, s, 1, c.Owner, e) // a restarted: a1's players are free
		acquireNext(t, s, 2, a2.Owner, 1)    // also for the new incarnation itself

		// Only a live, newest incarnation acquires; a refusal changes nothing.
		for _, o := range []store.Owner{a.Owner, bb.Owner, {Node: "z", Incarnation: 1}, {Node: "a", Incarnation: a2.Incarnation + 1}} {
			_, err := s.Acquire(ctx, 1, o)
			expectFenced(t, fmt.Sprintf("Acquire by %v", o), err)
		}
		expectOwner(t, s, 1, c.Owner, e)
	})

	t.Run("an expired lease frees its players and is never revived", func(t *testing.T) {
		s := b.Open(t)
		x, y := start(t, s, "x"), start(t, s, "y")
		e := acquire(t, s, 1, x.Owner).Epoch
		acquire(t, s, 2, x.Owner)
		if _, err := s.RenewLease(ctx, x.Owner, 200*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		var rec store.Record
		poll(t, "y acquires x's player once x's lease expired", func() (bool, error) {
			var err error
			rec, err = s.Acquire(ctx, 1, y.Owner)
			var oe *store.OwnedError
			if errors.As(err, &oe) && oe.Owner == x.Owner {
				return false, nil
			}
			return err == nil, err
		})
		if rec.Epoch <= e {
			t.Fatalf("epoch %d after %d", rec.Epoch, e)
		}
		expectOwner(t, s, 1, y.Owner, rec.Epoch)
		expectFenced(t, "renewal after the lease expired and a player moved", renewErr(s, x.Owner))
		_, err := s.Acquire(ctx, 3, x.Owner)
		expectFenced(t, "Acquire by an expired incarnation", err)
		// The take-over ended the lease for good, whatever the clocks do.
		if l := expectLeaseCount(t, s, 2)[0]; l.Owner != x.Owner || !l.Ended {
			t.Fatalf("x's lease after the take-over: %+v, want ended", l)
		}
		acquireNext(t, s, 2, y.Owner, 1)
	})

	t.Run("epochs fence saves and the store picks versions", func(t *testing.T) {
		s := b.Open(t)
		a := start(t, s, "a")
		e1 := acquire(t, s, 1, a.Owner).Epoch

		recs := []store.Record{{ID: 1, Epoch: e1, Version: 77, Data: []byte("s1")}}
		must(t, s.Save(ctx, recs))
		expectVersions(t, recs, 1)
		expectRecord(t, s, 1, 1, "s1")
		recs = []store.Record{{ID: 1, Epoch: e1, Data: []byte("s2")}}
		must(t, s.SaveAll(ctx, recs))
		expectVersions(t, recs, 2)
		recs = []store.Record{{ID: 1, Epoch: e1, Data: []byte("s3")}, {ID: 1, Epoch: e1, Data: []byte("s4")}}
		must(t, s.Save(ctx, recs))
		expectVersions(t, recs, 3, 4)
		expectRecord(t, s, 1, 4, "s4")

		// A player saved the older way continues from its version.
		must(t, s.Save(ctx, []store.Record{{ID: 2, Version: 10, Data: []byte("legacy")}}))
		rec := acquire(t, s, 2, a.Owner)
		if rec.Version != 10 || string(rec.Data) != "legacy" {
			t.Fatalf("Acquire of a saved player = %+v", rec)
		}
		recs = []store.Record{{ID: 2, Epoch: rec.Epoch, Data: []byte("p11")}}
		must(t, s.Save(ctx, recs))
		expectVersions(t, recs, 11)

		// Another Acquire fences the first owner's saves.
		a2 := start(t, s, "a")
		e2 := acquire(t, s, 1, a2.Owner).Epoch
		f2 := acquire(t, s, 2, a2.Owner).Epoch
		recs = []store.Record{{ID: 1, Epoch: e1, Version: 5, Data: []byte("late")}, {ID: 2, Epoch: f2, Data: []byte("p12")}}
		expectRefused(t, "Save with one fenced record", s.Save(ctx, recs), []uint64{1}, nil)
		expectVersions(t, recs, 5, 12)
		expectRecord(t, s, 1, 4, "s4")
		expectRecord(t, s, 2, 12, "p12")

		recs = []store.Record{{ID: 2, Epoch: f2, Data: []byte("p13")}, {ID: 1, Epoch: e1, Data: []byte("late")}}
		expectRefused(t, "SaveAll with one fenced record", s.SaveAll(ctx, recs), []uint64{1}, nil)
		expectVersions(t, recs, 0, 0)
		expectRecord(t, s, 1, 4, "s4")
		expectRecord(t, s, 2, 12, "p12")
		recs = []store.Record{{ID: 2, Epoch: f2, Data: []byte("p13")}, {ID: 1, Epoch: e2, Data: []byte("s5")}}
		must(t, s.SaveAll(ctx, recs))
		expectVersions(t, recs, 13, 5)

		// Mixed batches: records without an epoch keep the version check.
		recs = []store.Record{{ID: 3, Version: 1, Data: []byte("L1")}, {ID: 1, Epoch: e2, Data: []byte("s6")}}
		must(t, s.Save(ctx, recs))
		expectVersions(t, recs, 1, 6)
		recs = []store.Record{{ID: 3, Version: 1, Data: []byte("stale")}, {ID: 1, Epoch: e1, Data: []byte("late")}, {ID: 2, Epoch: f2, Data: []byte("p14")}}
		expectRefused(t, "Save with a stale and a fenced record", s.Save(ctx, recs), []uint64{1}, []uint64{3})
		expectVersions(t, recs, 1, 0, 14)
		recs = []store.Record{{ID: 3, Version: 1, Data: []byte("stale")}, {ID: 2, Epoch: f2, Data: []byte("p15")}}
		expectRefused(t, "SaveAll with a stale record", s.SaveAll(ctx, recs), nil, []uint64{3})
		expectVersions(t, recs, 1, 0)
		expectRecord(t, s, 1, 6, "s6")
		expectRecord(t, s, 2, 14, "p14")
		expectRecord(t, s, 3, 1, "L1")

		// A claim alone is no saved record: a save without an epoch, even
		// of version 0, is not stale against it.
		acquire(t, s, 4, a2.Owner)
		must(t, s.Save(ctx, []store.Record{{ID: 4, Version: 0, Data: []byte("zero")}}))
		expectRecord(t, s, 4, 0, "zero")

		// An epoch the player never had, on a player never acquired.
		recs = []store.Record{{ID: 9, Epoch: 1, Data: []byte("x")}}
		expectRefused(t, "Save of a player never acquired", s.Save(ctx, recs), []uint64{9}, nil)
		if _, err := s.Load(ctx, 9); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Load of a player whose only save was fenced: %v", err)
		}
	})

	t.Run("Release saves and frees in one step", func(t *testing.T) {
		s := b.Open(t)
		a, bb := start(t, s, "a"), start(t, s, "b")
		e := acquire(t, s, 1, a.Owner).Epoch
		must(t, s.Save(ctx, []store.Record{{ID: 1, Epoch: e, Data: []byte("s1")}}))
		must(t, s.Release(ctx, store.Record{ID: 1, Epoch: e, Version: 99, Data: []byte("bye")}))
		expectRecord(t, s, 1, 2, "bye")
		expectOwner(t, s, 1, store.Owner{}, e)

		// Nothing more from the released epoch.
		expectRefused(t, "Save after Release", s.Save(ctx, []store.Record{{ID: 1, Epoch: e, Data: []byte("late")}}), []uint64{1}, nil)
		expectRefused(t, "Release twice", s.Release(ctx, store.Record{ID: 1, Epoch: e, Data: []byte("late")}), []uint64{1}, nil)
		expectRecord(t, s, 1, 2, "bye")

		// a's lease is live, yet b takes the player at once, with its state.
		rec := acquire(t, s, 1, bb.Owner)
		if rec.Version != 2 || string(rec.Data) != "bye" || rec.Epoch <= e {
			t.Fatalf("Acquire after Release = %+v", rec)
		}
		expectRefused(t, "Release with a stale epoch", s.Release(ctx, store.Record{ID: 1, Epoch: e, Data: []byte("stale")}), []uint64{1}, nil)
		expectRecord(t, s, 1, 2, "bye")
		expectOwner(t, s, 1, bb.Owner, rec.Epoch)

		must(t, s.Release(ctx, store.Record{ID: 1, Epoch: rec.Epoch})) // nil Data: nothing saved
		expectRecord(t, s, 1, 2, "bye")
		expectOwner(t, s, 1, store.Owner{}, rec.Epoch)

		e = acquire(t, s, 5, a.Owner).Epoch
		must(t, s.Release(ctx, store.Record{ID: 5, Epoch: e, Data: []byte("first")}))
		expectRecord(t, s, 5, 1, "first")

		if err := s.Release(ctx, store.Record{ID: 6, Data: []byte("x")}); err == nil {
			t.Fatal("Release without an epoch succeeded")
		}
		if _, err := s.Load(ctx, 6); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Release without an epoch wrote: %v", err)
		}
	})

	t.Run("concurrent Acquires of one player: exactly one wins", func(t *testing.T) {
		s := b.Open(t)
		owners := []store.Owner{start(t, s, "a").Owner, start(t, s, "b").Owner, start(t, s, "c").Owner}
		for id := uint64(1); id <= 20; id++ {
			if id == 11 { // the second half contends for players saved before
				for p := uint64(11); p <= 20; p++ {
					must(t, s.Save(ctx, []store.Record{{ID: p, Version: 1, Data: []byte("saved")}}))
				}
			}
			var wg sync.WaitGroup
			recs := make([]store.Record, len(owners))
			errs := make([]error, len(owners))
			for i, o := range owners {
				wg.Add(1)
				go func() {
					defer wg.Done()
					recs[i], errs[i] = s.Acquire(ctx, id, o)
				}()
			}
			wg.Wait()
			winner := -1
			for i, err := range errs {
				if err == nil {
					if winner >= 0 {
						t.Fatalf("player %d: both %v and %v acquired it", id, owners[winner], owners[i])
					}
					winner = i
				}
			}
			if winner < 0 {
				t.Fatalf("player %d: nobody acquired it: %v", id, errs)
			}
			for i, err := range errs {
				var oe *store.OwnedError
				if i != winner && (!errors.As(err, &oe) || oe.Owner != owners[winner]) {
					t.Fatalf("player %d: loser %v got %v, want *OwnedError naming %v", id, owners[i], err, owners[winner])
				}
			}
			expectOwner(t, s, id, owners[winner], recs[winner].Epoch)
		}
	})

	t.Run("a save racing an Acquire is either in the new owner's record or fenced", func(t *testing.T) {
		s := b.Open(t)
		a := start(t, s, "a")
		e := acquire(t, s, 1, a.Owner).Epoch
		type saved struct {
			version uint64
			data    string
		}
		acquired := make(chan struct{})
		last := make(chan saved, 1)
		errc := make(chan error, 1)
		go func() {
			var ok saved
			for i := 0; ; i++ {
				var after bool // this save begins after the Acquire returned
				select {
				case <-acquired:
					after = true
				default:
				}
				recs := []store.Record{{ID: 1, Epoch: e, Data: fmt.Appendf(nil, "save %d", i)}}
				err := s.Save(ctx, recs)
				switch {
				case errors.Is(err, store.ErrFenced):
					last <- ok
					return
				case err != nil:
					errc <- err
					return
				case after:
					errc <- fmt.Errorf("save %d, begun after the take-over, was committed as version %d", i, recs[0].Version)
					return
				}
				ok = saved{recs[0].Version, string(recs[0].Data)}
			}
		}()
		poll(t, "the first saves", func() (bool, error) {
			r, err := s.Load(ctx, 1)
			if errors.Is(err, store.ErrNotFound) {
				return false, nil
			}
			return err == nil && r.Version >= 3, err
		})
		rec := acquire(t, s, 1, start(t, s, "a").Owner)
		close(acquired)
		select {
		case got := <-last:
			if got.version != rec.Version || got.data != string(rec.Data) {
				t.Fatalf("the old owner's last committed save is version %d %q, the new owner acquired version %d %q",
					got.version, got.data, rec.Version, rec.Data)
			}
		case err := <-errc:
			t.Fatal(err)
		}
		expectRecord(t, s, 1, rec.Version, string(rec.Data))
	})

	t.Run("the store's ID is stable and its own", func(t *testing.T) {
		s := b.Open(t)
		id, err := s.ID(ctx)
		if err != nil || id == "" {
			t.Fatalf("ID() = %q, %v", id, err)
		}
		if again, err := s.ID(ctx); err != nil || again != id {
			t.Fatalf("ID() = %q then %q, %v", id, again, err)
		}
		s = b.Reopen(t, s)
		if again, err := s.ID(ctx); err != nil || again != id {
			t.Fatalf("ID() = %q, after reopening %q, %v", id, again, err)
		}
		if other, err := b.Open(t).ID(ctx); err != nil || other == id {
			t.Fatalf("two stores' IDs: %q and %q, %v", id, other, err)
		}
	})
}

func start(t *testing.T, s store.Store, node string) store.Lease {
	t.Helper()
	l, err := s.StartNode(context.Background(), node, long)
	if err != nil {
		t.Fatalf("StartNode(%q): %v", node, err)
	}
	return l
}

func acquire(t *testing.T, s store.Store, id uint64, o store.Owner) store.Record {
	t.Helper()
	rec, err := s.Acquire(context.Background(), id, o)
	if err != nil {
		t.Fatalf("Acquire(%d, %v): %v", id, o, err)
	}
	if rec.ID != id || rec.Epoch == 0 {
		t.Fatalf("Acquire(%d, %v) = %+v", id, o, rec)
	}
	expectOwner(t, s, id, o, rec.Epoch)
	return rec
}

// acquireNext acquires and checks that the epoch grew past prev.
func acquireNext(t *testing.T, s store.Store, id uint64, o store.Owner, prev uint64) uint64 {
	t.Helper()
	e := acquire(t, s, id, o).Epoch
	if e <= prev {
		t.Fatalf("Acquire(%d, %v): epoch %d after %d, want it to grow", id, o, e, prev)
	}
	return e
}

func renewErr(s store.Store, o store.Owner) error {
	_, err := s.RenewLease(context.Background(), o, long)
	return err
}

func expectOwner(t *testing.T, s store.Store, id uint64, o store.Owner, epoch uint64) {
	t.Helper()
	got, e, err := s.OwnerOf(context.Background(), id)
	if err != nil || got != o || e != epoch {
		t.Fatalf("OwnerOf(%d) = %v epoch %d, %v; want %v epoch %d", id, got, e, err, o, epoch)
	}
}

func expectFenced(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrFenced) {
		t.Fatalf("%s: %v, want ErrFenced", what, err)
	}
}

// expectRefused checks a save's refusal: the fenced and the stale IDs.
func expectRefused(t *testing.T, what string, err error, fenced, stale []uint64) {
	t.Helper()
	var fe *store.FencedError
	var se *store.StaleError
	var gotFenced, gotStale []uint64
	if errors.As(err, &fe) {
		gotFenced = fe.IDs
	}
	if errors.As(err, &se) {
		gotStale = se.IDs
	}
	if fmt.Sprint(fenced) != fmt.Sprint(gotFenced) || fmt.Sprint(stale) != fmt.Sprint(gotStale) ||
		errors.Is(err, store.ErrFenced) != (fenced != nil) || errors.Is(err, store.ErrStale) != (stale != nil) {
		t.Fatalf("%s: %v; want fenced %v and stale %v", what, err, fenced, stale)
	}
}

func expectVersions(t *testing.T, recs []store.Record, versions ...uint64) {
	t.Helper()
	for i, r := range recs {
		if r.Version != versions[i] {
			t.Fatalf("record %d (player %d) has version %d after the save, want %d", i, r.ID, r.Version, versions[i])
		}
	}
}

func expectLeases(t *testing.T, s store.Store, want ...store.Lease) {
	t.Helper()
	got := expectLeaseCount(t, s, len(want))
	for i := range want {
		if got[i].Owner != want[i].Owner || got[i].Ended != want[i].Ended || !got[i].Expires.Equal(want[i].Expires) {
			t.Fatalf("Leases() = %+v, want %+v", got, want)
		}
	}
}

func expectLeaseCount(t *testing.T, s store.Store, n int) []store.Lease {
	t.Helper()
	ls, err := s.Leases(context.Background())
	if err != nil || len(ls) != n {
		t.Fatalf("Leases() = %+v, %v; want %d", ls, err, n)
	}
	return ls
}

// poll calls cond until it reports done, failing on an error or after a
// minute (generous: it waits for a store's clock, never for a fixed time).
func poll(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		done, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen in a minute", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
