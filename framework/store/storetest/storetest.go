// Package storetest is the contract every store.Store backend must pass.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/citadel-go/citadel/framework/store"
)

// Backend opens a fresh, empty store for one subtest, reopens it (what a
// restart of the process sees), and corrupts the stored bytes of a player
// record in it (to check that corruption is reported, not hidden).
type Backend struct {
	Open func(t *testing.T) store.Store
	// Reopen closes s and opens the same store (file, database) again.
	Reopen  func(t *testing.T, s store.Store) store.Store
	Corrupt func(t *testing.T, s store.Store, id uint64)
}

// Run runs the contract suite.
func Run(t *testing.T, b Backend) {
	ctx := context.Background()
	t.Run("accounts", func(t *testing.T) {
		s := b.Open(t)
		a, err := s.CreateAccount(ctx, "ada", []byte("hash-a"))
		if err != nil {
			t.Fatal(err)
		}
		if a.ID == 0 || a.Name != "ada" || a.Created.IsZero() {
			t.Fatalf("created %+v", a)
		}
		b2, err := s.CreateAccount(ctx, "bob", []byte("hash-b"))
		if err != nil || b2.ID == a.ID {
			t.Fatalf("second account %+v %v: IDs must differ", b2, err)
		}
		if _, err := s.CreateAccount(ctx, "ada", []byte("x")); !errors.Is(err, store.ErrExists) {
			t.Fatalf("duplicate name: %v", err)
		}
		got, err := s.Account(ctx, "ada")
		if err != nil || got.ID != a.ID || string(got.PasswordHash) != "hash-a" || !got.Created.Equal(a.Created) {
			t.Fatalf("Account(ada) = %+v, %v; want %+v", got, err, a)
		}
		if _, err := s.Account(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing account: %v", err)
		}
	})

	t.Run("concurrent account creation assigns unique IDs", func(t *testing.T) {
		s := b.Open(t)
		var wg sync.WaitGroup
		ids := make(chan uint64, 40)
		for i := 0; i < 40; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				a, err := s.CreateAccount(ctx, fmt.Sprintf("p%d", i), nil)
				if err != nil {
					t.Error(err)
					return
				}
				ids <- a.ID
			}(i)
		}
		wg.Wait()
		close(ids)
		seen := map[uint64]bool{}
		for id := range ids {
			if seen[id] {
				t.Fatalf("ID %d assigned twice", id)
			}
			seen[id] = true
		}
	})

	t.Run("records are versioned", func(t *testing.T) {
		s := b.Open(t)
		if _, err := s.Load(ctx, 7); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unsaved player: %v", err)
		}
		must(t, s.Save(ctx, []store.Record{{ID: 7, Version: 1, Data: []byte("v1")}, {ID: 8, Version: 3, Data: []byte("b3")}}))
		expectRecord(t, s, 7, 1, "v1")
		must(t, s.Save(ctx, []store.Record{{ID: 7, Version: 2, Data: []byte("v2")}}))
		expectRecord(t, s, 7, 2, "v2")

		// Stale writes are refused; the rest of the batch commits.
		err := s.Save(ctx, []store.Record{{ID: 7, Version: 2, Data: []byte("old")}, {ID: 8, Version: 4, Data: []byte("b4")}, {ID: 9, Version: 1, Data: []byte("c1")}})
		var se *store.StaleError
		if !errors.As(err, &se) || !errors.Is(err, store.ErrStale) || len(se.IDs) != 1 || se.IDs[0] != 7 {
			t.Fatalf("stale save: %v", err)
		}
		expectRecord(t, s, 7, 2, "v2")
		expectRecord(t, s, 8, 4, "b4")
		expectRecord(t, s, 9, 1, "c1")
		if err := s.Save(ctx, []store.Record{{ID: 8, Version: 1, Data: []byte("ancient")}}); !errors.Is(err, store.ErrStale) {
			t.Fatalf("older version: %v", err)
		}
		expectRecord(t, s, 8, 4, "b4")

		// The same player twice in a batch: the newer version wins whatever the order.
		err = s.Save(ctx, []store.Record{{ID: 9, Version: 3, Data: []byte("c3")}, {ID: 9, Version: 2, Data: []byte("c2")}})
		if !errors.Is(err, store.ErrStale) {
			t.Fatalf("out-of-order duplicate in batch: %v", err)
		}
		expectRecord(t, s, 9, 3, "c3")
		must(t, s.Save(ctx, nil))
	})

	t.Run("SaveAll is all or nothing", func(t *testing.T) {
		s := b.Open(t)
		must(t, s.Save(ctx, []store.Record{{ID: 1, Version: 5, Data: []byte("a5")}, {ID: 2, Version: 5, Data: []byte("b5")}}))
		must(t, s.SaveAll(ctx, []store.Record{{ID: 1, Version: 6, Data: []byte("a6")}, {ID: 2, Version: 6, Data: []byte("b6")}}))
		expectRecord(t, s, 1, 6, "a6")
		expectRecord(t, s, 2, 6, "b6")
		err := s.SaveAll(ctx, []store.Record{{ID: 1, Version: 7, Data: []byte("a7")}, {ID: 2, Version: 6, Data: []byte("stale")}})
		var se *store.StaleError
		if !errors.As(err, &se) || len(se.IDs) != 1 || se.IDs[0] != 2 {
			t.Fatalf("SaveAll with one stale record: %v", err)
		}
		expectRecord(t, s, 1, 6, "a6") // untouched
		expectRecord(t, s, 2, 6, "b6")
	})

	t.Run("large and empty blobs", func(t *testing.T) {
		s := b.Open(t)
		big := make([]byte, 1<<20)
		for i := range big {
			big[i] = byte(i * 7)
		}
		must(t, s.Save(ctx, []store.Record{{ID: 1, Version: 1, Data: big}, {ID: 2, Version: 1, Data: []byte{}}}))
		r, err := s.Load(ctx, 1)
		if err != nil || len(r.Data) != len(big) || r.Data[12345] != big[12345] {
			t.Fatalf("big record: %d bytes, %v", len(r.Data), err)
		}
		expectRecord(t, s, 2, 1, "")
	})

	t.Run("corruption is reported", func(t *testing.T) {
		s := b.Open(t)
		must(t, s.Save(ctx, []store.Record{{ID: 5, Version: 1, Data: []byte("healthy player state")}}))
		b.Corrupt(t, s, 5)
		_, err := s.Load(ctx, 5)
		var ce *store.CorruptError
		if !errors.As(err, &ce) || !errors.Is(err, store.ErrCorrupt) || ce.ID != 5 {
			t.Fatalf("corrupt record: got %v", err)
		}
		// Acquire refuses it too, and takes nothing.
		l, err := s.StartNode(ctx, "a", time.Hour)
		must(t, err)
		if _, err := s.Acquire(ctx, 5, l.Owner); !errors.As(err, &ce) || ce.ID != 5 {
			t.Fatalf("Acquire of a corrupt record: %v", err)
		}
		if o, e, err := s.OwnerOf(ctx, 5); err != nil || o != (store.Owner{}) || e != 0 {
			t.Fatalf("after a refused Acquire, OwnerOf(5) = %v epoch %d, %v", o, e, err)
		}
	})

	t.Run("closed store refuses calls", func(t *testing.T) {
		s := b.Open(t)
		must(t, s.Close())
		if _, err := s.Load(ctx, 1); !errors.Is(err, store.ErrClosed) {
			t.Fatalf("Load after Close: %v", err)
		}
		if err := s.Save(ctx, []store.Record{{ID: 1, Version: 1}}); !errors.Is(err, store.ErrClosed) {
			t.Fatalf("Save after Close: %v", err)
		}
		if _, err := s.StartNode(ctx, "a", time.Minute); !errors.Is(err, store.ErrClosed) {
			t.Fatalf("StartNode after Close: %v", err)
		}
		if _, err := s.Acquire(ctx, 1, store.Owner{Node: "a", Incarnation: 1}); !errors.Is(err, store.ErrClosed) {
			t.Fatalf("Acquire after Close: %v", err)
		}
		must(t, s.Close())
	})

	runOwnership(t, b)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func expectRecord(t *testing.T, s store.Store, id, version uint64, data string) {
	t.Helper()
	r, err := s.Load(context.Background(), id)
	if err != nil {
		t.Fatalf("Load(%d): %v", id, err)
	}
	if r.ID != id || r.Version != version || string(r.Data) != data {
		t.Fatalf("Load(%d) = {ID %d, Version %d, Data %q}, want version %d data %q", id, r.ID, r.Version, r.Data, version, data)
	}
}
