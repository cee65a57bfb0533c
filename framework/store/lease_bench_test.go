package store_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/framework/store/storetest"
	"github.com/jackc/pgx/v5"
	bolt "go.etcd.io/bbolt"
)

// BenchmarkRenewLease: one lease renewal (a node does one every third of
// its TTL) against the same store's cheapest durable write of the same
// size, alternating, in the same run: a bbolt Update putting one small
// value; on PostgreSQL (CITADEL_PG_DSN) a one-row UPDATE of a timestamp.
// Reports µs per renewal, per raw write, and the ratio.
func BenchmarkRenewLease(b *testing.B) {
	ctx := context.Background()
	b.Run("bbolt", func(b *testing.B) {
		st, err := store.OpenBolt(filepath.Join(b.TempDir(), "lease.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		l, err := st.StartNode(ctx, "game-1", time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		raw, err := bolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer raw.Close()
		rawWrite := func() {
			err := raw.Update(func(tx *bolt.Tx) error {
				bk, err := tx.CreateBucketIfNotExists([]byte("nodes"))
				if err != nil {
					return err
				}
				return bk.Put([]byte("game-1"), []byte(time.Now().Add(time.Minute).Format(time.RFC3339Nano)))
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		compare(b, func() {
			if _, err := st.RenewLease(ctx, l.Owner, time.Minute); err != nil {
				b.Fatal(err)
			}
		}, rawWrite)
	})
	b.Run("postgres", func(b *testing.B) {
		dsn := storetest.PostgresSchema(b, pgDSN(b))
		st, err := store.OpenPostgres(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		l, err := st.StartNode(ctx, "game-1", time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `CREATE TABLE raw_leases (name TEXT PRIMARY KEY, expires TIMESTAMPTZ NOT NULL);
INSERT INTO raw_leases VALUES ('game-1', now())`); err != nil {
			b.Fatal(err)
		}
		compare(b, func() {
			if _, err := st.RenewLease(ctx, l.Owner, time.Minute); err != nil {
				b.Fatal(err)
			}
		}, func() {
			if _, err := conn.Exec(ctx, `UPDATE raw_leases SET expires = now() + interval '1 minute' WHERE name = $1`, "game-1"); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// compare runs ours and raw alternately b.N times each and reports both
// and their ratio.
func compare(b *testing.B, ours, raw func()) {
	for i := 0; i < 10; i++ {
		ours()
		raw()
	}
	var tOurs, tRaw time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		ours()
		t1 := time.Now()
		raw()
		tOurs, tRaw = tOurs+t1.Sub(t0), tRaw+time.Since(t1)
	}
	b.ReportMetric(float64(tOurs.Microseconds())/float64(b.N), "renew-µs")
	b.ReportMetric(float64(tRaw.Microseconds())/float64(b.N), "raw-µs")
	b.ReportMetric(tOurs.Seconds()/tRaw.Seconds(), "ratio")
}
