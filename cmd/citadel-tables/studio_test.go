package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"
	"golang.org/x/text/encoding/simplifiedchinese"
)

// studio makes a game studio's module outside the repository: its own
// go.mod requiring Citadel (replaced by this checkout) and Citadel's
// go.sum, and the table sources given (name -> content).
func studio(t *testing.T, files map[string][]byte) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gomod := "module example.com/studio\n\ngo 1.26.0\n\nrequire github.com/citadel-go/citadel v0.0.0\n\n" +
		"replace github.com/citadel-go/citadel => " + root + "\n"
	files["go.mod"] = []byte(gomod)
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	files["go.sum"] = sum
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// goIn runs the go command in dir and returns its output and exit code.
// The modules come from the module cache this checkout uses (and the
// module proxy for any it lacks), checked against Citadel's go.sum.
func goIn(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("go %s: %v", strings.Join(args, " "), err)
	}
	return string(out), 0
}

const studioType = `种类,对象类型,标识名,字段名,字段类型,数组切割,值,索引
枚举,Rarity,,Common,int,,0,
枚举,Rarity,稀有,Rare,int,,1,
表头,Item,编号,ID,int,,,是
表头,Item,名称,Name,string,,,
表头,Item,稀有度,Rarity,Rarity,,,
表头,Item,价格,Price,int,,,
表头,Monster,编号,ID,int,,,是
表头,Monster,名称,Name,string,,,
表头,Monster,掉落,Drops,int,;,,
表头,Level,等级,Level,int,,,是
表头,Level,经验,XP,int,,,
`

const studioIndex = "模式,表类型,表文件名\n类型表,,Type.csv\n数据表,Item,Item.csv\n数据表,Monster,Monster.xlsx\n数据表,Level,Level.csv\n"

const studioChecks = "Table,Field,Rule,Arg\nMonster,Drops,ref,Item.ID\nLevel,XP,ascending,\n"

// monsters writes Monster.xlsx: two sheets, with edit applied to the file
// before it is saved.
func monsters(t *testing.T, edit func(f *excelize.File)) []byte {
	t.Helper()
	f := excelize.NewFile()
	defer f.Close()
	f.SetSheetName("Sheet1", "Beasts")
	f.NewSheet("Undead")
	rows := map[string][][]any{
		"Beasts": {{"ID", "Name", "Drops"}, {101, "Wolf", "1;2"}, {102, "Bear", "2"}},
		"Undead": {{"ID", "Name", "Drops"}, {201, "Ghoul", "1"}, {202, "Lich", "2;1"}},
	}
	for sheet, rs := range rows {
		for i, r := range rs {
			cell, _ := excelize.CoordinatesToCellName(1, i+1)
			if err := f.SetSheetRow(sheet, cell, &r); err != nil {
				t.Fatal(err)
			}
		}
	}
	if edit != nil {
		edit(f)
	}
	var buf bytes.Buffer
	if err := f.Write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The must-show: a studio runs citadel-tables from its own module
// on tables with six problems of different kinds and gets every one, each
// with its file, sheet, row, column and a fix, and exit status 1. Before
// tabtoy was built in, this failed at once (`go: no such tool "tabtoy"`),
// and tabtoy alone reports only the first of the three it can see.
func TestStudioModuleGetsEveryProblem(t *testing.T) {
	if testing.Short() {
		t.Skip("builds citadel-tables in a new module")
	}
	// A comment row in Chinese: its bytes are what is not UTF-8.
	gbk, err := simplifiedchinese.GBK.NewEncoder().Bytes([]byte("Level,XP\n1,0\n2,100\n# 满级\n3,250\n"))
	if err != nil {
		t.Fatal(err)
	}
	dir := studio(t, map[string][]byte{
		"tables/Index.csv":  []byte(studioIndex),
		"tables/Checks.csv": []byte(studioChecks),
		// 1. an unknown type in the type table (tabtoy: UnknownFieldType)
		"tables/Type.csv": []byte(strings.Replace(studioType, "表头,Item,价格,Price,int", "表头,Item,价格,Price,integer", 1) +
			"表头,Item,重量,Weight,int,,,\n"),
		// 2. a word in an int column, 3. an unknown enum value, 4. a
		// duplicate key (tabtoy stops at the first of these)
		"tables/Item.csv": []byte("ID,Name,Rarity,Price,Weight\n1,Sword,Common,10,heavy\n2,Shield,Epic,20,5\n2,Bow,Rare,30,2\n"),
		// 5. a merged cell, 6. a reference to no item (sheet Undead)
		"tables/Monster.xlsx": monsters(t, func(f *excelize.File) {
			f.SetCellValue("Undead", "C3", "2;99")
			if err := f.MergeCell("Beasts", "B3", "C3"); err != nil {
				t.Fatal(err)
			}
		}),
		// 7. a CSV saved as GBK
		"tables/Level.csv": gbk,
	})
	out, code := goIn(t, dir, "run", "github.com/citadel-go/citadel/cmd/citadel-tables", "check", "-src", "tables")
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{
		`Type.csv row 7, column E: Item.Price: unknown type "integer": want int,`,
		`Item.csv row 2, column E (Weight): "heavy" is not a whole number of type int`,
		`Item.csv row 3, column C (Rarity): "Epic" is not a value of enum Rarity: write one of Common, Rare`,
		`Item.csv row 4, column A (ID): duplicate ID "2" (first at row 3)`,
		`Monster.xlsx [Beasts] row 3, column B: cells B3:C3 are merged`,
		`Monster.xlsx [Undead] row 3, column C (Drops): Drops "99" is not in Item.ID`,
		`Level.csv row 4: the file is not UTF-8 (it reads as GBK`, `iconv -f GBK -t UTF-8 Level.csv`,
		"7 problem(s); nothing written",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

// A studio exports its tables into its own package and a server of its
// own loads them: the generated code compiles, vets and reads the data.
func TestStudioModuleExportsCodeThatLoads(t *testing.T) {
	if testing.Short() {
		t.Skip("builds citadel-tables and a server in a new module")
	}
	dir := studio(t, map[string][]byte{
		"tables/Index.csv":    []byte(studioIndex),
		"tables/Checks.csv":   []byte(studioChecks),
		"tables/Type.csv":     []byte(studioType),
		"tables/Item.csv":     []byte("ID,Name,Rarity,Price\n1,Sword,Common,10\n2,Shield,稀有,20\n"),
		"tables/Monster.xlsx": monsters(t, nil),
		"tables/Level.csv":    []byte("Level,XP\n1,0\n2,100\n"),
		"main.go": []byte(`package main

import (
	"fmt"
	"os"

	"example.com/studio/gamedata"
	"github.com/citadel-go/citadel/tables"
)

func main() {
	h, err := tables.NewHolder(gamedata.Schema, tables.HolderConfig{})
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	s := gamedata.Of(h.Pin())
	fmt.Printf("version %s: %s is %s; %s drops %v; rows %v\n", s.Version, s.ItemByID[2].Name, s.ItemByID[2].Rarity,
		s.MonsterByID[202].Name, s.MonsterByID[202].Drops, s.Rows())
}
`),
	})
	out, code := goIn(t, dir, "run", "github.com/citadel-go/citadel/cmd/citadel-tables", "export", "-src", "tables", "-out", "gamedata")
	if code != 0 {
		t.Fatalf("export: exit %d:\n%s", code, out)
	}
	version := ""
	if i := strings.Index(out, "version "); i >= 0 {
		version = strings.Fields(out[i+len("version "):])[0]
	}
	if version == "" {
		t.Fatalf("export printed no version:\n%s", out)
	}
	// The studio's own code now imports Citadel's packages: go.mod gets
	// the requirements they bring, as a studio's `go mod tidy` would.
	if out, code := goIn(t, dir, "mod", "tidy"); code != 0 {
		t.Fatalf("go mod tidy: exit %d:\n%s", code, out)
	}
	if out, code := goIn(t, dir, "vet", "./..."); code != 0 {
		t.Fatalf("go vet of the generated package: exit %d:\n%s", code, out)
	}
	out, code = goIn(t, dir, "run", ".")
	want := "version " + version + ": Shield is Rare; Lich drops [2 1]; rows map[Item:2 Level:2 Monster:4]"
	if code != 0 || !strings.Contains(out, want) {
		t.Fatalf("the studio's server: exit %d, want %q:\n%s", code, want, out)
	}
}
