// Package export turns designers' tables (tabtoy sources: an index, a type
// table, CSV and .xlsx data) into what Citadel loads: tabtoy's generated Go
// types, tabtoy's JSON, Citadel's data file and its generated reader.
//
// It checks what tabtoy misses (a UTF-8 BOM, a blank row or header cell
// that silently truncates a table, an unknown table kind that silently
// skips one, references between tables, ranges: Checks.csv) and reports
// every problem with its file, sheet, row and column. Nothing is written
// unless everything passes.
package export

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/citadel-go/citadel/tables/rules"
)

// Options says what to export and where.
type Options struct {
	// Src holds the index and the files it names. Default "src".
	Src string
	// Index is the index file, in Src. Default "Index.csv".
	Index string
	// Checks is Citadel's rules file, in Src; optional. Default "Checks.csv".
	Checks string
	// Out receives table_gen.go, load_gen.go, data/tables.json and
	// data/tables.bin. Empty checks only.
	Out string
	// Package of the generated Go code. Default "tables".
	Package string
}

// Result describes a successful export.
type Result struct {
	// Version is the data's content hash, as the runtime reports it.
	Version string
	// Rows per table.
	Rows map[string]int
	// Written and Unchanged list the output files (relative to Out).
	Written, Unchanged []string
}

// Output files, relative to Options.Out.
const (
	GoFile     = "table_gen.go"
	ReaderFile = "load_gen.go"
	JSONFile   = "data/tables.json"
	DataFile   = "data/tables.bin"
)

// Problems is returned when the sources have problems.
type Problems []rules.Problem

func (p Problems) Error() string {
	if len(p) == 1 {
		return "tables: " + p[0].String()
	}
	return fmt.Sprintf("tables: %d problems, the first: %s", len(p), p[0])
}

// Run checks the sources and, if they pass and Out is set, writes the
// outputs. Problems in the sources come back as a Problems error; any other
// error is the tool's own (tabtoy missing, a file not writable).
func Run(opts Options) (*Result, error) {
	if opts.Src == "" {
		opts.Src = "src"
	}
	if opts.Index == "" {
		opts.Index = "Index.csv"
	}
	if opts.Checks == "" {
		opts.Checks = "Checks.csv"
	}
	if opts.Package == "" {
		opts.Package = "tables"
	}
	sc, problems := loadSchema(opts.Src, opts.Index)
	if len(problems) > 0 {
		return nil, Problems(problems)
	}
	if _, err := os.Stat(filepath.Join(opts.Src, opts.Checks)); err == nil {
		if ps := sc.readRules(opts.Src, opts.Checks); len(ps) > 0 {
			return nil, Problems(ps)
		}
	}

	bin, err := tabtoyBinary()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "citadel-tables")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	goOut, jsonOut := filepath.Join(tmp, GoFile), filepath.Join(tmp, "tables.json")
	problems = append(problems, runTabtoy(bin, opts.Src, opts.Index, opts.Package, goOut, jsonOut)...)
	problems = append(problems, sc.rulesCheck()...)
	if len(problems) > 0 {
		return nil, Problems(problems)
	}

	genGo, err := os.ReadFile(goOut)
	if err != nil {
		return nil, fmt.Errorf("tabtoy wrote no Go code: %w", err)
	}
	jsonData, err := os.ReadFile(jsonOut)
	if err != nil {
		return nil, fmt.Errorf("tabtoy wrote no JSON: %w", err)
	}
	data, version, err := encode(sc, jsonData)
	if err != nil {
		return nil, err
	}
	reader, err := genReader(sc, opts.Package)
	if err != nil {
		return nil, err
	}
	res := &Result{Version: version, Rows: rowCounts(jsonData)}
	if opts.Out == "" {
		return res, nil
	}
	outputs := map[string][]byte{GoFile: genGo, ReaderFile: reader, JSONFile: jsonData, DataFile: data}
	names := make([]string, 0, len(outputs))
	for name := range outputs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		changed, err := writeIfChanged(filepath.Join(opts.Out, name), outputs[name])
		if err != nil {
			return nil, err
		}
		if changed {
			res.Written = append(res.Written, name)
		} else {
			res.Unchanged = append(res.Unchanged, name)
		}
	}
	return res, nil
}

func rowCounts(jsonData []byte) map[string]int {
	var doc map[string]json.RawMessage
	json.Unmarshal(jsonData, &doc)
	out := make(map[string]int)
	for name, raw := range doc {
		var rows []json.RawMessage
		if json.Unmarshal(raw, &rows) == nil {
			out[name] = len(rows)
		}
	}
	return out
}

// writeIfChanged replaces path with data (through a temporary file and a
// rename) unless it already holds exactly that.
func writeIfChanged(path string, data []byte) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return false, err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return false, err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return false, err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return false, err
	}
	return true, os.Rename(f.Name(), path)
}
