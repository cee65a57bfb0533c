package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/game/sample"
	"github.com/jackc/pgx/v5"
	"github.com/vmihailenco/msgpack/v5"
)

// The store side: every scenario runs on a fresh PostgreSQL schema that
// all its processes share; a sampler reads every player record a few times
// a second while the scenario runs, and the records are read once more
// after the cluster stopped.

// epochColumn is the hook for fenced ownership: once player records carry
// the epoch of the owner that wrote them (a column of this name in
// citadel_players), the sampler checks that no record's epoch ever goes
// back, i.e. that no epoch commits after a newer one fenced it. Until then
// the same thing is caught through the move counter, which a newer owner
// only ever raises.
const epochColumn = "epoch"

// newSchema creates an empty schema in the database dsn names and returns
// dsn pointed at it, and a function that drops it.
func newSchema(ctx context.Context, dsn string) (string, func(), error) {
	b := make([]byte, 6)
	rand.Read(b)
	schema := "chaos_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", nil, fmt.Errorf("PostgreSQL %s: %w", maskDSN(dsn), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return "", nil, fmt.Errorf("create schema: %w", err)
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, dsn); err == nil {
			c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
			c.Close(ctx)
		}
	}
	dsn = store.PostgresSchemaDSN(dsn, schema)
	return dsn, drop, nil
}

// maskDSN hides a password in a DSN for messages.
func maskDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			return u.String()
		}
	}
	return dsn
}

// record is what the suite reads of a stored player.
type record struct {
	moves    int64
	x, y     int32
	items    map[string]int32
	epoch    int64
	hasEpoch bool
}

// readRecords reads every player record in one statement (one snapshot,
// so a trade's two records are seen together).
func readRecords(ctx context.Context, conn *pgx.Conn, withEpoch bool) (map[uint64]record, error) {
	q := "SELECT id, data FROM citadel_players"
	if withEpoch {
		q = "SELECT id, data, " + epochColumn + " FROM citadel_players"
	}
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	recs := map[uint64]record{}
	for rows.Next() {
		var id int64
		var data []byte
		var epoch int64
		dest := []any{&id, &data}
		if withEpoch {
			dest = append(dest, &epoch)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		if data == nil {
			continue // acquired, never saved: as if absent
		}
		var s sample.State
		if err := msgpack.Unmarshal(data, &s); err != nil {
			return nil, fmt.Errorf("player %d: stored state does not decode: %w", id, err)
		}
		recs[uint64(id)] = record{moves: s.Moves, x: s.X, y: s.Y, items: s.Items, epoch: epoch, hasEpoch: withEpoch}
	}
	return recs, rows.Err()
}

// hasEpochColumn reports whether citadel_players has the epoch column.
func hasEpochColumn(ctx context.Context, conn *pgx.Conn) bool {
	var n int
	err := conn.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'citadel_players' AND column_name = $1`, epochColumn).Scan(&n)
	return err == nil && n > 0
}

// sampler reads the records while the scenario runs and remembers every
// time one went back: a lower move counter than an earlier read (an older
// copy's save won over a newer one) or a lower epoch (an epoch committed
// after it was fenced), and every read whose items do not add up.
type sampler struct {
	baseline map[string]int32            // items per kind over all players
	first    map[uint64]map[string]int32 // each player's items before any save
	mu       sync.Mutex
	last     map[uint64]record
	back     []string // descriptions of records that went back
	nBack    int
	unequal  int   // reads whose item totals differ from the baseline
	maxDiff  int32 // the largest total difference seen
	reads    int
	errs     int
	lastErr  error
	epochs   bool
}

func newSampler(baseline map[string]int32, first map[uint64]map[string]int32) *sampler {
	return &sampler{baseline: baseline, first: first, last: map[uint64]record{}}
}

// run reads every interval until ctx ends.
func (s *sampler) run(ctx context.Context, dsn string, interval time.Duration) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if conn == nil {
			c, err := pgx.Connect(ctx, dsn)
			if err != nil {
				s.fail(err)
			} else {
				conn = c
				s.mu.Lock()
				s.epochs = hasEpochColumn(ctx, conn)
				s.mu.Unlock()
			}
		}
		if conn != nil {
			s.mu.Lock()
			epochs := s.epochs
			s.mu.Unlock()
			recs, err := readRecords(ctx, conn, epochs)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.fail(err)
				conn.Close(context.Background())
				conn = nil
			} else {
				s.add(recs, time.Now())
			}
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

func (s *sampler) fail(err error) {
	s.mu.Lock()
	s.errs++
	s.lastErr = err
	s.mu.Unlock()
}

// add checks one read against the previous one and the item baseline.
func (s *sampler) add(recs map[uint64]record, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	for id, r := range recs {
		prev, ok := s.last[id]
		if ok && (r.moves < prev.moves || (r.hasEpoch && prev.hasEpoch && r.epoch < prev.epoch)) {
			s.nBack++
			if len(s.back) < 10 {
				s.back = append(s.back, fmt.Sprintf("%s player %d: stored moves %d (epoch %d) after %d (epoch %d)",
					at.Format("15:04:05.000"), id, r.moves, r.epoch, prev.moves, prev.epoch))
			}
		}
		s.last[id] = r
	}
	if d := itemDiff(s.baseline, totals(recs, s.first)); d != 0 {
		s.unequal++
		s.maxDiff = max(s.maxDiff, d)
	}
}

// totals adds up every player's items: the stored ones, or what a player
// without a record started with.
func totals(recs map[uint64]record, first map[uint64]map[string]int32) map[string]int32 {
	t := map[string]int32{}
	for id, items := range first {
		if r, ok := recs[id]; ok {
			items = r.items
		}
		for k, n := range items {
			t[k] += n
		}
	}
	return t
}

// itemDiff is the sum over kinds of |got - want|: items created plus
// items destroyed.
func itemDiff(want, got map[string]int32) int32 {
	var d int32
	for k, n := range want {
		d += abs(got[k] - n)
	}
	for k, n := range got {
		if _, ok := want[k]; !ok {
			d += abs(n)
		}
	}
	return d
}

func abs(v int32) int32 {
	if v < 0 {
		return -v
	}
	return v
}
