package store_test

import (
	"context"
	"hash/crc32"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/framework/store/storetest"
	"github.com/jackc/pgx/v5"
)

// pgDSN returns the test database, or skips: .ci/run starts a throwaway
// PostgreSQL and sets CITADEL_PG_DSN; locally, `. .ci/postgres` does the same.
func pgDSN(t testing.TB) string {
	dsn := os.Getenv("CITADEL_PG_DSN")
	if dsn == "" {
		t.Skip("PostgreSQL tests need CITADEL_PG_DSN; run `. .ci/postgres` (starts a throwaway cluster and sets it) or .ci/run")
	}
	return dsn
}

func TestPostgresContract(t *testing.T) {
	dsn := pgDSN(t)
	var mu sync.Mutex
	dsns := map[store.Store]string{}
	open := func(t *testing.T, dsn string) store.Store {
		s, err := store.OpenPostgres(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		mu.Lock()
		dsns[s] = dsn
		mu.Unlock()
		return s
	}
	storetest.Run(t, storetest.Backend{
		Open: func(t *testing.T) store.Store {
			// Each subtest gets empty tables in its own schema.
			return open(t, storetest.PostgresSchema(t, dsn))
		},
		Reopen: func(t *testing.T, s store.Store) store.Store {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			dsn := dsns[s]
			mu.Unlock()
			return open(t, dsn)
		},
		Corrupt: func(t *testing.T, s store.Store, id uint64) {
			if err := store.CorruptPostgresRecordForTest(s.(*store.Postgres), id); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// TestPostgresMigratesAnOlderDatabase opens a database created before
// ownership existed: the columns are added, its records load and can be
// acquired, and opening again changes nothing.
func TestPostgresMigratesAnOlderDatabase(t *testing.T) {
	ctx := context.Background()
	dsn := storetest.PostgresSchema(t, pgDSN(t))
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// The schema as the first release created it.
	_, err = conn.Exec(ctx, `
CREATE TABLE citadel_accounts (
	id            BIGSERIAL PRIMARY KEY,
	name          TEXT NOT NULL UNIQUE,
	password_hash BYTEA NOT NULL,
	created       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE citadel_players (
	id      BIGINT PRIMARY KEY,
	version BIGINT NOT NULL,
	crc     BIGINT NOT NULL,
	data    BYTEA NOT NULL,
	saved   TIMESTAMPTZ NOT NULL DEFAULT now()
);`)
	if err != nil {
		t.Fatal(err)
	}
	old := []byte("saved before ownership")
	if _, err := conn.Exec(ctx, `INSERT INTO citadel_players (id, version, crc, data) VALUES (7, 3, $1, $2)`,
		int64(crc32.Checksum(old, crc32.MakeTable(crc32.Castagnoli))), old); err != nil {
		t.Fatal(err)
	}

	for range 2 {
		s, err := store.OpenPostgres(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		l, err := s.StartNode(ctx, "a", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := s.Acquire(ctx, 7, l.Owner)
		if err != nil || rec.Version < 3 || string(rec.Data) != string(old) {
			t.Fatalf("Acquire of a record saved before the migration = %+v, %v", rec, err)
		}
		recs := []store.Record{{ID: 7, Epoch: rec.Epoch, Data: old}}
		if err := s.Save(ctx, recs); err != nil || recs[0].Version != rec.Version+1 {
			t.Fatalf("fenced save after the migration: version %d, %v", recs[0].Version, err)
		}
		if _, err := s.Acquire(ctx, 8, l.Owner); err != nil { // needs data to be nullable
			t.Fatalf("Acquire of a player never saved, after the migration: %v", err)
		}
	}
}

// Processes that start at once on an empty database (a cluster's first
// start) all open it: creating the tables is one transaction at a time.
func TestPostgresOpensConcurrentlyOnAnEmptyDatabase(t *testing.T) {
	dsn := storetest.PostgresSchema(t, pgDSN(t))
	const n = 8
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := store.OpenPostgres(context.Background(), dsn)
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
