package store_test

import (
	"context"
	"os"
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
	storetest.Run(t, storetest.Backend{
		Open: func(t *testing.T) store.Store {
			// Each subtest gets empty tables in its own schema.
			s, err := store.OpenPostgres(context.Background(), storetest.PostgresSchema(t, dsn))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		Corrupt: func(t *testing.T, s store.Store, id uint64) {
			if err := store.CorruptPostgresRecordForTest(s.(*store.Postgres), id); err != nil {
				t.Fatal(err)
			}
		},
	})
}
