package tables_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/citadel-go/citadel/game/sample/gamedata"
	"github.com/citadel-go/citadel/tables/export"
	"github.com/citadel-go/citadel/tables/tablestest"
	tabtoy "github.com/davyxu/tabtoy/v3/api/golang"
)

// BenchmarkLoad100kRows: loading 100,000 item rows, Citadel's data file
// (generated reader, indexes built, the rules checked) vs tabtoy's JSON
// loader (LoadFromData: encoding/json, indexes built), same data, same run.
// The data is exported from the sample game's sources with Item.csv grown
// to 100,000 rows, and read with the sample's generated code (gamedata).
// Target: ratio at least 4.
func BenchmarkLoad100kRows(b *testing.B) {
	const rows = 100_000
	src := tablestest.Sources(b, sampleSrc, func(name string, data []byte) []byte {
		if name != "Item.csv" {
			return data
		}
		var sb strings.Builder
		sb.Write(data)
		for id := 13; id <= rows; id++ {
			fmt.Fprintf(&sb, "%d,item-%d,Generated item %d,Material,%d,%d,%d,99,gen|bulk,\n", id, id, id, id%1000, id%50, id%7)
		}
		return []byte(sb.String())
	})
	out := b.TempDir()
	start := time.Now()
	res, err := export.Run(export.Options{Src: src, Out: out, Package: "gamedata"})
	if err != nil {
		b.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "tables benchmark: exported %d items in %v\n", res.Rows["Item"], time.Since(start).Round(time.Millisecond))
	jsonData, err := os.ReadFile(filepath.Join(out, export.JSONFile))
	if err != nil {
		b.Fatal(err)
	}
	bin, err := os.ReadFile(filepath.Join(out, export.DataFile))
	if err != nil {
		b.Fatal(err)
	}
	var jsonTime, citadelTime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		t := gamedata.NewTable()
		if err := tabtoy.LoadFromData(t, jsonData); err != nil {
			b.Fatal(err)
		}
		jsonTime += time.Since(start)
		if len(t.ItemByID) != rows {
			b.Fatalf("tabtoy loaded %d items", len(t.ItemByID))
		}
		start = time.Now()
		s, err := gamedata.Schema.Decode(bin)
		if err != nil {
			b.Fatal(err)
		}
		citadelTime += time.Since(start)
		if len(s.ItemByID) != rows || !reflect.DeepEqual(s.ItemByID[54321], t.ItemByID[54321]) {
			b.Fatalf("the loaders disagree: %+v vs %+v", s.ItemByID[54321], t.ItemByID[54321])
		}
	}
	n := time.Duration(b.N)
	b.ReportMetric(float64((jsonTime / n).Milliseconds()), "tabtoy-json-ms")
	b.ReportMetric(float64((citadelTime/n).Microseconds())/1000, "citadel-ms")
	b.ReportMetric(float64(jsonTime)/float64(citadelTime), "ratio")
	b.ReportMetric(float64(len(jsonData))/1e6, "json-MB")
	b.ReportMetric(float64(len(bin))/1e6, "bin-MB")
}
