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

// Dataset is tables as rows of string values.
type Dataset interface {
	// Fields lists a table's fields; ok is false if there is no such table.
	Fields(table string) (fields []string, ok bool)
	// Rows returns a table's rows in order.
	Rows(table string) []Row
}

// Row is one row of a table.
type Row interface {
	// Values returns a field's values: one for a scalar, the elements of
	// an array (none for an empty cell).
	Values(field string) []string
	// Where locates a field's cell.
	Where(field string) Location
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

func isNone(v string) bool { return v == "" || v == "0" }

func (r Rule) check(ds Dataset) []Problem {
	bad := func(err error) []Problem {
		return []Problem{{Where: r.Where, What: fmt.Sprintf("rule %s %s.%s: %v", r.Kind, r.Table, r.Field, err)}}
	}
	if err := hasField(ds, r.Table, r.Field); err != nil {
		return bad(err)
	}
	rows := ds.Rows(r.Table)
	var out []Problem
	switch r.Kind {
	case Ref:
		if err := hasField(ds, r.refTable, r.refField); err != nil {
			return bad(err)
		}
		known := make(map[string]bool)
		for _, t := range ds.Rows(r.refTable) {
			for _, v := range t.Values(r.refField) {
				known[v] = true
			}
		}
		for _, row := range rows {
			for _, v := range row.Values(r.Field) {
				if !isNone(v) && !known[v] {
					out = append(out, Problem{row.Where(r.Field), fmt.Sprintf("%s %q is not in %s.%s", r.Field, v, r.refTable, r.refField)})
				}
			}
		}
	case Range:
		for _, row := range rows {
			for _, v := range row.Values(r.Field) {
				f, err := strconv.ParseFloat(v, 64)
				switch {
				case err != nil:
					out = append(out, Problem{row.Where(r.Field), fmt.Sprintf("%s %q is not a number (rule range %s)", r.Field, v, r.Arg)})
				case r.min != nil && f < *r.min, r.max != nil && f > *r.max:
					out = append(out, Problem{row.Where(r.Field), fmt.Sprintf("%s %s is outside %s", r.Field, v, r.Arg)})
				}
			}
		}
	case Unique:
		seen := make(map[string]Location)
		for _, row := range rows {
			for _, v := range row.Values(r.Field) {
				if first, dup := seen[v]; dup {
					out = append(out, Problem{row.Where(r.Field), fmt.Sprintf("%s %q already used at %s", r.Field, v, first)})
					continue
				}
				seen[v] = row.Where(r.Field)
			}
		}
	case Ascending:
		var prev *float64
		for _, row := range rows {
			vs := row.Values(r.Field)
			if len(vs) != 1 {
				out = append(out, Problem{row.Where(r.Field), fmt.Sprintf("%s needs exactly one value (rule ascending)", r.Field)})
				continue
			}
			f, err := strconv.ParseFloat(vs[0], 64)
			if err != nil {
				out = append(out, Problem{row.Where(r.Field), fmt.Sprintf("%s %q is not a number (rule ascending)", r.Field, vs[0])})
				continue
			}
			if prev != nil && f <= *prev {
				out = append(out, Problem{row.Where(r.Field), fmt.Sprintf("%s %s does not increase (previous row: %v)", r.Field, vs[0], *prev)})
			}
			prev = &f
		}
	case Required:
		for _, row := range rows {
			vs := row.Values(r.Field)
			if len(vs) == 0 {
				out = append(out, Problem{row.Where(r.Field), fmt.Sprintf("%s is empty", r.Field)})
			}
			for _, v := range vs {
				if isNone(v) {
					out = append(out, Problem{row.Where(r.Field), fmt.Sprintf("%s is empty or zero", r.Field)})
					break
				}
			}
		}
	}
	return out
}
