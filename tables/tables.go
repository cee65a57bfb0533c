// Package tables holds the designer tables the game reads: items, monsters,
// the level curve and server settings.
//
// Designers edit the tabtoy sources in tables/src (CSV and .xlsx);
// `go generate ./tables` (or `go run ./cmd/citadel-tables export`) checks
// them and regenerates table_gen.go (tabtoy's types), load_gen.go (Citadel's
// reader), data/tables.json (tabtoy's JSON) and data/tables.bin (what the
// server loads). The data file is built into the binary, and a server can
// load a newer one from disk and swap it in while it runs (Holder).
package tables

//go:generate go run ../cmd/citadel-tables export -src src -out .

import (
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"reflect"
	"strconv"

	"github.com/citadel-go/citadel/tables/rules"
)

// Set is one loaded and validated version of the tables. It is immutable:
// a reload makes a new Set.
type Set struct {
	*Table
	// Version is the data's content hash (the same content always has the
	// same version).
	Version string
	// Rules are the checks the data was exported with; they ran again on
	// load.
	Rules []rules.Rule
}

// Rows counts the rows of every table.
func (s *Set) Rows() map[string]int {
	out := make(map[string]int, len(tableNames))
	v := reflect.ValueOf(s.Table).Elem()
	for _, name := range tableNames {
		out[name] = v.FieldByName(name).Len()
	}
	return out
}

// ValidationError lists what the rules found wrong with a data file.
type ValidationError struct {
	Problems []rules.Problem
}

func (e *ValidationError) Error() string {
	msg := fmt.Sprintf("tables: %d problem(s):", len(e.Problems))
	for i, p := range e.Problems {
		if i == 10 {
			msg += fmt.Sprintf("\n  ... and %d more", len(e.Problems)-10)
			break
		}
		msg += "\n  " + p.String()
	}
	return msg
}

// ErrSchema means a data file was exported for tables of another shape
// (fields added or changed since this binary was built).
var ErrSchema = errors.New("tables: data file was exported for a different table schema; rebuild the server with it (go generate ./tables)")

// Decode reads a data file: it checks its format, checksum and schema,
// builds the indexes and runs the rules it carries. It never returns a
// partly valid Set.
func Decode(data []byte) (*Set, error) {
	const header = 4 + 1 + 8 + 4
	if len(data) < header || string(data[:4]) != "CTBL" {
		return nil, errors.New("tables: not a Citadel tables file (no CTBL header)")
	}
	if data[4] != 1 {
		return nil, fmt.Errorf("tables: data file format %d; this build reads format 1", data[4])
	}
	if binary.BigEndian.Uint64(data[5:13]) != schemaHash {
		return nil, ErrSchema
	}
	body := data[header:]
	if crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)) != binary.BigEndian.Uint32(data[13:17]) {
		return nil, errors.New("tables: data file checksum mismatch (damaged or truncated)")
	}
	r := &reader{s: string(body)}
	s := &Set{Version: r.str()}
	for n := r.count(); n > 0 && r.err == nil; n-- {
		table, field, kind, arg := r.str(), r.str(), r.str(), r.str()
		rule, err := rules.Parse(table, field, kind, arg, rules.Location{File: "rules"})
		if err != nil {
			return nil, fmt.Errorf("tables: data file carries a bad rule: %w", err)
		}
		s.Rules = append(s.Rules, rule)
	}
	t := NewTable()
	if err := t.ResetData(); err != nil {
		return nil, err
	}
	decodeTables(r, t)
	if r.err != nil {
		return nil, r.err
	}
	if r.off != len(r.s) {
		return nil, fmt.Errorf("tables: %d unexpected bytes after the data", len(r.s)-r.off)
	}
	if err := t.BuildData(); err != nil {
		return nil, err
	}
	s.Table = t
	if err := Validate(s); err != nil {
		return nil, err
	}
	return s, nil
}

// Validate runs s's rules over its tables; a *ValidationError lists every
// problem.
func Validate(s *Set) error {
	if problems := rules.Check(dataset{s.Table}, s.Rules); len(problems) > 0 {
		return &ValidationError{Problems: problems}
	}
	return nil
}

// LoadFile reads and decodes a data file.
func LoadFile(path string) (*Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tables: %w", err)
	}
	s, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

//go:embed data/tables.bin
var embedded []byte

// Embedded decodes the tables built into the binary.
func Embedded() (*Set, error) { return Decode(embedded) }

// dataset shows a Table to the rules: fields by reflection, values as
// strings.
type dataset struct{ t *Table }

func (d dataset) table(name string) (reflect.Value, bool) {
	v := reflect.ValueOf(d.t).Elem().FieldByName(name)
	if !v.IsValid() || v.Kind() != reflect.Slice {
		return reflect.Value{}, false
	}
	return v, true
}

func (d dataset) Fields(name string) ([]string, bool) {
	v, ok := d.table(name)
	if !ok {
		return nil, false
	}
	et := v.Type().Elem().Elem() // []*Row
	out := make([]string, et.NumField())
	for i := range out {
		out[i] = et.Field(i).Name
	}
	return out, true
}

func (d dataset) Column(name, field string) rules.Column {
	v, _ := d.table(name)
	f, _ := v.Type().Elem().Elem().FieldByName(field)
	return column{table: name, field: field, rows: v, index: f.Index[0]}
}

// column reads one field of a table's rows by reflection (the field's
// index is looked up once).
type column struct {
	table, field string
	rows         reflect.Value // []*Row
	index        int
}

func (c column) Len() int { return c.rows.Len() }

func (c column) Values(i int, dst []rules.Value) []rules.Value {
	f := c.rows.Index(i).Elem().Field(c.index)
	if f.Kind() == reflect.Slice {
		for j := 0; j < f.Len(); j++ {
			dst = appendValue(dst, f.Index(j))
		}
		return dst
	}
	return appendValue(dst, f)
}

func (c column) Where(i int) rules.Location {
	return rules.Location{File: c.table, Row: i + 1, Field: c.field}
}

// appendValue appends v unless it is an empty string.
func appendValue(dst []rules.Value, v reflect.Value) []rules.Value {
	switch v.Kind() {
	case reflect.String:
		if v.Len() == 0 {
			return dst
		}
		return append(dst, rules.Value{S: v.String()})
	case reflect.Bool:
		return append(dst, rules.Value{S: strconv.FormatBool(v.Bool())})
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return append(dst, rules.Value{N: float64(v.Int()), Num: true})
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return append(dst, rules.Value{N: float64(v.Uint()), Num: true})
	case reflect.Float32, reflect.Float64:
		return append(dst, rules.Value{N: v.Float(), Num: true})
	}
	return append(dst, rules.Value{S: fmt.Sprint(v.Interface())})
}
