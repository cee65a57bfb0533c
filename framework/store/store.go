// Package store persists accounts and player records. One Store interface
// has two backends that pass the same contract tests: bbolt (embedded, the
// default) and PostgreSQL (for clusters).
//
// Player records are versioned: every save carries a version greater than
// the stored one, and a save with a stale version is refused, so an old node
// can never overwrite newer data. Records are checksummed; a record that does
// not match its checksum is reported as corrupt, never silently replaced.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Errors returned by stores; test with errors.Is.
var (
	ErrNotFound = errors.New("store: not found")
	ErrExists   = errors.New("store: already exists")
	ErrStale    = errors.New("store: stale version")
	ErrCorrupt  = errors.New("store: corrupt record")
	ErrClosed   = errors.New("store: closed")
)

// Account is a login identity.
type Account struct {
	ID           uint64 // also the player ID
	Name         string
	PasswordHash []byte
	Created      time.Time
}

// Record is a player's saved state: an opaque blob (msgpack, written by the
// game) with a version that only grows.
type Record struct {
	ID      uint64
	Version uint64
	Data    []byte
}

// StaleError lists records a save refused because the store already holds
// that version or a newer one.
type StaleError struct {
	IDs []uint64
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("store: %d record(s) carry a version not newer than the stored one: %v", len(e.IDs), e.IDs)
}

// Is matches ErrStale.
func (e *StaleError) Is(target error) bool { return target == ErrStale }

// CorruptError names a record whose bytes fail their checksum or framing.
type CorruptError struct {
	ID     uint64
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("store: player %d record is corrupt: %s", e.ID, e.Reason)
}

// Is matches ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// Store is implemented by the bbolt and PostgreSQL backends. All methods are
// safe for concurrent use.
type Store interface {
	// CreateAccount stores a new account with a fresh ID; ErrExists if the
	// name is taken.
	CreateAccount(ctx context.Context, name string, passwordHash []byte) (Account, error)
	// Account looks an account up by name; ErrNotFound if absent.
	Account(ctx context.Context, name string) (Account, error)
	// Load returns a player's record; ErrNotFound if the player has never
	// been saved, a *CorruptError if the stored bytes are damaged.
	Load(ctx context.Context, id uint64) (Record, error)
	// Save durably commits a batch in one transaction. A record whose
	// version is not newer than the stored one is skipped; the others are
	// committed and the skipped IDs are returned in a *StaleError. Any other
	// error means nothing was committed.
	Save(ctx context.Context, recs []Record) error
	// SaveAll commits records all or nothing (a trade between two players):
	// if any record is stale, nothing is written and a *StaleError is
	// returned.
	SaveAll(ctx context.Context, recs []Record) error
	// Close releases the store; pending calls finish first.
	Close() error
}
