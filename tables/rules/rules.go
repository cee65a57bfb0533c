// Package rules holds Citadel's checks on designer tables, beyond the types
// tabtoy checks: references between tables, ranges, uniqueness and order.
// The same rules run at export (over the source files, so a problem names
// its file, sheet and cell) and at load (over the typed tables, so a hot
// reload is validated before it is used).
//
// Rules are written by designers in Checks.csv beside the index:
//
//	Table,Field,Rule,Arg
//	Monster,Drops,ref,Item.ID
//	Monster,DropChance,range,0..100
//	Level,XP,ascending,
//
// Kinds: ref (every value, array elements included, exists in
// Table.Field; an empty cell or 0 is "none" and allowed), range (min..max,
// inclusive; either side may be empty), unique (no value twice in the
// column), ascending (values strictly increase down the table), required
// (no empty or zero value).
package rules

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Location names a cell: for CSV the sheet is empty; Row is 1-based as a
// spreadsheet shows it; Col is the column letter, or the field name when the
// location is in loaded data rather than a source file.
type Location struct {
	File  string
	Sheet string
	Row   int
	Col   string
	Field string
}

func (l Location) String() string {
	var b strings.Builder
	b.WriteString(l.File)
	if l.Sheet != "" {
		fmt.Fprintf(&b, " [%s]", l.Sheet)
	}
	if l.Row > 0 {
		fmt.Fprintf(&b, " row %d", l.Row)
	}
	if l.Col != "" {
		fmt.Fprintf(&b, ", column %s", l.Col)
	}
	if l.Field != "" && l.Field != l.Col {
		fmt.Fprintf(&b, " (%s)", l.Field)
	}
	return b.String()
}

// Problem is one thing wrong, where it is.
type Problem struct {
	Where Location
	What  string
}

func (p Problem) String() string { return p.Where.String() + ": " + p.What }

// Kind is a rule's kind.
type Kind string

// Rule kinds.
const (
	Ref       Kind = "ref"
	Range     Kind = "range"
	Unique    Kind = "unique"
	Ascending Kind = "ascending"
	Required  Kind = "required"
)

// Rule is one check on one column.
type Rule struct {
	Table, Field string
	Kind         Kind
	Arg          string
	// Where the rule is written (for errors in the rule itself).
	Where Location

	refTable, refField string
	min, max           *float64
}

// Parse validates a rule's kind and argument.
func Parse(table, field, kind, arg string, where Location) (Rule, error) {
	r := Rule{Table: strings.TrimSpace(table), Field: strings.TrimSpace(field), Kind: Kind(strings.TrimSpace(kind)),
		Arg: strings.TrimSpace(arg), Where: where}
	if r.Table == "" || r.Field == "" {
		return r, fmt.Errorf("a rule needs a table and a field")
	}
	switch r.Kind {
	case Ref:
		t, f, ok := strings.Cut(r.Arg, ".")
		if !ok || t == "" || f == "" {
			return r, fmt.Errorf("ref needs Table.Field, got %q", r.Arg)
		}
		r.refTable, r.refField = t, f
	case Range:
		lo, hi, ok := strings.Cut(r.Arg, "..")
		if !ok {
			return r, fmt.Errorf("range needs min..max (either may be empty), got %q", r.Arg)
		}
		for _, side := range []struct {
			s   string
			dst **float64
		}{{lo, &r.min}, {hi, &r.max}} {
			if s := strings.TrimSpace(side.s); s != "" {
				v, err := strconv.ParseFloat(s, 64)
				if err != nil {
					return r, fmt.Errorf("range bound %q is not a number", s)
				}
				*side.dst = &v
			}
		}
	case Unique, Ascending, Required:
	default:
		return r, fmt.Errorf("unknown rule %q (want ref, range, unique, ascending or required)", r.Kind)
	}
	return r, nil
}

// Value is one cell value (one element of an array). Numbers carry N;
// everything else S.
type Value struct {
	S   string
	N   float64
	Num bool
}

func (v Value) String() string {
	if v.Num {
		return strconv.FormatFloat(v.N, 'f', -1, 64)
	}
	return v.S
}

// none is an empty cell or a zero: "no value" for ref and required.
func (v Value) none() bool {
	if v.Num {
		return v.N == 0
	}
	return v.S == "" || v.S == "0"
}

// key compares values across columns: numbers by value, text as written.
type key struct {
	s string
	n float64
}

func (v Value) key() key {
	if v.Num {
		return key{n: v.N}
	}
	if f, err := strconv.ParseFloat(v.S, 64); err == nil {
		return key{n: f} // "7" in a text cell matches 7 in a number column
	}
	return key{s: v.S}
}

// Dataset gives the rules the columns of tables.
type Dataset interface {
	// Fields lists a table's fields; ok is false if there is no such table.
	Fields(table string) (fields []string, ok bool)
	// Column returns one field of a table; the field exists (Fields).
	Column(table, field string) Column
}

// Column is one field of a table, row by row.
type Column interface {
	Len() int
	// Values appends row i's values to dst: one for a scalar, the
	// elements of an array; an empty cell has none.
	Values(i int, dst []Value) []Value
	// Where locates row i's cell.
	Where(i int) Location
}

// Check runs rules over ds and returns every problem found.
func Check(ds Dataset, rules []Rule) []Problem {
	var out []Problem
	for _, r := range rules {
		out = append(out, r.check(ds)...)
	}
	return out
}

func hasField(ds Dataset, table, field string) error {
	fields, ok := ds.Fields(table)
	if !ok {
		return fmt.Errorf("no table %q", table)
	}
	for _, f := range fields {
		if f == field {
			return nil
		}
	}
	return fmt.Errorf("table %s has no field %q (fields: %s)", table, field, strings.Join(fields, ", "))
}

func (r Rule) check(ds Dataset) []Problem {
	bad := func(err error) []Problem {
		return []Problem{{Where: r.Where, What: fmt.Sprintf("rule %s %s.%s: %v", r.Kind, r.Table, r.Field, err)}}
	}
	if err := hasField(ds, r.Table, r.Field); err != nil {
		return bad(err)
	}
	col := ds.Column(r.Table, r.Field)
	var out []Problem
	var vals []Value
	problem := func(i int, format string, args ...any) {
		out = append(out, Problem{col.Where(i), fmt.Sprintf(format, args...)})
	}
	switch r.Kind {
	case Ref:
		if err := hasField(ds, r.refTable, r.refField); err != nil {
			return bad(err)
		}
		// The values used (usually few) are looked up in one pass over
		// the target column (usually long), without a set of all of it.
		type use struct {
			row int
			v   Value
		}
		uses := map[key][]use{}
		for i := 0; i < col.Len(); i++ {
			vals = col.Values(i, vals[:0])
			for _, v := range vals {
				if !v.none() {
					uses[v.key()] = append(uses[v.key()], use{i, v})
				}
			}
		}
		target := ds.Column(r.refTable, r.refField)
		for i := 0; i < target.Len() && len(uses) > 0; i++ {
			vals = target.Values(i, vals[:0])
			for _, v := range vals {
				delete(uses, v.key())
			}
		}
		var dangling []use
		for _, us := range uses {
			dangling = append(dangling, us...)
		}
		sort.Slice(dangling, func(a, b int) bool { return dangling[a].row < dangling[b].row })
		for _, u := range dangling {
			problem(u.row, "%s %q is not in %s.%s", r.Field, u.v.String(), r.refTable, r.refField)
		}
	case Range:
		for i := 0; i < col.Len(); i++ {
			vals = col.Values(i, vals[:0])
			for _, v := range vals {
				n, ok := v.N, v.Num
				if !ok {
					var err error
					n, err = strconv.ParseFloat(v.S, 64)
					ok = err == nil
				}
				switch {
				case !ok:
					problem(i, "%s %q is not a number (rule range %s)", r.Field, v.S, r.Arg)
				case r.min != nil && n < *r.min, r.max != nil && n > *r.max:
					problem(i, "%s %s is outside %s", r.Field, v.String(), r.Arg)
				}
			}
		}
	case Unique:
		seen := make(map[key]int)
		for i := 0; i < col.Len(); i++ {
			vals = col.Values(i, vals[:0])
			for _, v := range vals {
				if first, dup := seen[v.key()]; dup {
					problem(i, "%s %q already used at %s", r.Field, v.String(), col.Where(first))
					continue
				}
				seen[v.key()] = i
			}
		}
	case Ascending:
		var prev *float64
		for i := 0; i < col.Len(); i++ {
			vals = col.Values(i, vals[:0])
			if len(vals) != 1 {
				problem(i, "%s needs exactly one value (rule ascending)", r.Field)
				continue
			}
			k := vals[0].key()
			if k.s != "" {
				problem(i, "%s %q is not a number (rule ascending)", r.Field, vals[0].S)
				continue
			}
			if prev != nil && k.n <= *prev {
				problem(i, "%s %s does not increase (previous row: %v)", r.Field, vals[0].String(), *prev)
			}
			n := k.n
			prev = &n
		}
	case Required:
		for i := 0; i < col.Len(); i++ {
			vals = col.Values(i, vals[:0])
			if len(vals) == 0 {
				problem(i, "%s is empty", r.Field)
			}
			for _, v := range vals {
				if v.none() {
					problem(i, "%s is empty or zero", r.Field)
					break
				}
			}
		}
	}
	return out
}
