// Package store persists accounts and player records. One Store interface
// has two backends that pass the same contract tests: bbolt (embedded, the
// default) and PostgreSQL (for clusters).
//
// Player records are versioned and checksummed; a record that does not match
// its checksum is reported as corrupt, never silently replaced.
//
// The store is also the arbiter of which node owns a player. Every node start
// gets an incarnation and a lease (StartNode, RenewLease); a node activates a
// player with Acquire, which increments the player's epoch (a fencing token);
// a record that carries an epoch (Record.Epoch != 0) is written only while
// that epoch is still the player's current one, and the store, not the
// writer, picks its version. A node that lost a player (its lease expired,
// it restarted, another node took the player over) can therefore never
// overwrite what the new owner writes.
//
// Records without an epoch keep the older scheme: the writer picks the
// version and a save not newer than the stored one is refused as stale.
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
	// ErrFenced: the epoch or incarnation a call carries is no longer the
	// current one; the caller lost the player (or its lease) and must stop
	// acting for it.
	ErrFenced = errors.New("store: fenced")
	// ErrOwned: Acquire found the player held by another live incarnation.
	ErrOwned = errors.New("store: owned by a live node")
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
	// Epoch is the ownership epoch the writer acquired (Acquire). Non-zero,
	// a save is written only while it is the player's current epoch and the
	// store sets Version; zero, the writer's Version is checked against the
	// stored one instead (the older scheme).
	Epoch uint64
}

// Owner names one node incarnation.
type Owner struct {
	Node        string
	Incarnation uint64
}

func (o Owner) String() string {
	return fmt.Sprintf("node %q incarnation %d", o.Node, o.Incarnation)
}

// Lease is a node incarnation's claim to be alive: while it holds (not
// ended, not expired), the players it acquired cannot be taken from it.
type Lease struct {
	Owner
	Expires time.Time // by the store's clock (PostgreSQL's, or the bbolt process's)
	// Ended: over for good, by EndLease (a clean stop) or by an Acquire
	// that took a player over after the lease expired.
	Ended bool
}

// String keeps the expiry in logs (Owner's String would hide it).
func (l Lease) String() string {
	end := ""
	if l.Ended {
		end = ", ended"
	}
	return fmt.Sprintf("%s, lease until %s%s", l.Owner, l.Expires.UTC().Format(time.RFC3339Nano), end)
}

// OwnedError is Acquire's refusal: a live incarnation holds the player.
type OwnedError struct {
	ID      uint64
	Owner   Owner
	Expires time.Time // the holder's lease; renewed while the holder lives
}

func (e *OwnedError) Error() string {
	return fmt.Sprintf("store: player %d is owned by %s, whose lease runs until %s; it can be acquired once that node releases it, stops, restarts or lets its lease expire",
		e.ID, e.Owner, e.Expires.UTC().Format(time.RFC3339Nano))
}

// Is matches ErrOwned.
func (e *OwnedError) Is(target error) bool { return target == ErrOwned }

// FencedError lists records a save refused because the epoch they carry is
// no longer the player's current one (another Acquire, or a Release).
type FencedError struct {
	IDs []uint64
}

func (e *FencedError) Error() string {
	return fmt.Sprintf("store: %d record(s) carry an epoch that is no longer current (the player was acquired elsewhere or released): %v; stop acting for these players", len(e.IDs), e.IDs)
}

// Is matches ErrFenced.
func (e *FencedError) Is(target error) bool { return target == ErrFenced }

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
	// Save durably commits a batch in one transaction. A record with an
	// Epoch is written only if that is still the player's epoch (and the
	// player not released); its version is the stored one + 1 (1 for a new
	// player), written back into recs[i].Version once committed. A record
	// without one is written only if its version is newer than the stored
	// one. Refused records are skipped, the others committed, and the
	// skipped IDs returned in a *FencedError or a *StaleError (both, joined,
	// if both kinds were refused). Any other error means nothing was
	// committed and no version was written back.
	Save(ctx context.Context, recs []Record) error
	// SaveAll commits records all or nothing (a trade between two players):
	// if any record is fenced or stale, nothing is written and the refused
	// IDs are returned as Save returns them.
	SaveAll(ctx context.Context, recs []Record) error

	// StartNode issues the next incarnation of node, greater than every
	// earlier one (the counter survives restarts of the store), with a lease
	// until now+ttl. A newer incarnation supersedes the older ones: their
	// leases can no longer be renewed and their players can be acquired.
	StartNode(ctx context.Context, node string, ttl time.Duration) (Lease, error)
	// RenewLease extends o's lease to now+ttl. ErrFenced if o is not the
	// newest incarnation of its node, or its lease ended or expired: an
	// expired lease is never revived, its players may have moved.
	RenewLease(ctx context.Context, o Owner, ttl time.Duration) (Lease, error)
	// EndLease ends o's lease (a clean stop): its players can be acquired at
	// once. Ending an ended or superseded lease does nothing; ErrNotFound if
	// o was never issued.
	EndLease(ctx context.Context, o Owner) error
	// Leases lists the newest incarnation of every node with its lease,
	// ordered by node name (bytewise).
	Leases(ctx context.Context) ([]Lease, error)
	// Acquire makes o the owner of player id and increments the player's
	// epoch, in one transaction, and returns the player's record with that
	// Epoch (Version 0 and nil Data if never saved). Allowed when nobody
	// owns the player, o owns it already, it was released, or its owner's
	// lease ended or expired (a take-over of an expired lease ends it, so
	// it cannot be renewed) or a newer incarnation of the owner's node
	// exists; otherwise an *OwnedError names the holder. ErrFenced if o
	// itself is not a live, newest incarnation. A *CorruptError (nothing
	// changed) if the stored record is damaged.
	Acquire(ctx context.Context, id uint64, o Owner) (Record, error)
	// Release saves rec (unless rec.Data is nil; the version is the stored
	// one + 1) and gives up ownership, in one transaction, only if rec.Epoch
	// is still the player's epoch and it is not released already (a
	// *FencedError otherwise, and nothing is written). The next Acquire
	// needs no wait for a lease to expire.
	Release(ctx context.Context, rec Record) error
	// OwnerOf reports who owns player id and the player's epoch (the zero
	// Owner if nobody ever acquired it or it was released).
	OwnerOf(ctx context.Context, id uint64) (Owner, uint64, error)
	// ID is the store's identity, random, created with the store and stable
	// afterwards. Nodes announce it so that nodes on different stores (two
	// bbolt files) notice and refuse to run together.
	ID(ctx context.Context) (string, error)
	// Close releases the store; pending calls finish first.
	Close() error
}
