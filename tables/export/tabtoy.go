package export

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/citadel-go/citadel/tables/rules"
	"github.com/davyxu/golog"
	"github.com/davyxu/tabtoy/v3/compiler"
	"github.com/davyxu/tabtoy/v3/gen/gosrc"
	"github.com/davyxu/tabtoy/v3/gen/jsondata"
	"github.com/davyxu/tabtoy/v3/helper"
	"github.com/davyxu/tabtoy/v3/model"
	"github.com/davyxu/tabtoy/v3/report"
)

// tabtoyErrors explains tabtoy's error IDs (it prints them with a Chinese
// description only).
var tabtoyErrors = map[string]string{
	"HeaderNotMatchFieldName":        "header does not match the field",
	"HeaderFieldNotDefined":          "header names no field of the table (see the type table)",
	"DuplicateHeaderField":           "the same field has two header columns",
	"DuplicateKVField":               "the key-value table names a field twice",
	"UnknownFieldType":               "unknown field type",
	"DuplicateTypeFieldName":         "the type table defines a field twice",
	"EnumValueEmpty":                 "enum value is empty",
	"DuplicateEnumValue":             "duplicate enum value",
	"UnknownEnumValue":               "unknown enum value",
	"InvalidTypeTable":               "invalid type table",
	"HeaderTypeNotFound":             "the table's type is not in the type table",
	"DuplicateValueInMakingIndex":    "duplicate value in an indexed (unique) column",
	"UnknownInputFileExtension":      "unknown input file extension",
	"DataMissMatchTypeDefine":        "value does not match the column's type",
	"ArrayMultiColumnDefineNotMatch": "array columns are defined differently across files",
	"InvalidFieldName":               "invalid field name",
	"UnknownTypeKind":                "unknown type kind",
}

// tabtoy's report: "TableError.ID 中文 | context 'value' @File|Sheet(A5)".
var tabtoyError = regexp.MustCompile(`TableError\.(\w+) \S* ?\| (.*?)\s*@([^|@]*)\|([^(|]*)\(([A-Z]+)(\d+)\)`)

// tabtoyMu serializes tabtoy runs: its logger and its builtin type table
// setup are package state.
var tabtoyMu sync.Mutex

func init() {
	// tabtoy logs every step at debug level to stdout; its errors come back
	// as values.
	report.Log.SetLevel(golog.Level_Error)
}

// tabtoyOutput is what one tabtoy run produces.
type tabtoyOutput struct {
	goSrc, json []byte
}

// runTabtoy runs tabtoy's compiler in this process over the index entries
// given (Citadel's checks have passed them) and returns its Go code and
// JSON. tabtoy stops at the first problem: it comes back as a problem,
// located by tabtoy's cell reference. files caches the source files read
// across runs.
func runTabtoy(dir, index, pkg string, entries []indexEntry, files map[string]helper.TableFile) (out *tabtoyOutput, problem *rules.Problem, err error) {
	tabtoyMu.Lock()
	defer tabtoyMu.Unlock()
	idx := helper.NewCSVFile()
	sheet := idx.Sheets()[0]
	sheet.WriteRow("模式", "表类型", "表文件名")
	for _, e := range entries {
		sheet.WriteRow(e.kind, e.name, e.file)
	}
	g := model.NewGlobals()
	g.IndexFile = index
	g.PackageName = pkg
	g.CombineStructName = "Table"
	g.IndexGetter = fileGetter(func(string) (helper.TableFile, error) { return idx, nil })
	g.TableGetter = fileGetter(func(name string) (helper.TableFile, error) {
		if f, ok := files[name]; ok {
			return f, nil
		}
		var f helper.TableFile
		switch strings.ToLower(filepath.Ext(name)) {
		case ".csv":
			csvFile, err := loadCSV(filepath.Join(dir, name))
			if err != nil {
				return nil, err
			}
			f = csvFile
		case ".xlsx":
			f = helper.NewXlsxFile("")
			if err := f.Load(filepath.Join(dir, name)); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("unsupported file type (want .csv or .xlsx)")
		}
		files[name] = f
		return f, nil
	})
	if err := compile(g); err != nil {
		var te *report.TableError
		if errors.As(err, &te) {
			p := parseTabtoyError(te.Error(), index)
			return nil, &p, nil
		}
		p := rules.Problem{Where: rules.Location{File: index}, What: "tabtoy: " + err.Error()}
		return nil, &p, nil
	}
	out = &tabtoyOutput{}
	if out.goSrc, err = gosrc.Generate(g); err != nil {
		return nil, nil, fmt.Errorf("tabtoy's Go generator: %w", err)
	}
	if out.json, err = jsondata.Generate(g); err != nil {
		return nil, nil, fmt.Errorf("tabtoy's JSON generator: %w", err)
	}
	return out, nil, nil
}

// compile runs tabtoy's compiler. It recovers its own errors (panics with a
// *report.TableError); a panic of any other kind (a value it cannot parse
// deeper in, say) becomes an error here rather than ending the process.
func compile(g *model.Globals) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return compiler.Compile(g)
}

// loadCSV reads a CSV for tabtoy. tabtoy's own loader guesses the encoding
// from the first 1,024 bytes (an HTML sniffer) and, unless they say
// UTF-8, converts every cell from GBK: a UTF-8 file whose first kilobyte
// is ASCII has its later Chinese cells garbled, and every cell of a large
// file goes through the converter. Citadel has already refused anything
// but UTF-8 (readSheets), so the cells go to tabtoy as they are.
func loadCSV(path string) (*helper.CSVFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	records, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		return nil, err
	}
	f := helper.NewCSVFile()
	f.Name = strings.TrimSuffix(path, filepath.Ext(path))
	sheet := f.Sheets()[0]
	for _, r := range records {
		sheet.WriteRow(r...)
	}
	return f, nil
}

// fileGetter gives tabtoy its files without a working directory of its own:
// names in the index stay relative to the source folder.
type fileGetter func(name string) (helper.TableFile, error)

func (f fileGetter) GetFile(name string) (helper.TableFile, error) { return f(name) }

func parseTabtoyError(msg, index string) rules.Problem {
	m := tabtoyError.FindStringSubmatch(msg)
	if m == nil {
		return rules.Problem{Where: rules.Location{File: index}, What: "tabtoy: " + strings.TrimPrefix(msg, "\ufeff")}
	}
	what, ok := tabtoyErrors[m[1]]
	if !ok {
		what = m[1]
	}
	if ctx := strings.TrimSpace(strings.ReplaceAll(m[2], "\ufeff", "<BOM>")); ctx != "" {
		what += ": " + ctx
	}
	where := rules.Location{File: m[3], Col: m[5]}
	where.Row, _ = strconv.Atoi(m[6])
	if strings.HasSuffix(strings.ToLower(m[3]), ".xlsx") {
		where.Sheet = m[4] // a CSV's "sheet" is its file name
	}
	return rules.Problem{Where: where, What: what + " (found by tabtoy)"}
}
