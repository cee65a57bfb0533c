package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/crc32"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the PostgreSQL backend, for clusters: every game node reads
// and writes the same database. Records are versioned and checksummed as in
// the bbolt backend; a save is one transaction. Leases are timed by the
// database's clock (now()), so nodes with skewed clocks agree on them. A
// player's claim (owner, epoch) is in its row: a save's epoch check and its
// write are one conditional UPDATE, and Acquire locks the row.
type Postgres struct {
	pool *pgxpool.Pool
}

var _ Store = (*Postgres)(nil)

// pgSchema runs as one statement string: PostgreSQL runs it in one
// transaction, and the advisory lock at its start makes processes opening
// an empty database at once take turns (CREATE TABLE IF NOT EXISTS alone
// fails in the loser of a race, with a duplicate key in pg_type).
const pgSchema = `
SELECT pg_advisory_xact_lock(7421950663381101);
CREATE TABLE IF NOT EXISTS citadel_accounts (
	id            BIGSERIAL PRIMARY KEY,
	name          TEXT NOT NULL UNIQUE,
	password_hash BYTEA NOT NULL,
	created       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS citadel_players (
	id      BIGINT PRIMARY KEY,
	version BIGINT NOT NULL,
	crc     BIGINT NOT NULL,
	data    BYTEA NOT NULL,
	saved   TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Ownership came later: ALTER, so that databases created before it get it.
-- A player acquired but never saved has a row with NULL data.
ALTER TABLE citadel_players
	ADD COLUMN IF NOT EXISTS owner_node        TEXT,
	ADD COLUMN IF NOT EXISTS owner_incarnation BIGINT,
	ADD COLUMN IF NOT EXISTS epoch             BIGINT NOT NULL DEFAULT 0,
	ADD COLUMN IF NOT EXISTS released          BOOLEAN NOT NULL DEFAULT false,
	ALTER COLUMN data DROP NOT NULL;
CREATE TABLE IF NOT EXISTS citadel_nodes (
	name        TEXT PRIMARY KEY,
	incarnation BIGINT NOT NULL,
	expires     TIMESTAMPTZ NOT NULL,
	ended       BOOLEAN NOT NULL DEFAULT false
);
CREATE TABLE IF NOT EXISTS citadel_meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);`

// PostgresSchemaDSN returns dsn (a postgres:// URL or key=value string)
// with its connections pointed at schema: several stores, or several
// clusters, can share one database, each in a schema of its own.
func PostgresSchemaDSN(dsn, schema string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			q := u.Query()
			q.Set("search_path", schema)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return dsn + " search_path=" + schema
}

// OpenPostgres connects to dsn (a postgres:// URL or key=value string),
// creates the tables if needed and adds the columns an older database lacks.
func OpenPostgres(ctx context.Context, dsn string) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: PostgreSQL DSN: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: connect to PostgreSQL: %w", err)
	}
	if _, err := pool.Exec(ctx, pgSchema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: create PostgreSQL tables: %w", err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO citadel_meta (key, value) VALUES ('id', $1) ON CONFLICT (key) DO NOTHING`, rand.Text()); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: create the PostgreSQL store's identity: %w", err)
	}
	return &Postgres{pool: pool}, nil
}

// CreateAccount implements Store.
func (s *Postgres) CreateAccount(ctx context.Context, name string, hash []byte) (Account, error) {
	if hash == nil {
		hash = []byte{}
	}
	var acc Account
	err := s.pool.QueryRow(ctx,
		`INSERT INTO citadel_accounts (name, password_hash, created) VALUES ($1, $2, $3) RETURNING id, created`,
		name, hash, time.Now().UTC().Truncate(time.Millisecond)).Scan(&acc.ID, &acc.Created)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation
		return Account{}, fmt.Errorf("store: account %q: %w", name, ErrExists)
	}
	if err != nil {
		return Account{}, s.wrap("create account", err)
	}
	acc.Name, acc.PasswordHash, acc.Created = name, hash, acc.Created.UTC()
	return acc, nil
}

// Account implements Store.
func (s *Postgres) Account(ctx context.Context, name string) (Account, error) {
	acc := Account{Name: name}
	err := s.pool.QueryRow(ctx, `SELECT id, password_hash, created FROM citadel_accounts WHERE name = $1`, name).
		Scan(&acc.ID, &acc.PasswordHash, &acc.Created)
	if errors.Is(err, pgx.ErrNoRows) {
		return Account{}, fmt.Errorf("store: account %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Account{}, s.wrap("load account", err)
	}
	acc.Created = acc.Created.UTC()
	return acc, nil
}

// Load implements Store.
func (s *Postgres) Load(ctx context.Context, id uint64) (Record, error) {
	var version, crc int64
	var data []byte
	err := s.pool.QueryRow(ctx, `SELECT version, crc, data FROM citadel_players WHERE id = $1 AND data IS NOT NULL`, int64(id)).
		Scan(&version, &crc, &data)
	if errors.Is(err, pgx.ErrNoRows) {
		return Record{}, fmt.Errorf("store: player %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Record{}, s.wrap("load player", err)
	}
	if err := checkCRC(id, crc, data); err != nil {
		return Record{}, err
	}
	return Record{ID: id, Version: uint64(version), Data: data}, nil
}

func checkCRC(id uint64, crc int64, data []byte) error {
	if uint32(crc) != crc32.Checksum(data, castagnoli) || crc < 0 || crc > 0xffffffff {
		return &CorruptError{ID: id, Reason: "checksum mismatch"}
	}
	return nil
}

// Save implements Store.
func (s *Postgres) Save(ctx context.Context, recs []Record) error {
	return s.save(ctx, recs, false)
}

// SaveAll implements Store.
func (s *Postgres) SaveAll(ctx context.Context, recs []Record) error {
	return s.save(ctx, recs, true)
}

// upsert writes a record without an epoch only over an older version (or a
// row that holds only a claim); zero rows affected means the stored version
// is the same or newer.
const upsert = `INSERT INTO citadel_players (id, version, crc, data, saved) VALUES ($1, $2, $3, $4, now())
ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, crc = EXCLUDED.crc, data = EXCLUDED.data, saved = now()
WHERE citadel_players.version < EXCLUDED.version OR citadel_players.data IS NULL`

// fencedUpdate writes a record with an epoch only while that epoch is
// current, at the next version; no row returned means fenced. Acquire
// creates the row, so a player never acquired is fenced too.
const fencedUpdate = `UPDATE citadel_players SET version = version + 1, crc = $3, data = $4, saved = now()
WHERE id = $1 AND epoch = $2 AND NOT released RETURNING version`

func (s *Postgres) save(ctx context.Context, recs []Record, all bool) error {
	if len(recs) == 0 {
		return nil
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return s.wrap("begin save", err)
	}
	defer tx.Rollback(ctx)
	var b pgx.Batch
	for _, r := range recs {
		if r.Version > 1<<63-1 || r.Epoch > 1<<63-1 {
			return fmt.Errorf("store: player %d version %d or epoch %d does not fit PostgreSQL's BIGINT", r.ID, r.Version, r.Epoch)
		}
		data := r.Data
		if data == nil {
			data = []byte{}
		}
		crc := int64(crc32.Checksum(data, castagnoli))
		if r.Epoch == 0 {
			b.Queue(upsert, int64(r.ID), int64(r.Version), crc, data)
		} else {
			b.Queue(fencedUpdate, int64(r.ID), int64(r.Epoch), crc, data)
		}
	}
	res := tx.SendBatch(ctx, &b)
	var stale, fenced []uint64
	var versions []uint64 // the versions this save picked for records with an epoch, by index
	for i, r := range recs {
		if r.Epoch == 0 {
			tag, err := res.Exec()
			if err != nil {
				res.Close()
				return s.wrap("save players", err)
			}
			if tag.RowsAffected() == 0 {
				stale = append(stale, r.ID)
			}
			continue
		}
		if versions == nil {
			versions = make([]uint64, len(recs))
		}
		var v int64
		err := res.QueryRow().Scan(&v)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			fenced = append(fenced, r.ID)
		case err != nil:
			res.Close()
			return s.wrap("save players", err)
		default:
			versions[i] = uint64(v)
		}
	}
	if err := res.Close(); err != nil {
		return s.wrap("save players", err)
	}
	if refused := refusal(stale, fenced); all && refused != nil {
		return refused // rolled back by the deferred Rollback
	}
	if err := tx.Commit(ctx); err != nil {
		return s.wrap("commit save", err)
	}
	for i, v := range versions {
		if v != 0 {
			recs[i].Version = v
		}
	}
	return refusal(stale, fenced)
}

// micros is a lease TTL for PostgreSQL's interval arithmetic.
func micros(ttl time.Duration) int64 { return max(ttl.Microseconds(), 1) }

// StartNode implements Store.
func (s *Postgres) StartNode(ctx context.Context, node string, ttl time.Duration) (Lease, error) {
	if err := checkStart(node, ttl); err != nil {
		return Lease{}, err
	}
	l := Lease{Owner: Owner{Node: node}}
	var inc int64
	err := s.pool.QueryRow(ctx, `INSERT INTO citadel_nodes AS n (name, incarnation, expires, ended)
VALUES ($1, 1, now() + $2::bigint * interval '1 microsecond', false)
ON CONFLICT (name) DO UPDATE SET incarnation = n.incarnation + 1, expires = EXCLUDED.expires, ended = false
RETURNING incarnation, expires`, node, micros(ttl)).Scan(&inc, &l.Expires)
	if err != nil {
		return Lease{}, s.wrap("start node", err)
	}
	l.Incarnation = uint64(inc)
	return l, nil
}

// RenewLease implements Store.
func (s *Postgres) RenewLease(ctx context.Context, o Owner, ttl time.Duration) (Lease, error) {
	if err := checkTTL(ttl); err != nil {
		return Lease{}, err
	}
	l := Lease{Owner: o}
	err := s.pool.QueryRow(ctx, `UPDATE citadel_nodes SET expires = now() + $3::bigint * interval '1 microsecond'
WHERE name = $1 AND incarnation = $2 AND NOT ended AND expires > now() RETURNING expires`,
		o.Node, int64(o.Incarnation), micros(ttl)).Scan(&l.Expires)
	if errors.Is(err, pgx.ErrNoRows) {
		n, err := s.node(ctx, s.pool, o.Node)
		if err != nil {
			return Lease{}, err
		}
		if err := holds(o, n); err != nil {
			return Lease{}, err
		}
		// It holds now but did not a moment ago: only the clock can do that.
		return Lease{}, fmt.Errorf("store: the lease of %s had expired: %w", o, ErrFenced)
	}
	if err != nil {
		return Lease{}, s.wrap("renew lease", err)
	}
	return l, nil
}

// EndLease implements Store.
func (s *Postgres) EndLease(ctx context.Context, o Owner) error {
	tag, err := s.pool.Exec(ctx, `UPDATE citadel_nodes SET ended = true WHERE name = $1 AND incarnation = $2`, o.Node, int64(o.Incarnation))
	if err != nil {
		return s.wrap("end lease", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	n, err := s.node(ctx, s.pool, o.Node)
	if err != nil {
		return err
	}
	if n.lease.Incarnation < o.Incarnation {
		return fmt.Errorf("store: %s was never issued: %w", o, ErrNotFound)
	}
	return nil // superseded already
}

// Leases implements Store.
func (s *Postgres) Leases(ctx context.Context) ([]Lease, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, incarnation, expires, ended FROM citadel_nodes ORDER BY name COLLATE "C"`)
	if err != nil {
		return nil, s.wrap("list leases", err)
	}
	var ls []Lease
	for rows.Next() {
		var l Lease
		var inc int64
		if err := rows.Scan(&l.Node, &inc, &l.Expires, &l.Ended); err != nil {
			rows.Close()
			return nil, s.wrap("list leases", err)
		}
		l.Incarnation = uint64(inc)
		ls = append(ls, l)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("list leases", err)
	}
	return ls, nil
}

// querier is a pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// node reads a node's newest incarnation; its liveness is judged by the
// database's clock (in a transaction, as of the transaction's start).
func (s *Postgres) node(ctx context.Context, q querier, name string) (nodeState, error) {
	var n nodeState
	var inc int64
	err := q.QueryRow(ctx, `SELECT incarnation, expires, ended, NOT ended AND expires > now() FROM citadel_nodes WHERE name = $1`, name).
		Scan(&inc, &n.lease.Expires, &n.lease.Ended, &n.live)
	if errors.Is(err, pgx.ErrNoRows) {
		return nodeState{}, nil
	}
	if err != nil {
		return nodeState{}, s.wrap("read lease", err)
	}
	n.lease.Node, n.lease.Incarnation = name, uint64(inc)
	return n, nil
}

// Acquire implements Store. The player's row is locked for the transaction
// (created first, holding only a claim, if the player was never saved), so
// concurrent Acquires and saves of that player run one after the other.
func (s *Postgres) Acquire(ctx context.Context, id uint64, o Owner) (Record, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return Record{}, s.wrap("begin acquire", err)
	}
	defer tx.Rollback(ctx)
	self, err := s.node(ctx, tx, o.Node)
	if err != nil {
		return Record{}, err
	}
	if err := holds(o, self); err != nil {
		return Record{}, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO citadel_players (id, version, crc, data) VALUES ($1, 0, 0, NULL) ON CONFLICT (id) DO NOTHING`, int64(id)); err != nil {
		return Record{}, s.wrap("acquire player", err)
	}
	var cur claim
	var ownerNode *string
	var ownerInc *int64
	var epoch, version, crc int64
	var data []byte
	err = tx.QueryRow(ctx, `SELECT owner_node, owner_incarnation, epoch, released, version, crc, data FROM citadel_players WHERE id = $1 FOR UPDATE`, int64(id)).
		Scan(&ownerNode, &ownerInc, &epoch, &cur.released, &version, &crc, &data)
	if err != nil {
		return Record{}, s.wrap("acquire player", err)
	}
	cur.epoch = uint64(epoch)
	if ownerNode != nil && ownerInc != nil {
		cur.owner = Owner{Node: *ownerNode, Incarnation: uint64(*ownerInc)}
	}
	if err := s.takeOver(ctx, tx, id, o, cur, self); err != nil {
		return Record{}, err
	}
	rec := Record{ID: id, Version: uint64(version), Data: data}
	if data != nil {
		if err := checkCRC(id, crc, data); err != nil {
			return Record{}, err
		}
	}
	err = tx.QueryRow(ctx, `UPDATE citadel_players SET owner_node = $2, owner_incarnation = $3, epoch = epoch + 1, released = false WHERE id = $1 RETURNING epoch`,
		int64(id), o.Node, int64(o.Incarnation)).Scan(&epoch)
	if err != nil {
		return Record{}, s.wrap("acquire player", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return Record{}, s.wrap("commit acquire", err)
	}
	rec.Epoch = uint64(epoch)
	return rec, nil
}

// takeOver decides whether o may take the player from cur and, when that
// relies on the holder's lease having expired, ends the lease. The UPDATE
// that ends it re-checks the expiry on the newest row, so it and a racing
// RenewLease cannot both succeed; if the lease changed meanwhile (renewed,
// ended, superseded), the decision is made again on what it is now.
func (s *Postgres) takeOver(ctx context.Context, tx pgx.Tx, id uint64, o Owner, cur claim, self nodeState) error {
	for range 3 {
		holder := self
		if cur.epoch != 0 && cur.owner.Node != o.Node {
			var err error
			if holder, err = s.node(ctx, tx, cur.owner.Node); err != nil {
				return err
			}
		}
		endHolder, err := mayAcquire(id, o, cur, holder)
		if err != nil || !endHolder {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE citadel_nodes SET ended = true WHERE name = $1 AND incarnation = $2 AND NOT ended AND expires <= now()`,
			cur.owner.Node, int64(cur.owner.Incarnation))
		if err != nil {
			return s.wrap("end an expired lease", err)
		}
		if tag.RowsAffected() == 1 {
			return nil
		}
	}
	return fmt.Errorf("store: the lease of %s kept changing while player %d was being acquired; try again", cur.owner, id)
}

// Release implements Store.
func (s *Postgres) Release(ctx context.Context, rec Record) error {
	if err := checkRelease(rec); err != nil {
		return err
	}
	if rec.Epoch > 1<<63-1 {
		return &FencedError{IDs: []uint64{rec.ID}}
	}
	var tag pgconn.CommandTag
	var err error
	if rec.Data == nil {
		tag, err = s.pool.Exec(ctx, `UPDATE citadel_players SET released = true WHERE id = $1 AND epoch = $2 AND NOT released`,
			int64(rec.ID), int64(rec.Epoch))
	} else {
		tag, err = s.pool.Exec(ctx, `UPDATE citadel_players SET version = version + 1, crc = $3, data = $4, saved = now(), released = true
WHERE id = $1 AND epoch = $2 AND NOT released`,
			int64(rec.ID), int64(rec.Epoch), int64(crc32.Checksum(rec.Data, castagnoli)), rec.Data)
	}
	if err != nil {
		return s.wrap("release player", err)
	}
	if tag.RowsAffected() == 0 {
		return &FencedError{IDs: []uint64{rec.ID}}
	}
	return nil
}

// OwnerOf implements Store.
func (s *Postgres) OwnerOf(ctx context.Context, id uint64) (Owner, uint64, error) {
	var node *string
	var inc *int64
	var epoch int64
	var released bool
	err := s.pool.QueryRow(ctx, `SELECT owner_node, owner_incarnation, epoch, released FROM citadel_players WHERE id = $1`, int64(id)).
		Scan(&node, &inc, &epoch, &released)
	if errors.Is(err, pgx.ErrNoRows) {
		return Owner{}, 0, nil
	}
	if err != nil {
		return Owner{}, 0, s.wrap("read owner", err)
	}
	if released || node == nil || inc == nil {
		return Owner{}, uint64(epoch), nil
	}
	return Owner{Node: *node, Incarnation: uint64(*inc)}, uint64(epoch), nil
}

// ID implements Store.
func (s *Postgres) ID(ctx context.Context) (string, error) {
	var id string
	if err := s.pool.QueryRow(ctx, `SELECT value FROM citadel_meta WHERE key = 'id'`).Scan(&id); err != nil {
		return "", s.wrap("read the store's identity", err)
	}
	return id, nil
}

func (s *Postgres) wrap(what string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if s.pool == nil || isClosedPool(err) {
		return fmt.Errorf("store: %s: %w", what, ErrClosed)
	}
	return fmt.Errorf("store: PostgreSQL %s: %w", what, err)
}

func isClosedPool(err error) bool {
	return err != nil && err.Error() == "closed pool"
}

// Close implements Store; it waits for queries in progress.
func (s *Postgres) Close() error {
	s.pool.Close()
	return nil
}
