package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/citadel-go/citadel/framework/store"
)

// The keeper renews its lease while the node lives; once a newer
// incarnation of the node starts, the store refuses the renewal and the
// keeper is fenced for good; End frees the node's players at once.
func TestLeaseKeeper(t *testing.T) {
	ctx := context.Background()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	k, err := store.StartLease(ctx, st, "game-1", store.LeaseConfig{TTL: time.Second, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !k.Valid() {
		t.Fatal("a new lease is not valid")
	}
	if _, err := st.Acquire(ctx, 7, k.Owner()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // longer than the TTL: renewals keep it
	if !k.Valid() {
		t.Fatal("a renewed lease ran out")
	}
	if _, err := st.Acquire(ctx, 7, store.Owner{Node: "game-2", Incarnation: 1}); err == nil {
		t.Fatal("another node took a player of a live lease")
	}
	if _, err := st.StartNode(ctx, "game-1", time.Hour); err != nil { // the node restarted elsewhere
		t.Fatal(err)
	}
	select {
	case <-k.Fenced():
	case <-time.After(10 * time.Second):
		t.Fatal("the keeper was not fenced after a newer incarnation started")
	}
	if k.Valid() {
		t.Fatal("a fenced lease is valid")
	}
	if err := k.End(ctx); err != nil {
		t.Fatal(err)
	}

	k2, err := store.StartLease(ctx, st, "game-3", store.LeaseConfig{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Acquire(ctx, 8, k2.Owner()); err != nil {
		t.Fatal(err)
	}
	if err := k2.End(ctx); err != nil {
		t.Fatal(err)
	}
	other, err := st.StartNode(ctx, "game-4", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Acquire(ctx, 8, other.Owner); err != nil {
		t.Fatalf("a player of an ended lease: %v", err)
	}
}

// A node name is one process at a time: starting a node whose lease
// another process keeps renewing is refused, naming the cause; after a
// crash (no renewals) the new incarnation waits for the old lease to run
// out; after a clean stop it starts at once.
func TestStartLeaseRefusesARunningNodeName(t *testing.T) {
	ctx := context.Background()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := store.LeaseConfig{TTL: time.Second, Interval: 100 * time.Millisecond}
	running, err := store.StartLease(ctx, st, "game-1", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.StartLease(ctx, st, "game-1", cfg); !errors.Is(err, store.ErrNodeRunning) {
		t.Fatalf("a second process under a running node's name: %v, want ErrNodeRunning", err)
	}
	select {
	case <-running.Fenced():
		t.Fatal("the running node was superseded by the refused one")
	default:
	}
	if err := running.End(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := store.StartLease(ctx, st, "game-1", cfg)
	if err != nil {
		t.Fatalf("after a clean stop: %v", err)
	}
	defer again.End(ctx)

	// A crash: a lease nobody renews.
	crashed, err := st.StartNode(ctx, "game-2", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	k, err := store.StartLease(ctx, st, "game-2", cfg)
	if err != nil {
		t.Fatalf("after a crash: %v", err)
	}
	defer k.End(ctx)
	if ls, _ := st.Leases(ctx); time.Now().Before(crashed.Expires) {
		t.Fatalf("the new incarnation started before the crashed one's lease ran out: %+v", ls)
	}
}
