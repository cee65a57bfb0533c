package store_test

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/framework/store/storetest"
)

func TestBoltContract(t *testing.T) {
	var mu sync.Mutex
	paths := map[store.Store]string{}
	open := func(t *testing.T, path string) store.Store {
		s, err := store.OpenBolt(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		mu.Lock()
		paths[s] = path
		mu.Unlock()
		return s
	}
	storetest.Run(t, storetest.Backend{
		Open: func(t *testing.T) store.Store {
			return open(t, filepath.Join(t.TempDir(), "citadel.db"))
		},
		Reopen: func(t *testing.T, s store.Store) store.Store {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			path := paths[s]
			mu.Unlock()
			return open(t, path)
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
