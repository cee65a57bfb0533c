package gamedata_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/citadel-go/citadel/game/sample/gamedata"
	"github.com/citadel-go/citadel/tables/export"
)

// The export from src succeeds, and the generated files in the repository
// are what it produces now (a designer who edits src and forgets
// `go generate ./game/sample/gamedata` fails this test).
func TestGeneratedFilesAreUpToDate(t *testing.T) {
	out := t.TempDir()
	res, err := export.Run(export.Options{Src: "src", Out: out, Package: "gamedata"})
	if err != nil {
		t.Fatalf("export from src: %v", err)
	}
	for _, name := range []string{export.GoFile, export.ReaderFile, export.JSONFile, export.DataFile} {
		fresh, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(name)
		if err != nil {
			t.Fatalf("%s is missing: run go generate ./game/sample/gamedata", name)
		}
		if !bytes.Equal(fresh, committed) {
			t.Errorf("game/sample/gamedata/%s is out of date with src: run go generate ./game/sample/gamedata", name)
		}
	}
	s, err := gamedata.Schema.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != res.Version {
		t.Errorf("built-in tables are version %s, the sources export %s: run go generate ./game/sample/gamedata", s.Version, res.Version)
	}
}

func TestEmbeddedTablesAreTypedAndIndexed(t *testing.T) {
	s, err := gamedata.Schema.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	sword := s.ItemByKey["sword"]
	if sword == nil || sword.Power != 12 || sword.Kind != gamedata.ItemKind_Weapon || sword != s.ItemByID[sword.ID] {
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
	if gamedata.Of(s) != s {
		t.Fatal("Of does not give the set back")
	}
}
