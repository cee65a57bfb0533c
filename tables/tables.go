// Package tables is the designer-table machinery any Citadel game uses:
// a game's designers keep tabtoy sources (an index, a type table, CSV and
// .xlsx data); `citadel-tables export` (package tables/export) checks them
// and generates the game's own package: tabtoy's Go types, a reader for
// Citadel's data file generated field by field, the data file itself, and
// a Schema that ties them to this package. A server loads that data file
// (built into the binary, or from disk) and swaps in new versions while it
// runs (Holder).
//
// A game's generated package (the sample's is game/sample/gamedata)
// declares
//
//	type Set struct {
//		*Table      // tabtoy's rows and indexes: set.ItemByID[4]
//		tables.Info // the version and its rules: set.Version
//	}
//	var Schema = tables.NewSchema(...)
//
// and a server holds it with tables.NewHolder(gamedata.Schema, ...).
package tables

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"reflect"
	"strconv"

	"github.com/citadel-go/citadel/tables/rules"
)

// Set is one loaded and validated version of a game's tables: the Set type
// citadel-tables generates for the game, which embeds its tabtoy Table and
// an Info. A Set is immutable: a reload makes a new one.
type Set interface {
	// TablesInfo returns the version's Info (promoted from the embedded
	// Info).
	TablesInfo() *Info
}

// Info is what a loaded version carries beside its rows. A game's
// generated Set embeds it, so set.Version reads as the set's own.
type Info struct {
	// Version is the data's content hash (the same content always has the
	// same version).
	Version string
	// Rules are the checks the data was exported with; they ran again on
	// load.
	Rules []rules.Rule

	table any      // the game's *Table, for the rules and Rows
	names []string // its tables, in data file order
}

// TablesInfo implements Set for the generated Set that embeds Info.
func (i *Info) TablesInfo() *Info { return i }

// Rows counts the rows of every table.
func (i *Info) Rows() map[string]int {
	out := make(map[string]int, len(i.names))
	v := reflect.ValueOf(i.table).Elem()
	for _, name := range i.names {
		out[name] = v.FieldByName(name).Len()
	}
	return out
}

// Table is what tabtoy generates for every game: BuildData builds the
// indexes (ItemByID, ...) once the rows are in.
type Table interface {
	BuildData() error
}

// Schema is how a game's generated code reads its data files. citadel-tables
// generates one per game (the Schema variable in load_gen.go); S is the
// game's generated *Set.
type Schema[S Set] struct {
	hash     uint64
	names    []string
	embedded []byte
	decode   func(r *Reader, info Info) (S, error)
}

// NewSchema is called by generated code. hash identifies the shape of the
// tables the code was generated for (a data file exported for another
// shape is refused); names lists the tables in data file order; embedded
// is the data file built into the binary (nil if none); read reads every
// table's rows (generated field by field, no reflection); wrap makes the
// game's Set.
func NewSchema[T Table, S Set](hash uint64, names []string, embedded []byte, read func(*Reader) T, wrap func(T, Info) S) *Schema[S] {
	return &Schema[S]{hash: hash, names: names, embedded: embedded, decode: func(r *Reader, info Info) (S, error) {
		var none S
		t := read(r)
		if err := r.finish(); err != nil {
			return none, err
		}
		if err := t.BuildData(); err != nil {
			return none, fmt.Errorf("tables: building the indexes: %w", err)
		}
		info.table, info.names = t, names
		return wrap(t, info), nil
	}}
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
var ErrSchema = errors.New("tables: data file was exported for a different table schema; " +
	"export the tables again (citadel-tables export, or go generate in the game's tables package) and rebuild the server")

// Decode reads a data file: it checks its format, checksum and schema,
// builds the indexes and runs the rules it carries. It never returns a
// partly valid Set.
func (sc *Schema[S]) Decode(data []byte) (S, error) {
	var none S
	const header = 4 + 1 + 8 + 4
	if len(data) < header || string(data[:4]) != "CTBL" {
		return none, errors.New("tables: not a Citadel tables file (no CTBL header)")
	}
	if data[4] != 1 {
		return none, fmt.Errorf("tables: data file format %d; this build reads format 1", data[4])
	}
	if binary.BigEndian.Uint64(data[5:13]) != sc.hash {
		return none, ErrSchema
	}
	body := data[header:]
	if crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)) != binary.BigEndian.Uint32(data[13:17]) {
		return none, errors.New("tables: data file checksum mismatch (damaged or truncated)")
	}
	r := &Reader{s: string(body)}
	info := Info{Version: r.Str()}
	for n := r.Count(); n > 0 && r.err == nil; n-- {
		table, field, kind, arg := r.Str(), r.Str(), r.Str(), r.Str()
		rule, err := rules.Parse(table, field, kind, arg, rules.Location{File: "rules"})
		if err != nil {
			return none, fmt.Errorf("tables: data file carries a bad rule: %w", err)
		}
		info.Rules = append(info.Rules, rule)
	}
	if r.err != nil {
		return none, r.err
	}
	s, err := sc.decode(r, info)
	if err != nil {
		return none, err
	}
	if err := Validate(s); err != nil {
		return none, err
	}
	return s, nil
}

// LoadFile reads and decodes a data file.
func (sc *Schema[S]) LoadFile(path string) (S, error) {
	var none S
	data, err := os.ReadFile(path)
	if err != nil {
		return none, fmt.Errorf("tables: %w", err)
	}
	s, err := sc.Decode(data)
	if err != nil {
		return none, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Embedded decodes the data file built into the binary.
func (sc *Schema[S]) Embedded() (S, error) {
	if sc.embedded == nil {
		var none S
		return none, errors.New("tables: no tables are built into this binary; give a data file")
	}
	return sc.Decode(sc.embedded)
}

// Validate runs s's rules over its tables; a *ValidationError lists every
// problem.
func Validate(s Set) error {
	info := s.TablesInfo()
	if problems := rules.Check(dataset{info.table}, info.Rules); len(problems) > 0 {
		return &ValidationError{Problems: problems}
	}
	return nil
}

// dataset shows a game's Table to the rules: fields by reflection, values
// as strings.
type dataset struct{ t any }

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
