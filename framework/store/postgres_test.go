package store_test

import (
	"context"
	"os"
	"testing"

	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/framework/store/storetest"
	"github.com/jackc/pgx/v5"
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
			ctx := context.Background()
			// Each subtest gets empty tables in its own schema.
			schema := "t_" + randomName()
			admin, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
				t.Fatal(err)
			}
			admin.Close(ctx)
			s, err := store.OpenPostgres(ctx, withSearchPath(dsn, schema))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				s.Close()
				if c, err := pgx.Connect(ctx, dsn); err == nil {
					c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
					c.Close(ctx)
				}
			})
			return s
		},
		Corrupt: func(t *testing.T, s store.Store, id uint64) {
			if err := store.CorruptPostgresRecordForTest(s.(*store.Postgres), id); err != nil {
				t.Fatal(err)
			}
		},
	})
}
