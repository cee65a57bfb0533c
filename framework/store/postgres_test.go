package store_test

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/framework/store/storetest"
)

// pgDSN returns the test database, or skips: .ci/run starts a throwaway
// PostgreSQL and sets CITADEL_PG_DSN; locally, `. .ci/postgres` does the same.
func pgDSN(t *testing.T) string {
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
