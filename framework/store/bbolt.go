package store

import (
	"bytes"
	"context"
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
)

// recordHeader: version (8) | crc32c of data (4) | data length (4).
const recordHeader = 16

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Bolt is the embedded bbolt backend: one file, one process.
type Bolt struct {
	db     *bolt.DB
	mu     sync.RWMutex // Close waits for calls in progress
	closed bool
}

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
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketAccounts, bucketPlayers} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
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
	var stale []uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		stale = stale[:0]
		b := tx.Bucket(bucketPlayers)
		if all {
			// Check everything first (a batch may name a player twice).
			newest := make(map[uint64]uint64, len(recs))
			for _, r := range recs {
				cur, ok := newest[r.ID]
				if !ok {
					cur, _ = storedVersion(b, r.ID)
				}
				if cur >= r.Version {
					stale = append(stale, r.ID)
				}
				newest[r.ID] = max(cur, r.Version)
			}
			if len(stale) > 0 {
				return &StaleError{IDs: stale}
			}
		}
		for _, r := range recs {
			// Get sees this transaction's own earlier puts.
			if cur, ok := storedVersion(b, r.ID); ok && cur >= r.Version {
				stale = append(stale, r.ID)
				continue
			}
			if err := b.Put(playerKey(r.ID), encodeRecord(r)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(stale) > 0 {
		return &StaleError{IDs: stale}
	}
	return nil
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
