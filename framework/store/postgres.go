package store

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the PostgreSQL backend, for clusters: every game node reads
// and writes the same database. Records are versioned and checksummed as in
// the bbolt backend; a save is one transaction.
type Postgres struct {
	pool *pgxpool.Pool
}

const pgSchema = `
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
);`

// OpenPostgres connects to dsn (a postgres:// URL or key=value string) and
// creates the tables if needed.
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
	err := s.pool.QueryRow(ctx, `SELECT version, crc, data FROM citadel_players WHERE id = $1`, int64(id)).
		Scan(&version, &crc, &data)
	if errors.Is(err, pgx.ErrNoRows) {
		return Record{}, fmt.Errorf("store: player %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Record{}, s.wrap("load player", err)
	}
	if uint32(crc) != crc32.Checksum(data, castagnoli) || crc < 0 || crc > 0xffffffff {
		return Record{}, &CorruptError{ID: id, Reason: "checksum mismatch"}
	}
	return Record{ID: id, Version: uint64(version), Data: data}, nil
}

// Save implements Store.
func (s *Postgres) Save(ctx context.Context, recs []Record) error {
	return s.save(ctx, recs, false)
}

// SaveAll implements Store.
func (s *Postgres) SaveAll(ctx context.Context, recs []Record) error {
	return s.save(ctx, recs, true)
}

// upsert writes a record only over an older version; zero rows affected
// means the stored version is the same or newer.
const upsert = `INSERT INTO citadel_players (id, version, crc, data, saved) VALUES ($1, $2, $3, $4, now())
ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, crc = EXCLUDED.crc, data = EXCLUDED.data, saved = now()
WHERE citadel_players.version < EXCLUDED.version`

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
		if r.Version > 1<<63-1 {
			return fmt.Errorf("store: player %d version %d does not fit PostgreSQL's BIGINT", r.ID, r.Version)
		}
		data := r.Data
		if data == nil {
			data = []byte{}
		}
		b.Queue(upsert, int64(r.ID), int64(r.Version), int64(crc32.Checksum(data, castagnoli)), data)
	}
	res := tx.SendBatch(ctx, &b)
	var stale []uint64
	for _, r := range recs {
		tag, err := res.Exec()
		if err != nil {
			res.Close()
			return s.wrap("save players", err)
		}
		if tag.RowsAffected() == 0 {
			stale = append(stale, r.ID)
		}
	}
	if err := res.Close(); err != nil {
		return s.wrap("save players", err)
	}
	if all && len(stale) > 0 {
		return &StaleError{IDs: stale} // rolled back by the deferred Rollback
	}
	if err := tx.Commit(ctx); err != nil {
		return s.wrap("commit save", err)
	}
	if len(stale) > 0 {
		return &StaleError{IDs: stale}
	}
	return nil
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
