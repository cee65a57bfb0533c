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

	"github.com/citadel-go/citadel/tables"
	"github.com/citadel-go/citadel/tables/export"
	"github.com/citadel-go/citadel/tables/tablestest"
)

// Must show 1: the export from tables/src succeeds, and the generated files
// in the repository are what it produces now (a designer who edits src and
// forgets `go generate ./tables` fails this test).
func TestGeneratedFilesAreUpToDate(t *testing.T) {
	out := t.TempDir()
	res, err := export.Run(export.Options{Src: "src", Out: out})
	if err != nil {
		t.Fatalf("export from tables/src: %v", err)
	}
	for _, name := range []string{export.GoFile, export.ReaderFile, export.JSONFile, export.DataFile} {
		fresh, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(name)
		if err != nil {
			t.Fatalf("%s is missing: run go generate ./tables", name)
		}
		if !bytes.Equal(fresh, committed) {
			t.Errorf("tables/%s is out of date with tables/src: run go generate ./tables", name)
		}
	}
	s, err := tables.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != res.Version {
		t.Errorf("built-in tables are version %s, the sources export %s: run go generate ./tables", s.Version, res.Version)
	}
}

func TestEmbeddedTablesAreTypedAndIndexed(t *testing.T) {
	s, err := tables.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	sword := s.ItemByKey["sword"]
	if sword == nil || sword.Power != 12 || sword.Kind != tables.ItemKind_Weapon || sword != s.ItemByID[sword.ID] {
		t.Fatalf("sword: %+v", sword)
	}
	lich := s.MonsterByID[204] // from the second sheet of Monster.xlsx
	if lich == nil || lich.Name != "Lich" || len(lich.Drops) != 3 || lich.Drops[0] != 10 {
		t.Fatalf("lich: %+v", lich)
	}
	if set := s.GetKeyValue_Setting(); set.MaxLevel != 15 || len(set.StartItems) != 8 {
		t.Fatalf("settings: %+v", set)
	}
	rows := s.Rows()
	if rows["Monster"] != 8 || rows["Level"] != 15 {
		t.Fatalf("rows %v", rows)
	}
	if len(s.Rules) == 0 {
		t.Fatal("the data file carries no rules")
	}
}

func embeddedBytes(t *testing.T) []byte {
	data, err := os.ReadFile(export.DataFile)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestDamagedFilesAreRefused(t *testing.T) {
	good := embeddedBytes(t)
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
		_, err := tables.Decode(tc.data)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error about %q", name, err, tc.want)
		}
	}
}

// The rules the data was exported with run again on load: a table that
// breaks one is refused with every problem listed.
func TestLoadRunsTheRules(t *testing.T) {
	s, err := tables.Embedded()
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
	good := embeddedBytes(t)
	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := tables.NewHolder(tables.HolderConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	v1 := h.Current()

	// A damaged file is refused; the current tables stay.
	os.WriteFile(path, good[:len(good)/2], 0o644)
	if _, err := h.Reload(); err == nil {
		t.Fatal("a truncated file was accepted")
	}
	if h.Current() != v1 {
		t.Fatal("a refused reload changed the tables")
	}

	// A new version (re-exported from changed sources) is swapped in.
	v2data, _ := tablestest.Export(t, tablestest.Replace("Item.csv", "4,sword,Iron Sword,Weapon,120,12", "4,sword,Iron Sword,Weapon,120,13"))
	os.WriteFile(path, v2data, 0o644)
	s, err := h.Reload()
	if err != nil {
		t.Fatal(err)
	}
	if s.Version == v1.Version || h.Current().ItemByKey["sword"].Power != 13 || v1.ItemByKey["sword"].Power != 12 {
		t.Fatalf("reload: version %s (was %s), sword %d", s.Version, v1.Version, h.Current().ItemByKey["sword"].Power)
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
