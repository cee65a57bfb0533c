package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/citadel-go/citadel/tables/export"
	"github.com/citadel-go/citadel/tables/tablestest"
	"github.com/xuri/excelize/v2"
	"golang.org/x/text/encoding/simplifiedchinese"
)

const srcDir = "../../game/sample/gamedata/src"

// sources copies the sample game's table sources to a temporary folder.
func sources(t *testing.T) string { return tablestest.Sources(t, srcDir, nil) }

func editCSV(t *testing.T, dir, file, old, new string) {
	t.Helper()
	path := filepath.Join(dir, file)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(old)) {
		t.Fatalf("%s has no %q", file, old)
	}
	os.WriteFile(path, bytes.Replace(data, []byte(old), []byte(new), 1), 0o644)
}

func editXLSX(t *testing.T, dir, file, sheet, cell, value string) {
	t.Helper()
	path := filepath.Join(dir, file)
	f, err := excelize.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.SetCellValue(sheet, cell, value); err != nil {
		t.Fatal(err)
	}
	if err := f.SaveAs(path); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

var outputs = []string{export.GoFile, export.ReaderFile, export.JSONFile, export.DataFile}

// seededOut is an output folder holding a marker in every output file, to
// show a failed export overwrites nothing.
func seededOut(t *testing.T) string {
	out := t.TempDir()
	for _, name := range outputs {
		os.MkdirAll(filepath.Join(out, filepath.Dir(name)), 0o755)
		os.WriteFile(filepath.Join(out, name), []byte("previous export"), 0o644)
	}
	return out
}

func TestExportFromTheSources(t *testing.T) {
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"export", "-src", srcDir, "-out", out, "-package", "gamedata"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	for _, name := range outputs {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Errorf("%s not written: %v", name, err)
		}
	}
	if !strings.Contains(stdout.String(), "Monster 8") {
		t.Errorf("summary: %s", stdout.String())
	}
	if code := run([]string{"check", "-src", srcDir}, &stdout, &stderr); code != 0 {
		t.Fatalf("check exit %d", code)
	}
	if code := run([]string{"frobnicate"}, &stdout, &stderr); code != 2 {
		t.Fatalf("unknown command: exit %d", code)
	}
}

// Must show 2: each bad input gives a message naming the file and cell, a
// non-zero exit, and nothing overwritten.
func TestBadInputsNameTheCellAndWriteNothing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(t *testing.T, dir string)
		want   []string // every one in the output
	}{
		{"string in an int column", func(t *testing.T, d string) {
			editCSV(t, d, "Item.csv", "4,sword,Iron Sword,Weapon,120", "4,sword,Iron Sword,Weapon,cheap")
		}, []string{`Item.csv row 5, column E (Price): "cheap" is not a whole number of type int: write one from -2147483648 to 2147483647`}},
		{"unknown enum value", func(t *testing.T, d string) {
			editCSV(t, d, "Item.csv", "4,sword,Iron Sword,Weapon", "4,sword,Iron Sword,Magic")
		}, []string{`Item.csv row 5, column D (Kind): "Magic" is not a value of enum ItemKind: write one of None, Consumable, Weapon, Armor, Material`}},
		{"duplicate ID", func(t *testing.T, d string) {
			editCSV(t, d, "Item.csv", "5,shield", "4,shield")
		}, []string{`Item.csv row 6, column A (ID): duplicate ID "4" (first at row 5): ID is indexed (unique), ItemByID would keep only one of them`}},
		{"UTF-8 BOM", func(t *testing.T, d string) {
			data, _ := os.ReadFile(filepath.Join(d, "Level.csv"))
			os.WriteFile(filepath.Join(d, "Level.csv"), append([]byte("\ufeff"), data...), 0o644)
		}, []string{"Level.csv row 1, column A", "byte order mark"}},
		{"row after a blank row", func(t *testing.T, d string) {
			editCSV(t, d, "Level.csv", "5,100,210\n", "5,100,210\n,,\n")
		}, []string{"Level.csv row 7", "blank row", "drops row 8"}},
		{"dangling reference (second sheet of an .xlsx)", func(t *testing.T, d string) {
			editXLSX(t, d, "Monster.xlsx", "Undead", "H5", "10;99;11")
		}, []string{"Monster.xlsx [Undead] row 5, column H (Drops)", `Drops "99" is not in Item.ID`}},
		{"string in an int cell of an .xlsx", func(t *testing.T, d string) {
			editXLSX(t, d, "Monster.xlsx", "Beasts", "D3", "lots")
		}, []string{`Monster.xlsx [Beasts] row 3, column D (HP): "lots" is not a whole number`}},
		{"every problem is listed", func(t *testing.T, d string) {
			editXLSX(t, d, "Monster.xlsx", "Beasts", "H2", "404")
			editXLSX(t, d, "Monster.xlsx", "Beasts", "I3", "150")
			editCSV(t, d, "Setting.csv", "potion|potion", "potion|poison")
		}, []string{"3 problem(s)", `Drops "404" is not in Item.ID`, "DropChance 150 is outside 0..100",
			`Setting.csv row 3, column D (StartItems): StartItems "poison" is not in Item.Key`}},
		{"blank header cell", func(t *testing.T, d string) {
			editCSV(t, d, "Item.csv", "ID,Key,Name,Kind", "ID,Key,,Kind")
		}, []string{"Item.csv row 1, column C", "blank header cell"}},
		{"unknown table kind in the index", func(t *testing.T, d string) {
			editCSV(t, d, "Index.csv", "数据表,Level", "Datta,Level")
		}, []string{"Index.csv row 5, column A", `unknown table kind "Datta"`}},
		{"merged .xlsx cells", func(t *testing.T, d string) {
			path := filepath.Join(d, "Monster.xlsx")
			f, err := excelize.OpenFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.MergeCell("Beasts", "B2", "C2"); err != nil {
				t.Fatal(err)
			}
			if err := f.SaveAs(path); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}, []string{"Monster.xlsx [Beasts] row 2, column B: cells B2:C2 are merged: tabtoy reads the value only into B2", "unmerge them"}},
		{"a CSV saved as GBK", func(t *testing.T, d string) {
			path := filepath.Join(d, "Level.csv")
			data, _ := os.ReadFile(path)
			gbk, err := simplifiedchinese.GBK.NewEncoder().Bytes(bytes.Replace(data, []byte("5,100,210\n"), []byte("5,100,210\n# 五级\n"), 1))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(path, gbk, 0o644)
		}, []string{"Level.csv row 7: the file is not UTF-8 (it reads as GBK", "iconv -f GBK -t UTF-8 Level.csv", `"CSV UTF-8 (Comma delimited)"`}},
		{"a CSV row of another length", func(t *testing.T, d string) {
			editCSV(t, d, "Level.csv", "5,100,210\n", "5,100,210,7\n")
		}, []string{"Level.csv row 6: this row has 4 cells, the first row 3"}},
		{"unknown type in the type table", func(t *testing.T, d string) {
			editCSV(t, d, "Type.csv", "表头,Item,价格,Price,int", "表头,Item,价格,Price,integer")
		}, []string{`Type.csv row 11, column E: Item.Price: unknown type "integer": want int,`}},
		{"an enum number used twice", func(t *testing.T, d string) {
			editCSV(t, d, "Type.csv", "枚举,ItemKind,护甲,Armor,int,,3,", "枚举,ItemKind,护甲,Armor,int,,2,")
		}, []string{"Type.csv row 5, column G: enum ItemKind already uses the number 2 (at Type.csv row 4, column G)"}},
		{"a type table without 字段类型", func(t *testing.T, d string) {
			editCSV(t, d, "Type.csv", "字段名,字段类型", "字段名,类型")
		}, []string{"Type.csv row 1, column A: the type table needs the column(s) 字段类型 (FieldType)"}},
		{"a bad value in a key-value table", func(t *testing.T, d string) {
			editCSV(t, d, "Setting.csv", "MaxLevel,int,最高等级,15,", "MaxLevel,int,最高等级,fifteen,")
		}, []string{`Setting.csv row 4, column D (MaxLevel): "fifteen" is not a whole number of type int`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, out := sources(t), seededOut(t)
			tc.break_(t, dir)
			var stdout, stderr bytes.Buffer
			code := run([]string{"export", "-src", dir, "-out", out, "-package", "gamedata"}, &stdout, &stderr)
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s%s", code, stdout.String(), stderr.String())
			}
			for _, want := range tc.want {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, stdout.String())
				}
			}
			for _, name := range outputs {
				if data, _ := os.ReadFile(filepath.Join(out, name)); string(data) != "previous export" {
					t.Errorf("%s was overwritten by a failed export", name)
				}
			}
		})
	}
}
