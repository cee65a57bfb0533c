package store

import (
	"context"

	bolt "go.etcd.io/bbolt"
)

// CorruptBoltRecordForTest flips a byte in a stored record's data.
func CorruptBoltRecordForTest(s *Bolt, id uint64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPlayers)
		v := append([]byte(nil), b.Get(playerKey(id))...)
		v[len(v)-1] ^= 0xff
		return b.Put(playerKey(id), v)
	})
}

// CorruptPostgresRecordForTest flips a byte of a stored record's data
// without updating its checksum.
func CorruptPostgresRecordForTest(s *Postgres, id uint64) error {
	_, err := s.pool.Exec(context.Background(),
		`UPDATE citadel_players SET data = overlay(data placing '\xff'::bytea from 1 for 1) WHERE id = $1`, int64(id))
	return err
}
