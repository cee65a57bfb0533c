package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketAccounts = []byte("accounts")
	bucketPlayers  = []byte("players")
	bucketOwners   = []byte("owners") // player ID -> claim
	bucketNodes    = []byte("nodes")  // node name -> newest incarnation and its lease
	bucketMeta     = []byte("meta")   // metaID -> the store's identity
	metaID         = []byte("id")
)

// recordHeader: version (8) | crc32c of data (4) | data length (4).
const recordHeader = 16

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Bolt is the embedded bbolt backend: one file, one process. Leases are
// timed by the process's clock. Ownership checks and the writes they guard
// share one bbolt transaction, which bbolt runs one at a time.
type Bolt struct {
	db     *bolt.DB
	mu     sync.RWMutex // Close waits for calls in progress
	closed bool
}

var _ Store = (*Bolt)(nil)

// OpenBolt opens (or creates) the store file at path.
func OpenBolt(path string) (*Bolt, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("store: create directory for %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("store: %s is locked by another process (bbolt allows one process per file): %w", path, err)
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// A lone Acquire waits at most this long for company (bbolt's default
	// is 10ms): calls that arrive while a commit is under way still share
	// the next one.
	db.MaxBatchDelay = time.Millisecond
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketAccounts, bucketPlayers, bucketOwners, bucketNodes, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if meta := tx.Bucket(bucketMeta); meta.Get(metaID) == nil {
			return meta.Put(metaID, []byte(rand.Text()))
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: initialise %s: %w", path, err)
	}
	return &Bolt{db: db}, nil
}

func (s *Bolt) enter() error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (s *Bolt) leave() { s.mu.RUnlock() }

type storedAccount struct {
	ID           uint64
	Name         string
	PasswordHash []byte
	Created      int64
}

// CreateAccount implements Store.
func (s *Bolt) CreateAccount(ctx context.Context, name string, hash []byte) (Account, error) {
	if err := s.enter(); err != nil {
		return Account{}, err
	}
	defer s.leave()
	var acc Account
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAccounts)
		if b.Get([]byte(name)) != nil {
			return fmt.Errorf("store: account %q: %w", name, ErrExists)
		}
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		acc = Account{ID: id, Name: name, PasswordHash: hash, Created: time.Now().UTC().Truncate(time.Millisecond)}
		v, err := msgpack.Marshal(&storedAccount{ID: id, Name: name, PasswordHash: hash, Created: acc.Created.UnixMilli()})
		if err != nil {
			return err
		}
		return b.Put([]byte(name), v)
	})
	return acc, err
}

// Account implements Store.
func (s *Bolt) Account(ctx context.Context, name string) (Account, error) {
	if err := s.enter(); err != nil {
		return Account{}, err
	}
	defer s.leave()
	var acc Account
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketAccounts).Get([]byte(name))
		if v == nil {
			return fmt.Errorf("store: account %q: %w", name, ErrNotFound)
		}
		var sa storedAccount
		if err := msgpack.Unmarshal(v, &sa); err != nil {
			return fmt.Errorf("store: account %q is corrupt: %v: %w", name, err, ErrCorrupt)
		}
		acc = Account{ID: sa.ID, Name: sa.Name, PasswordHash: sa.PasswordHash, Created: time.UnixMilli(sa.Created).UTC()}
		return nil
	})
	return acc, err
}

func playerKey(id uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, id)
	return k
}

// encodeRecord frames data with its version and a CRC-32C checksum.
func encodeRecord(r Record) []byte {
	v := make([]byte, recordHeader+len(r.Data))
	binary.BigEndian.PutUint64(v[0:8], r.Version)
	binary.BigEndian.PutUint32(v[8:12], crc32.Checksum(r.Data, castagnoli))
	binary.BigEndian.PutUint32(v[12:16], uint32(len(r.Data)))
	copy(v[recordHeader:], r.Data)
	return v
}

// decodeRecord checks framing and checksum; data is copied out of v.
func decodeRecord(id uint64, v []byte) (Record, error) {
	if len(v) < recordHeader {
		return Record{}, &CorruptError{ID: id, Reason: fmt.Sprintf("%d bytes is shorter than the %d-byte header", len(v), recordHeader)}
	}
	n := binary.BigEndian.Uint32(v[12:16])
	if int(n) != len(v)-recordHeader {
		return Record{}, &CorruptError{ID: id, Reason: fmt.Sprintf("header says %d data bytes, found %d", n, len(v)-recordHeader)}
	}
	data := v[recordHeader:]
	if crc32.Checksum(data, castagnoli) != binary.BigEndian.Uint32(v[8:12]) {
		return Record{}, &CorruptError{ID: id, Reason: "checksum mismatch"}
	}
	return Record{ID: id, Version: binary.BigEndian.Uint64(v[0:8]), Data: bytes.Clone(data)}, nil
}

func storedVersion(b *bolt.Bucket, id uint64) (uint64, bool) {
	v := b.Get(playerKey(id))
	if len(v) < 8 {
		return 0, v != nil
	}
	return binary.BigEndian.Uint64(v[0:8]), true
}

// Load implements Store.
func (s *Bolt) Load(ctx context.Context, id uint64) (Record, error) {
	if err := s.enter(); err != nil {
		return Record{}, err
	}
	defer s.leave()
	var rec Record
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketPlayers).Get(playerKey(id))
		if v == nil {
			return fmt.Errorf("store: player %d: %w", id, ErrNotFound)
		}
		var err error
		rec, err = decodeRecord(id, v)
		return err
	})
	return rec, err
}

// Save implements Store.
func (s *Bolt) Save(ctx context.Context, recs []Record) error {
	return s.save(ctx, recs, false)
}

// SaveAll implements Store.
func (s *Bolt) SaveAll(ctx context.Context, recs []Record) error {
	return s.save(ctx, recs, true)
}

func (s *Bolt) save(ctx context.Context, recs []Record, all bool) error {
	if len(recs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	var stale, fenced []uint64
	var versions []uint64 // the versions this save picked for records with an epoch, by index
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPlayers)
		var owners *bolt.Bucket
		for i, r := range recs {
			// Get sees this transaction's own earlier puts, so a player named
			// twice in a batch is checked against the first write.
			if r.Epoch == 0 {
				if cur, ok := storedVersion(b, r.ID); ok && cur >= r.Version {
					stale = append(stale, r.ID)
					continue
				}
			} else {
				if owners == nil {
					owners = tx.Bucket(bucketOwners)
					versions = make([]uint64, len(recs))
				}
				c, err := readClaim(owners, r.ID)
				if err != nil {
					return err
				}
				if c.epoch != r.Epoch || c.released {
					fenced = append(fenced, r.ID)
					continue
				}
				cur, _ := storedVersion(b, r.ID)
				r.Version = cur + 1
				versions[i] = r.Version
			}
			if err := b.Put(playerKey(r.ID), encodeRecord(r)); err != nil {
				return err
			}
		}
		if all {
			return refusal(stale, fenced) // an error rolls the writes back
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, v := range versions {
		if v != 0 {
			recs[i].Version = v
		}
	}
	return refusal(stale, fenced)
}

// claim value: epoch (8) | incarnation (8) | released (1) | node name.
const claimHeader = 17

func encodeClaim(c claim) []byte {
	v := make([]byte, claimHeader+len(c.owner.Node))
	binary.BigEndian.PutUint64(v[0:8], c.epoch)
	binary.BigEndian.PutUint64(v[8:16], c.owner.Incarnation)
	if c.released {
		v[16] = 1
	}
	copy(v[claimHeader:], c.owner.Node)
	return v
}

// readClaim returns the zero claim for a player never acquired.
func readClaim(b *bolt.Bucket, id uint64) (claim, error) {
	v := b.Get(playerKey(id))
	if v == nil {
		return claim{}, nil
	}
	if len(v) < claimHeader {
		return claim{}, fmt.Errorf("store: ownership of player %d is %d bytes, shorter than %d: %w", id, len(v), claimHeader, ErrCorrupt)
	}
	return claim{
		owner:    Owner{Node: string(v[claimHeader:]), Incarnation: binary.BigEndian.Uint64(v[8:16])},
		epoch:    binary.BigEndian.Uint64(v[0:8]),
		released: v[16] == 1,
	}, nil
}

// node value: incarnation (8) | lease expiry, Unix nanoseconds (8) | ended (1).
const nodeValue = 17

func putNode(b *bolt.Bucket, l Lease) error {
	v := make([]byte, nodeValue)
	binary.BigEndian.PutUint64(v[0:8], l.Incarnation)
	binary.BigEndian.PutUint64(v[8:16], uint64(l.Expires.UnixNano()))
	if l.Ended {
		v[16] = 1
	}
	return b.Put([]byte(l.Node), v)
}

func decodeNode(name string, v []byte, now time.Time) (nodeState, error) {
	if len(v) != nodeValue {
		return nodeState{}, fmt.Errorf("store: lease of node %q is %d bytes, not %d: %w", name, len(v), nodeValue, ErrCorrupt)
	}
	exp := int64(binary.BigEndian.Uint64(v[8:16]))
	l := Lease{
		Owner:   Owner{Node: name, Incarnation: binary.BigEndian.Uint64(v[0:8])},
		Expires: time.Unix(0, exp),
		Ended:   v[16] == 1,
	}
	return nodeState{lease: l, live: !l.Ended && now.UnixNano() < exp}, nil
}

// readNode returns the zero state for a node never started.
func readNode(b *bolt.Bucket, name string, now time.Time) (nodeState, error) {
	v := b.Get([]byte(name))
	if v == nil {
		return nodeState{}, nil
	}
	return decodeNode(name, v, now)
}

// update runs fn in a write transaction of an open store.
func (s *Bolt) update(fn func(tx *bolt.Tx) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	return s.db.Update(fn)
}

// batch runs fn in a write transaction shared with concurrent callers
// (bbolt's Batch: one commit and one fsync for all of them; fn may run
// again alone if another's fails, so it must only read and write tx).
// Logins that acquire players by the thousand then take a handful of
// commits, not one each, and a lease renewal queued behind them (an
// Update of its own) waits for a few commits, not thousands: a lapsed
// lease would stop the node.
func (s *Bolt) batch(fn func(tx *bolt.Tx) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	return s.db.Batch(fn)
}

// view runs fn in a read transaction of an open store.
func (s *Bolt) view(fn func(tx *bolt.Tx) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	return s.db.View(fn)
}

// StartNode implements Store.
func (s *Bolt) StartNode(ctx context.Context, node string, ttl time.Duration) (Lease, error) {
	if err := checkStart(node, ttl); err != nil {
		return Lease{}, err
	}
	var l Lease
	err := s.update(func(tx *bolt.Tx) error {
		now := time.Now()
		b := tx.Bucket(bucketNodes)
		n, err := readNode(b, node, now)
		if err != nil {
			return err
		}
		l = Lease{Owner: Owner{Node: node, Incarnation: n.lease.Incarnation + 1}, Expires: time.Unix(0, now.Add(ttl).UnixNano())}
		return putNode(b, l)
	})
	if err != nil {
		return Lease{}, err
	}
	return l, nil
}

// RenewLease implements Store.
func (s *Bolt) RenewLease(ctx context.Context, o Owner, ttl time.Duration) (Lease, error) {
	if err := checkTTL(ttl); err != nil {
		return Lease{}, err
	}
	var l Lease
	err := s.update(func(tx *bolt.Tx) error {
		now := time.Now()
		b := tx.Bucket(bucketNodes)
		n, err := readNode(b, o.Node, now)
		if err != nil {
			return err
		}
		if err := holds(o, n); err != nil {
			return err
		}
		l = n.lease
		l.Expires = time.Unix(0, now.Add(ttl).UnixNano())
		return putNode(b, l)
	})
	if err != nil {
		return Lease{}, err
	}
	return l, nil
}

// EndLease implements Store.
func (s *Bolt) EndLease(ctx context.Context, o Owner) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNodes)
		n, err := readNode(b, o.Node, time.Now())
		if err != nil {
			return err
		}
		switch {
		case n.lease.Incarnation < o.Incarnation:
			return fmt.Errorf("store: %s was never issued: %w", o, ErrNotFound)
		case n.lease.Incarnation > o.Incarnation || n.lease.Ended:
			return nil
		}
		n.lease.Ended = true
		return putNode(b, n.lease)
	})
}

// Leases implements Store.
func (s *Bolt) Leases(ctx context.Context) ([]Lease, error) {
	var ls []Lease
	err := s.view(func(tx *bolt.Tx) error {
		now := time.Now()
		return tx.Bucket(bucketNodes).ForEach(func(k, v []byte) error {
			n, err := decodeNode(string(k), v, now)
			ls = append(ls, n.lease)
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	return ls, nil
}

// Acquire implements Store.
func (s *Bolt) Acquire(ctx context.Context, id uint64, o Owner) (Record, error) {
	var rec Record
	err := s.batch(func(tx *bolt.Tx) error {
		now := time.Now()
		nodes, owners := tx.Bucket(bucketNodes), tx.Bucket(bucketOwners)
		self, err := readNode(nodes, o.Node, now)
		if err != nil {
			return err
		}
		if err := holds(o, self); err != nil {
			return err
		}
		cur, err := readClaim(owners, id)
		if err != nil {
			return err
		}
		holder := self
		if cur.epoch != 0 && cur.owner.Node != o.Node {
			if holder, err = readNode(nodes, cur.owner.Node, now); err != nil {
				return err
			}
		}
		endHolder, err := mayAcquire(id, o, cur, holder)
		if err != nil {
			return err
		}
		if endHolder {
			holder.lease.Ended = true
			if err := putNode(nodes, holder.lease); err != nil {
				return err
			}
		}
		rec = Record{ID: id}
		if v := tx.Bucket(bucketPlayers).Get(playerKey(id)); v != nil {
			if rec, err = decodeRecord(id, v); err != nil {
				return err
			}
		}
		rec.Epoch = cur.epoch + 1
		return owners.Put(playerKey(id), encodeClaim(claim{owner: o, epoch: rec.Epoch}))
	})
	if err != nil {
		return Record{}, err
	}
	return rec, nil
}

// Release implements Store.
func (s *Bolt) Release(ctx context.Context, rec Record) error {
	if err := checkRelease(rec); err != nil {
		return err
	}
	return s.batch(func(tx *bolt.Tx) error {
		owners := tx.Bucket(bucketOwners)
		cur, err := readClaim(owners, rec.ID)
		if err != nil {
			return err
		}
		if cur.epoch != rec.Epoch || cur.released {
			return &FencedError{IDs: []uint64{rec.ID}}
		}
		if rec.Data != nil {
			b := tx.Bucket(bucketPlayers)
			v, _ := storedVersion(b, rec.ID)
			rec.Version = v + 1
			if err := b.Put(playerKey(rec.ID), encodeRecord(rec)); err != nil {
				return err
			}
		}
		cur.released = true
		return owners.Put(playerKey(rec.ID), encodeClaim(cur))
	})
}

// OwnerOf implements Store.
func (s *Bolt) OwnerOf(ctx context.Context, id uint64) (Owner, uint64, error) {
	var c claim
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		c, err = readClaim(tx.Bucket(bucketOwners), id)
		return err
	})
	if err != nil {
		return Owner{}, 0, err
	}
	if c.released {
		return Owner{}, c.epoch, nil
	}
	return c.owner, c.epoch, nil
}

// ID implements Store.
func (s *Bolt) ID(ctx context.Context) (string, error) {
	var id string
	err := s.view(func(tx *bolt.Tx) error {
		id = string(tx.Bucket(bucketMeta).Get(metaID))
		return nil
	})
	return id, err
}

// Close implements Store; it waits for calls in progress.
func (s *Bolt) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.db.Close()
}
