package store

import bolt "go.etcd.io/bbolt"

// CorruptBoltRecordForTest flips a byte in a stored record's data.
func CorruptBoltRecordForTest(s *Bolt, id uint64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPlayers)
		v := append([]byte(nil), b.Get(playerKey(id))...)
		v[len(v)-1] ^= 0xff
		return b.Put(playerKey(id), v)
	})
}
