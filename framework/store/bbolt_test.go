package store_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/framework/store/storetest"
)

func TestBoltContract(t *testing.T) {
	storetest.Run(t, storetest.Backend{
		Open: func(t *testing.T) store.Store {
			s, err := store.OpenBolt(filepath.Join(t.TempDir(), "citadel.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		Corrupt: func(t *testing.T, s store.Store, id uint64) {
			if err := store.CorruptBoltRecordForTest(s.(*store.Bolt), id); err != nil {
				t.Fatal(err)
			}
		},
	})
}

func TestBoltRefusesSecondOpener(t *testing.T) {
	path := filepath.Join(t.TempDir(), "citadel.db")
	s, err := store.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := store.OpenBolt(path); err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("second open: %v", err)
	}
}
