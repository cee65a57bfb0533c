package store

import (
	"errors"
	"fmt"
	"time"
)

// The ownership rules, shared by both backends: each backend reads the
// player's claim and the leases in one transaction (by its own clock) and
// lets these functions decide.

// maxNodeName bounds node names (they are keys and appear in every claim).
const maxNodeName = 255

// nodeState is a node's newest incarnation and whether its lease holds at
// the store's now.
type nodeState struct {
	lease Lease // zero Incarnation: the node never started
	live  bool  // not ended and not expired
}

// claim is a player's ownership: its epoch counts Acquires (0: never
// acquired).
type claim struct {
	owner    Owner
	epoch    uint64
	released bool
}

// holds returns ErrFenced, with the reason, unless o is its node's newest
// incarnation and its lease is live.
func holds(o Owner, n nodeState) error {
	switch {
	case n.lease.Incarnation == 0 || n.lease.Incarnation < o.Incarnation:
		return fmt.Errorf("store: %s was never issued (StartNode issues incarnations): %w", o, ErrFenced)
	case n.lease.Incarnation > o.Incarnation:
		return fmt.Errorf("store: %s is superseded by incarnation %d: %w", o, n.lease.Incarnation, ErrFenced)
	case n.lease.Ended:
		return fmt.Errorf("store: the lease of %s has ended: %w", o, ErrFenced)
	case !n.live:
		return fmt.Errorf("store: the lease of %s expired at %s and is never revived; start a new incarnation: %w",
			o, n.lease.Expires.UTC().Format(time.RFC3339Nano), ErrFenced)
	}
	return nil
}

// mayAcquire decides whether o may take player id from its current claim;
// holder is the newest incarnation of the claim owner's node. endHolder
// reports a take-over that relies on the holder's lease having expired: the
// backend ends that lease in the same transaction, so a renewal racing the
// take-over cannot revive it, whatever the clocks say later.
func mayAcquire(id uint64, o Owner, cur claim, holder nodeState) (endHolder bool, err error) {
	switch {
	case cur.epoch == 0 || cur.released || cur.owner == o:
		return false, nil
	case holder.lease.Incarnation != cur.owner.Incarnation || holder.lease.Ended:
		return false, nil // superseded by a restart, or stopped
	case !holder.live:
		return true, nil
	}
	return false, &OwnedError{ID: id, Owner: cur.owner, Expires: holder.lease.Expires}
}

func checkStart(node string, ttl time.Duration) error {
	if node == "" || len(node) > maxNodeName {
		return fmt.Errorf("store: node name %q must be 1 to %d bytes", node, maxNodeName)
	}
	return checkTTL(ttl)
}

func checkTTL(ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("store: lease TTL %v must be positive", ttl)
	}
	return nil
}

func checkRelease(rec Record) error {
	if rec.Epoch == 0 {
		return fmt.Errorf("store: Release of player %d needs the epoch Acquire returned", rec.ID)
	}
	return nil
}

// refusal reports the records a save skipped: nil, a *StaleError, a
// *FencedError, or both joined.
func refusal(stale, fenced []uint64) error {
	switch {
	case len(stale) > 0 && len(fenced) > 0:
		return errors.Join(&FencedError{IDs: fenced}, &StaleError{IDs: stale})
	case len(stale) > 0:
		return &StaleError{IDs: stale}
	case len(fenced) > 0:
		return &FencedError{IDs: fenced}
	}
	return nil
}
