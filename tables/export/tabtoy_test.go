package export

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// When tabtoy finds something Citadel's checks did not, the table is left
// out and tabtoy runs again on the rest: a problem per table in one run,
// each placed by tabtoy's cell reference. Citadel's own checks are skipped
// here (no known problems are passed) so that tabtoy meets the bad cells.
func TestTabtoyProblemsAreGatheredTableByTable(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{
		"Index.csv": "模式,表类型,表文件名\n类型表,,Type.csv\n数据表,Item,Item.csv\n数据表,Level,Level.csv\n数据表,Quest,Quest.csv\n",
		"Type.csv": "种类,对象类型,标识名,字段名,字段类型,数组切割,值,索引\n" +
			"表头,Item,编号,ID,int,,,是\n表头,Level,等级,Level,int,,,是\n表头,Quest,编号,ID,int,,,是\n",
		"Item.csv":  "ID\n1\nlots\n",
		"Level.csv": "Level\n1\n1\n",
		"Quest.csv": "ID\n1\n2\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sc, known := loadSchema(dir, "Index.csv")
	if sc == nil || len(known) != 2 {
		t.Fatalf("Citadel's checks: %v, want 2 problems", known)
	}
	out, problems, err := sc.tabtoy(dir, "Index.csv", "gamedata", nil)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil || len(problems) != 2 {
		t.Fatalf("got output %v and problems %v, want no output and 2 problems", out != nil, problems)
	}
	got := problems[0].String() + "\n" + problems[1].String()
	for _, want := range []string{
		"Item.csv row 3, column A: value does not match the column's type: int 'lots'",
		"Level.csv row 3, column A: duplicate value in an indexed (unique) column: '1'",
		"(found by tabtoy)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("%q missing from:\n%s", want, got)
		}
	}

	// Once the tables are fixed, one run exports them all.
	os.WriteFile(filepath.Join(dir, "Item.csv"), []byte("ID\n1\n2\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "Level.csv"), []byte("Level\n1\n2\n"), 0o644)
	sc, known = loadSchema(dir, "Index.csv")
	if len(known) != 0 {
		t.Fatal(known)
	}
	out, problems, err = sc.tabtoy(dir, "Index.csv", "gamedata", nil)
	if err != nil || out == nil || len(problems) != 0 || !strings.Contains(string(out.json), `"Quest"`) {
		t.Fatalf("clean tables: err %v, problems %v", err, problems)
	}
}

// tabtoy's own CSV loader guesses the encoding from the first kilobyte and
// converts a file it does not take for UTF-8 from GBK: Chinese text after
// an ASCII first kilobyte came out garbled ("铁剑" as "閾佸墤"). The cells
// now reach tabtoy as read.
func TestChineseAfterTheFirstKilobyteSurvives(t *testing.T) {
	dir := t.TempDir()
	var items strings.Builder
	items.WriteString("ID,Name\n")
	for id := 1; items.Len() < 2000; id++ {
		fmt.Fprintf(&items, "%d,Generated item %d\n", id, id)
	}
	items.WriteString("9999,铁剑\n")
	for name, data := range map[string]string{
		"Index.csv": "模式,表类型,表文件名\n类型表,,Type.csv\n数据表,Item,Item.csv\n",
		"Type.csv":  "种类,对象类型,标识名,字段名,字段类型,数组切割,值,索引\n表头,Item,编号,ID,int,,,是\n表头,Item,名称,Name,string,,,\n",
		"Item.csv":  items.String(),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	if _, err := Run(Options{Src: dir, Out: out, Package: "gamedata"}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(out, JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"Name": "铁剑"`) {
		t.Fatalf("the Chinese name did not survive the export")
	}
}
