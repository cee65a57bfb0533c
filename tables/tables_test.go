package tables_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/citadel-go/citadel/game/sample/gamedata"
	"github.com/citadel-go/citadel/tables"
	"github.com/citadel-go/citadel/tables/export"
	"github.com/citadel-go/citadel/tables/tablestest"
)

// The machinery is tested with the sample game's generated code: a real
// schema, as a studio's would be.
const (
	sampleSrc  = "../game/sample/gamedata/src"
	sampleData = "../game/sample/gamedata/" + export.DataFile
)

func sampleBytes(t *testing.T) []byte {
	data, err := os.ReadFile(sampleData)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestDamagedFilesAreRefused(t *testing.T) {
	good := sampleBytes(t)
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0xff
		return b
	}
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"empty":     {nil, "not a Citadel tables file"},
		"json":      {[]byte(`{"Item":[]}`), "not a Citadel tables file"},
		"format":    {flip(4), "format"},
		"schema":    {flip(6), "different table schema"},
		"checksum":  {flip(len(good) - 1), "checksum"},
		"truncated": {good[:len(good)-10], "checksum"},
	} {
		_, err := gamedata.Schema.Decode(tc.data)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error about %q", name, err, tc.want)
		}
	}
}

// The rules the data was exported with run again on load: a table that
// breaks one is refused with every problem listed.
func TestLoadRunsTheRules(t *testing.T) {
	s, err := gamedata.Schema.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	s.MonsterByID[101].Drops = append(s.MonsterByID[101].Drops, 999)
	s.MonsterByID[102].DropChance = 150
	err = tables.Validate(s)
	var ve *tables.ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 2 {
		t.Fatalf("got %v, want 2 problems", err)
	}
	msg := err.Error()
	for _, want := range []string{`Drops "999" is not in Item.ID`, "DropChance 150 is outside 0..100", "Monster row 1", "Monster row 2"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q missing from:\n%s", want, msg)
		}
	}
}

func TestHolderReloadsRefusesAndWatches(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tables.bin")
	good := sampleBytes(t)
	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := tables.NewHolder(gamedata.Schema, tables.HolderConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	v1 := h.Current()
	if h.Pin() != tables.Set(v1) {
		t.Fatal("Pin and Current disagree")
	}

	// A damaged file is refused; the current tables stay.
	os.WriteFile(path, good[:len(good)/2], 0o644)
	if err := h.Reload(); err == nil {
		t.Fatal("a truncated file was accepted")
	}
	if h.Current() != v1 {
		t.Fatal("a refused reload changed the tables")
	}

	// A new version (re-exported from changed sources) is swapped in.
	v2data, _ := tablestest.Export(t, sampleSrc, tablestest.Replace("Item.csv", "4,sword,Iron Sword,Weapon,120,12", "4,sword,Iron Sword,Weapon,120,13"))
	os.WriteFile(path, v2data, 0o644)
	if err := h.Reload(); err != nil {
		t.Fatal(err)
	}
	s := h.Current()
	if s.Version == v1.Version || s.ItemByKey["sword"].Power != 13 || v1.ItemByKey["sword"].Power != 12 {
		t.Fatalf("reload: version %s (was %s), sword %d", s.Version, v1.Version, s.ItemByKey["sword"].Power)
	}
	if gamedata.Of(h.Pin()) != s {
		t.Fatal("Pin does not give the reloaded set")
	}

	// Watch picks up a change of the file.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.Watch(ctx, 10*time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	os.WriteFile(path, good, 0o644)
	os.Chtimes(path, time.Now().Add(time.Second), time.Now().Add(time.Second))
	for deadline := time.Now().Add(5 * time.Second); h.Current().Version != v1.Version; {
		if time.Now().After(deadline) {
			t.Fatal("watch did not reload the changed file")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Built-in tables come from the schema; without a path and without any
// built in, the holder says what to do.
func TestHolderUsesTheBuiltInTables(t *testing.T) {
	h, err := tables.NewHolder(gamedata.Schema, tables.HolderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if h.Current().ItemByKey["sword"] == nil {
		t.Fatal("no sword in the built-in tables")
	}
	if err := h.Watch(context.Background(), time.Second); err == nil || !strings.Contains(err.Error(), "built in") {
		t.Fatalf("watching built-in tables: %v", err)
	}
}
