package export

import (
	"fmt"
	"go/token"
	"strconv"
	"strings"

	"github.com/citadel-go/citadel/tables/rules"
)

// The checks here find, in the sources, everything tabtoy's compiler
// refuses (it stops at the first) and some things it lets through, so
// that one run reports every problem and tabtoy, run afterwards, is given
// only tables that pass.

// typeRow is one row of the type table.
type typeRow struct {
	enum                    bool
	obj, name, display, typ string
	value                   string // an enum's number
	at                      func(col string) rules.Location
}

// intRange is what tabtoy's integer types hold: bit size and bounds as a
// designer writes them.
var intRange = map[string]struct {
	bits     int
	min, max string
}{
	"int16": {16, "-32768", "32767"}, "int32": {32, "-2147483648", "2147483647"},
	"int64":  {64, "-9223372036854775808", "9223372036854775807"},
	"uint16": {16, "0", "65535"}, "uint32": {32, "0", "4294967295"}, "uint64": {64, "0", "18446744073709551615"},
}

// checkTypes checks the type table once all of it is read: names, types,
// enum values, fields defined twice.
func (sc *schema) checkTypes(structs map[string][]*field) []rules.Problem {
	var problems []rules.Problem
	type key struct{ obj, name string }
	fieldAt := map[key]rules.Location{}
	enumValueAt := map[key]rules.Location{}
	for _, d := range sc.typeRows {
		bad := func(col, format string, args ...any) {
			problems = append(problems, rules.Problem{Where: d.at(col), What: fmt.Sprintf(format, args...)})
		}
		if !token.IsIdentifier(d.name) {
			bad("FieldName", "field name %q is not a Go identifier (letters, digits and _, not starting with a digit)", d.name)
		}
		if !token.IsIdentifier(d.obj) {
			bad("ObjectType", "type name %q is not a Go identifier (letters, digits and _, not starting with a digit)", d.obj)
		} else if d.enum && reserved[d.obj] {
			bad("ObjectType", "an enum cannot be called %s: the generated package uses that name; rename the enum", d.obj)
		}
		for _, n := range []string{d.name, d.display} {
			if n == "" {
				continue
			}
			if first, dup := fieldAt[key{d.obj, n}]; dup {
				bad("FieldName", "%s already has a field or value called %q (at %s): tabtoy refuses the type table; rename one", d.obj, n, first)
				break
			}
		}
		fieldAt[key{d.obj, d.name}] = d.at("FieldName")
		if d.display != "" {
			fieldAt[key{d.obj, d.display}] = d.at("Name")
		}
		if d.enum {
			switch _, err := strconv.ParseInt(d.value, 10, 32); {
			case d.value == "":
				bad("Value", "enum value %s.%s has no number (值): give it one, e.g. 0 for the first value", d.obj, d.name)
			case err != nil:
				bad("Value", "enum value %s.%s: %q is not a whole number", d.obj, d.name, d.value)
			default:
				if first, dup := enumValueAt[key{d.obj, d.value}]; dup {
					bad("Value", "enum %s already uses the number %s (at %s): give every value its own number", d.obj, d.value, first)
				}
				enumValueAt[key{d.obj, d.value}] = d.at("Value")
			}
			continue
		}
		if d.typ == "" {
			bad("FieldType", "%s.%s has no type (字段类型): %s", d.obj, d.name, typeHint)
		} else if _, ok := goTypes[d.typ]; !ok && sc.enumValues[d.typ] == nil {
			if structs[d.typ] != nil {
				bad("FieldType", "%s.%s has the type %s, a table's row: tabtoy has no nested rows; store the row's ID (int) and check it with a ref rule in Checks.csv", d.obj, d.name, d.typ)
			} else {
				bad("FieldType", "%s.%s: unknown type %q: %s", d.obj, d.name, d.typ, typeHint)
			}
		}
	}
	return problems
}

const typeHint = "want int, int16, int32, int64, uint, uint16, uint32, uint64, float, float32, double, float64, bool, string, or an enum of the type table"

// checkValues checks every cell of a table against its field's type, and
// indexed fields for duplicates.
func (sc *schema) checkValues(t *table) []rules.Problem {
	var problems []rules.Problem
	check := func(f *field, v string, where rules.Location, multi bool) {
		if !sc.knownType(f) {
			return // reported with the type table (or below for a key-value field)
		}
		var elems []string
		switch {
		case multi:
			elems = []string{v}
		case f.array && v != "":
			elems = strings.Split(v, f.split)
		case !f.array && v != "":
			if msg := sc.badValue(f, v, false); msg != "" {
				problems = append(problems, rules.Problem{Where: where, What: msg})
			}
			return
		}
		for _, e := range elems {
			if msg := sc.badValue(f, e, true); msg != "" {
				problems = append(problems, rules.Problem{Where: where, What: msg})
				return // one message per cell
			}
		}
	}
	if t.kind == kindKV {
		for _, f := range t.fields {
			c := t.kvCells[f.name]
			if !sc.knownType(f) {
				problems = append(problems, rules.Problem{Where: f.where, What: fmt.Sprintf("%s.%s: unknown type %q: %s", t.name, f.name, f.typ, typeHint)})
				continue
			}
			check(f, c.value, c.where, false)
		}
		return problems
	}
	firstAt := map[*field]map[string]rules.Location{}
	for _, r := range t.rows {
		for _, c := range r.at {
			check(c.f, c.v, c.where, c.multi)
			if !c.f.index || c.f.array || c.v == "" {
				continue
			}
			k := c.v
			if g, _ := sc.goType(c.f); intRange[g].bits != 0 {
				if n, err := strconv.ParseInt(c.v, 10, 64); err == nil {
					k = strconv.FormatInt(n, 10) // 04 and 4 are one key
				} else if n, err := strconv.ParseUint(c.v, 10, 64); err == nil {
					k = strconv.FormatUint(n, 10)
				}
			}
			if firstAt[c.f] == nil {
				firstAt[c.f] = map[string]rules.Location{}
			}
			if first, dup := firstAt[c.f][k]; dup {
				problems = append(problems, rules.Problem{Where: c.where, What: fmt.Sprintf(
					"duplicate %s %q (first at %s): %s is indexed (unique), %sBy%s would keep only one of them; give each row its own",
					c.f.name, c.v, nearby(first, c.where), c.f.name, t.name, c.f.name)})
				continue
			}
			firstAt[c.f][k] = c.where
		}
	}
	return problems
}

// nearby names first as seen from where: the row alone in the same sheet.
func nearby(first, where rules.Location) string {
	if first.File == where.File && first.Sheet == where.Sheet {
		return fmt.Sprintf("row %d", first.Row)
	}
	first.Field = ""
	return first.String()
}

func (sc *schema) knownType(f *field) bool {
	_, ok := sc.goType(f)
	return ok
}

// badValue says what is wrong with one value (a cell, or an element of an
// array) for f's type, as tabtoy would refuse it; "" if nothing. elem: v
// is an array element (tabtoy checks those even when empty).
func (sc *schema) badValue(f *field, v string, elem bool) string {
	g, _ := sc.goType(f)
	what := fmt.Sprintf("%q", v)
	if elem && f.split != "" {
		what = fmt.Sprintf("element %q", v)
	}
	spaces := ""
	if strings.TrimSpace(v) != v {
		spaces = "; remove the spaces around it"
	}
	switch g {
	case "string":
		return ""
	case "bool":
		switch v {
		case "是", "yes", "YES", "1", "true", "TRUE", "True", "否", "no", "NO", "0", "false", "FALSE", "False", "":
			return ""
		}
		return fmt.Sprintf("%s is not a bool: write true or false (yes/no, 1/0, 是/否)%s", what, spaces)
	case "float32", "float64":
		if v == "" && (g == "float64" || !elem) {
			return ""
		}
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return fmt.Sprintf("%s is not a number (%s): write one like 1.5%s", what, f.typ, spaces)
		}
		return ""
	}
	if r, ok := intRange[g]; ok {
		if v == "" {
			return ""
		}
		var err error
		if g[0] == 'u' {
			_, err = strconv.ParseUint(v, 10, r.bits)
		} else {
			_, err = strconv.ParseInt(v, 10, r.bits)
		}
		if err == nil {
			return ""
		}
		return fmt.Sprintf("%s is not a whole number of type %s: write one from %s to %s%s", what, f.typ, r.min, r.max, spaces)
	}
	// an enum
	if v == "" && !elem {
		return ""
	}
	if sc.enumValues[f.typ][v] {
		return ""
	}
	return fmt.Sprintf("%s is not a value of enum %s: write one of %s (or its 标识名)%s", what, f.typ, strings.Join(sc.enums[f.typ], ", "), spaces)
}

func (t *table) fieldList() string {
	names := make([]string, len(t.fields))
	for i, f := range t.fields {
		names[i] = f.name
	}
	return strings.Join(names, ", ")
}
