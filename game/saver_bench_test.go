package game_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/game"
	"github.com/vmihailenco/msgpack/v5"
	bolt "go.etcd.io/bbolt"
)

// benchPlayers is how many players each round saves.
const benchPlayers = 10_000

// benchBlobs are msgpack snapshots of a mid-game player (~0.6 KiB: position,
// stats, a 40-slot inventory).
func benchBlobs(b *testing.B) [][]byte {
	type state struct {
		Map          string
		X, Y, Level  int32
		Moves, XP    int64
		Items        map[string]int32
		Quests, Chan []string
	}
	blobs := make([][]byte, benchPlayers)
	for i := range blobs {
		s := state{Map: "town", X: int32(i % 1000), Y: int32(i / 1000), Level: 12, Moves: int64(i) * 7, XP: 123456,
			Items: map[string]int32{}, Quests: []string{"main-03", "side-11"}, Chan: []string{"world"}}
		for j := 0; j < 40; j++ {
			s.Items[fmt.Sprintf("item-%04d", (i+j)%997)] = int32(j)
		}
		data, err := msgpack.Marshal(&s)
		if err != nil {
			b.Fatal(err)
		}
		blobs[i] = data
	}
	return blobs
}

// BenchmarkSaveThroughput: durable saves per second through the save
// pipeline vs raw bbolt batched writes of the same blobs in the same run.
//
// Each op saves every player once, in an arrival order that is a fresh
// random permutation (save ticks are spread randomly over the interval).
// The baseline writes the same blobs, in the same order, 512 puts per
// bbolt Update (the Saver's default BatchCount; one fsync each). The
// pipeline gets them from 8 goroutines taking players in that order (as
// player actors submit concurrently); the Saver batches them into Store
// commits with versions, checksums and per-snapshot tickets, and the op
// ends when every ticket reports its commit. Target: ratio at least 0.7.
//
// fenced-saves/s is the same pipeline with every player acquired first
// and every save carrying its epoch: a conditional save, as game nodes
// make them (the store checks the epoch and picks the version).
//
// raw-sequential-saves/s is bbolt writing the players in key order, a best
// case no real save pattern has (random batches dirty more pages per
// commit); it is reported for context.
func BenchmarkSaveThroughput(b *testing.B) {
	blobs := benchBlobs(b)
	const batch = 512

	db, err := bolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	bucket := []byte("players")
	raw := func(order []int) {
		for lo := 0; lo < len(order); lo += batch {
			err := db.Update(func(tx *bolt.Tx) error {
				bk, err := tx.CreateBucketIfNotExists(bucket)
				if err != nil {
					return err
				}
				for _, i := range order[lo:min(lo+batch, len(order))] {
					var k [8]byte
					binary.BigEndian.PutUint64(k[:], uint64(i+1))
					if err := bk.Put(k[:], blobs[i]); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	}

	// newPipeline returns a save round through a Saver on its own bbolt
	// file; fenced: every player acquired first, every save carries its
	// epoch (a conditional save, as game nodes make them).
	newPipeline := func(name string, fenced bool) func(order []int) {
		st, err := store.OpenBolt(filepath.Join(b.TempDir(), name))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		epochs := make([]uint64, len(blobs))
		if fenced {
			l, err := store.StartLease(context.Background(), st, "game-1", store.LeaseConfig{TTL: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { l.End(context.Background()) })
			for i := range blobs {
				rec, err := st.Acquire(context.Background(), uint64(i+1), l.Owner())
				if err != nil {
					b.Fatal(err)
				}
				epochs[i] = rec.Epoch
			}
		}
		saver, err := game.NewSaver(game.SaverConfig{Store: st, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { saver.Stop(context.Background()) })
		const submitters = 8
		version := uint64(0)
		tickets := make([]*game.SaveTicket, len(blobs))
		return func(order []int) {
			version++
			var next atomic.Int64
			var wg sync.WaitGroup
			for g := 0; g < submitters; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := next.Add(1) - 1; n < int64(len(order)); n = next.Add(1) - 1 {
						i := order[n]
						tickets[i] = game.NewSaveTicket(version, time.Now())
						rec := store.Record{ID: uint64(i + 1), Version: version, Epoch: epochs[i], Data: blobs[i]}
						if err := saver.Submit(context.Background(), rec, tickets[i]); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			for _, t := range tickets {
				if err := t.Wait(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	pipeline := newPipeline("pipeline.db", false)
	fencedPipeline := newPipeline("fenced.db", true)

	sequential := make([]int, len(blobs))
	for i := range sequential {
		sequential[i] = i
	}
	raw(sequential) // create the keys in every file
	pipeline(sequential)
	fencedPipeline(sequential)
	rng := rand.New(rand.NewPCG(1, 2))
	var rawTime, pipeTime, fencedTime, seqTime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		order := rng.Perm(len(blobs))
		start := time.Now()
		raw(order)
		rawTime += time.Since(start)
		start = time.Now()
		pipeline(order)
		pipeTime += time.Since(start)
		start = time.Now()
		fencedPipeline(order)
		fencedTime += time.Since(start)
		start = time.Now()
		raw(sequential)
		seqTime += time.Since(start)
	}
	saves := float64(b.N * len(blobs))
	rawRate, pipeRate, fencedRate := saves/rawTime.Seconds(), saves/pipeTime.Seconds(), saves/fencedTime.Seconds()
	b.ReportMetric(rawRate, "raw-saves/s")
	b.ReportMetric(pipeRate, "pipeline-saves/s")
	b.ReportMetric(pipeRate/rawRate, "ratio")
	b.ReportMetric(fencedRate, "fenced-saves/s")
	b.ReportMetric(fencedRate/rawRate, "fenced-ratio")
	b.ReportMetric(saves/seqTime.Seconds(), "raw-sequential-saves/s")
}
