package export

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every kind of cell tabtoy would refuse (and a few it lets through) is
// reported, all in one run, with the cell and a fix.
func TestEveryBadCellIsReported(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{
		"Index.csv": "模式,表类型,表文件名\n类型表,,Type.csv\n数据表,Thing,Thing.csv\n键值表,Config,Config.csv\n",
		"Type.csv": "种类,对象类型,标识名,字段名,字段类型,数组切割,值,索引\n" +
			"枚举,Color,红,Red,int,,0,\n枚举,Color,,Blue,int,,1,\n" +
			"表头,Thing,编号,ID,int64,,,是\n表头,Thing,,Small,int16,,,\n表头,Thing,,On,bool,,,\n" +
			"表头,Thing,,Weight,float,,,\n表头,Thing,,Colors,Color,|,,\n表头,Thing,,2nd,int,,,\n",
		"Thing.csv": "ID,Small,On,Weight,Colors\n" +
			"1,70000,maybe,1.5,Red|Green\n" +
			"04, 5,yes,heavy,红|Blue\n" +
			"4,1,1,2,\n" +
			"9007199254740993,1,0,0,Red\n9007199254740992,1,0,0,Red\n",
		"Config.csv": "字段名,字段类型,标识名,值,数组切割\nSpeed,double,,fast,\nSpeed,int,,1,\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, problems := loadSchema(dir, "Index.csv")
	var got []string
	for _, p := range problems {
		got = append(got, p.String())
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{
		`Type.csv row 9, column D: field name "2nd" is not a Go identifier`,
		`Thing.csv row 2, column B (Small): "70000" is not a whole number of type int16: write one from -32768 to 32767`,
		`Thing.csv row 2, column C (On): "maybe" is not a bool: write true or false (yes/no, 1/0, 是/否)`,
		`Thing.csv row 2, column E (Colors): element "Green" is not a value of enum Color: write one of Red, Blue (or its 标识名)`,
		`Thing.csv row 3, column B (Small): " 5" is not a whole number of type int16: write one from -32768 to 32767; remove the spaces around it`,
		`Thing.csv row 3, column D (Weight): "heavy" is not a number (float): write one like 1.5`,
		`Thing.csv row 4, column A (ID): duplicate ID "4" (first at row 3)`,
		`Config.csv row 2, column D (Speed): "fast" is not a number (double)`,
		`Config.csv row 3, column A: Speed is already a field of Config at Config.csv row 2, column D (Speed)`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %q", want)
		}
	}
	if strings.Contains(all, "9007199254740992") {
		t.Error("two int64 keys that differ only past float64's precision were taken for one")
	}
	if len(problems) != 9 {
		t.Errorf("%d problems, want 9", len(problems))
	}
	if t.Failed() {
		t.Logf("got:\n%s", all)
	}
}
