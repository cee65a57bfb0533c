package export

import (
	"fmt"
	"go/token"
	"hash/fnv"
	"sort"
	"strings"

	"github.com/citadel-go/citadel/tables/rules"
)

// Table kinds in the index.
const (
	kindType = "type"
	kindData = "data"
	kindKV   = "kv"
)

// indexKinds maps the index's 模式 cell (tabtoy accepts the Chinese name or
// the English one) to a kind. Anything else makes tabtoy skip the row
// silently, so Citadel refuses it.
var indexKinds = map[string]string{
	"类型表": kindType, "Type": kindType,
	"数据表": kindData, "Data": kindData,
	"键值表": kindKV, "KeyValue": kindKV,
}

// goTypes maps tabtoy's field types to the Go types it generates.
var goTypes = map[string]string{
	"int16": "int16", "int32": "int32", "int64": "int64", "int": "int32",
	"uint": "uint32", "uint16": "uint16", "uint32": "uint32", "uint64": "uint64",
	"float": "float32", "float32": "float32", "double": "float64", "float64": "float64",
	"bool": "bool", "string": "string",
}

// field is one column of a table.
type field struct {
	name, display string
	typ           string // tabtoy type, or an enum's name
	split         string // array separator; arrays by repeated columns have none
	array         bool
	index         bool
	where         rules.Location // its type cell
}

// table is one table of the index, with its files merged.
type table struct {
	name   string
	kind   string
	files  []string
	fields []*field
	// kv: each field's value cell.
	kvCells map[string]kvCell
	// data: rows with their cells by field (arrays: one cell per column).
	rows []dataRow
	// where the index names it
	where rules.Location
	// arrayCols: the columns of an array spread over several, as first
	// seen.
	arrayCols map[*field]arrayCols
}

type arrayCols struct {
	n     int
	where rules.Location
}

type kvCell struct {
	value string
	where rules.Location
}

type dataRow struct {
	cells map[string][]string
	where map[string]rules.Location
	loc   rules.Location // the row
	at    []cellAt       // every cell, for the value checks
}

// cellAt is one cell of a data row.
type cellAt struct {
	f     *field
	v     string
	where rules.Location
	multi bool // one of an array's several columns: the cell is one element
}

type schema struct {
	enums      map[string][]string        // field names, in order
	enumValues map[string]map[string]bool // what a cell may hold: field or display names
	typeRows   []typeRow
	order      []*table // in index order
	tables     map[string]*table
	rules      []rules.Rule
	entries    []indexEntry
	typeFiles  []string
}

// headerIndex maps header names (Chinese or English) to column positions
// and lists the names it did not find (as "中文 (English)").
func headerIndex(cells []string, names ...[2]string) (map[string]int, []string) {
	idx := make(map[string]int)
	for i, c := range cells {
		c = strings.TrimSpace(c)
		for _, n := range names {
			if c == n[0] || c == n[1] {
				idx[n[1]] = i
			}
		}
	}
	var missing []string
	for _, n := range names {
		if _, ok := idx[n[1]]; !ok {
			missing = append(missing, n[0]+" ("+n[1]+")")
		}
	}
	return idx, missing
}

// required keeps the missing columns that are among need (English names).
func required(missing []string, need ...string) []string {
	var out []string
	for _, m := range missing {
		for _, n := range need {
			if strings.HasSuffix(m, "("+n+")") {
				out = append(out, m)
			}
		}
	}
	return out
}

func cell(cells []string, idx map[string]int, name string) string {
	i, ok := idx[name]
	if !ok || i >= len(cells) {
		return ""
	}
	return strings.TrimSpace(cells[i])
}

// indexEntry is one row of the index that names a table and its file.
type indexEntry struct {
	kind, name, file string // as written
	where            rules.Location
	table            *table // nil for a type table
}

// loadSchema reads the index and everything it names, and checks every
// cell the way tabtoy would (and what tabtoy misses), so that one run
// reports every problem. A nil schema means the index itself could not be
// read.
func loadSchema(dir, index string) (*schema, []rules.Problem) {
	sheets, problems := readSheets(dir, index)
	if len(problems) > 0 {
		return nil, problems
	}
	sc := &schema{enums: map[string][]string{}, enumValues: map[string]map[string]bool{}, tables: map[string]*table{}}
	files := map[string]rules.Location{}
	for _, s := range sheets {
		rows, ps := s.shape()
		problems = append(problems, ps...)
		if len(rows) == 0 {
			continue
		}
		hi, missing := headerIndex(rows[0].cells, [2]string{"模式", "TableKind"}, [2]string{"表类型", "TableType"}, [2]string{"表文件名", "TableFileName"})
		if len(missing) > 0 {
			problems = append(problems, s.missingColumns(rows[0].n, missing, "the index"))
			return nil, problems
		}
		for _, r := range rows[1:] {
			kindCell, name, file := cell(r.cells, hi, "TableKind"), cell(r.cells, hi, "TableType"), cell(r.cells, hi, "TableFileName")
			kind, ok := indexKinds[kindCell]
			if !ok {
				problems = append(problems, rules.Problem{Where: s.at(r.n, hi["TableKind"]),
					What: fmt.Sprintf("unknown table kind %q (want 类型表/Type, 数据表/Data or 键值表/KeyValue): tabtoy would skip this table silently", kindCell)})
				continue
			}
			if file == "" {
				problems = append(problems, rules.Problem{Where: s.at(r.n, hi["TableFileName"]), What: "no file name (表文件名): name the .csv or .xlsx file, relative to the index's folder"})
				continue
			}
			if first, dup := files[file]; dup {
				problems = append(problems, rules.Problem{Where: s.at(r.n, hi["TableFileName"]),
					What: fmt.Sprintf("%s is already listed at %s: tabtoy would read its rows twice; delete one of the rows", file, first)})
				continue
			}
			files[file] = s.at(r.n, hi["TableFileName"])
			e := indexEntry{kind: kindCell, name: name, file: file, where: s.at(r.n, 0)}
			if kind == kindType {
				sc.typeFiles = append(sc.typeFiles, file)
				sc.entries = append(sc.entries, e)
				continue
			}
			if name == "" {
				problems = append(problems, rules.Problem{Where: s.at(r.n, hi["TableType"]), What: "a data or key-value table needs a name (表类型): the Go type of its rows"})
				continue
			}
			if reserved[name] {
				problems = append(problems, rules.Problem{Where: s.at(r.n, hi["TableType"]),
					What: fmt.Sprintf("a table cannot be called %s: the generated package uses that name; rename the table", name)})
				continue
			}
			t := sc.tables[name]
			if t == nil {
				t = &table{name: name, kind: kind, where: e.where}
				sc.tables[name] = t
				sc.order = append(sc.order, t)
			} else if t.kind != kind {
				problems = append(problems, rules.Problem{Where: s.at(r.n, hi["TableKind"]), What: fmt.Sprintf("table %s is listed as two kinds", name)})
				continue
			}
			t.files = append(t.files, file)
			e.table = t
			sc.entries = append(sc.entries, e)
		}
	}
	if len(sc.typeFiles) == 0 {
		problems = append(problems, rules.Problem{Where: rules.Location{File: index},
			What: "the index names no type table: add a row 类型表,,Type.csv (the file with the fields and enums)"})
	}
	structs := map[string][]*field{}
	for _, f := range sc.typeFiles {
		problems = append(problems, sc.readTypes(dir, f, structs)...)
	}
	problems = append(problems, sc.checkTypes(structs)...)
	for _, t := range sc.order {
		switch t.kind {
		case kindData:
			t.fields = structs[t.name]
			if len(t.fields) == 0 {
				problems = append(problems, rules.Problem{Where: t.where,
					What: fmt.Sprintf("data table %s has no fields in the type table: add 表头 rows with 对象类型 %s", t.name, t.name)})
				continue
			}
			for _, f := range t.files {
				problems = append(problems, t.readData(dir, f)...)
			}
		case kindKV:
			for _, f := range t.files {
				problems = append(problems, sc.readKV(t, dir, f)...)
			}
		}
		problems = append(problems, sc.checkValues(t)...)
	}
	return sc, problems
}

// reserved are the names the generated package declares beside tabtoy's
// types; a table or enum of the same name would not compile.
var reserved = map[string]bool{"Set": true, "Schema": true, "Of": true, "Table": true, "TableEnumValue": true}

func (sc *schema) readTypes(dir, file string, structs map[string][]*field) []rules.Problem {
	sheets, problems := readSheets(dir, file)
	for _, s := range sheets {
		rows, ps := s.shape()
		problems = append(problems, ps...)
		if len(rows) == 0 {
			continue
		}
		hi, missing := headerIndex(rows[0].cells, [2]string{"种类", "Kind"}, [2]string{"对象类型", "ObjectType"}, [2]string{"标识名", "Name"},
			[2]string{"字段名", "FieldName"}, [2]string{"字段类型", "FieldType"}, [2]string{"数组切割", "ArraySplitter"},
			[2]string{"值", "Value"}, [2]string{"索引", "MakeIndex"})
		if missing = required(missing, "Kind", "ObjectType", "FieldName", "FieldType"); len(missing) > 0 {
			problems = append(problems, s.missingColumns(rows[0].n, missing, "the type table"))
			continue
		}
		for _, r := range rows[1:] {
			obj, name := cell(r.cells, hi, "ObjectType"), cell(r.cells, hi, "FieldName")
			where := func(col string) rules.Location {
				i, ok := hi[col]
				if !ok {
					return s.at(r.n, 0)
				}
				return s.at(r.n, i)
			}
			d := typeRow{obj: obj, name: name, display: cell(r.cells, hi, "Name"), value: cell(r.cells, hi, "Value"),
				typ: cell(r.cells, hi, "FieldType"), at: where}
			switch cell(r.cells, hi, "Kind") {
			case "枚举", "Enum":
				d.enum = true
				sc.enums[obj] = append(sc.enums[obj], name)
				if sc.enumValues[obj] == nil {
					sc.enumValues[obj] = map[string]bool{}
				}
				sc.enumValues[obj][name] = true
				if d.display != "" {
					sc.enumValues[obj][d.display] = true
				}
			case "表头", "HeaderStruct":
				f := &field{name: name, display: d.display, typ: d.typ, split: cell(r.cells, hi, "ArraySplitter"), where: where("FieldType")}
				f.array = f.split != ""
				switch idx := cell(r.cells, hi, "MakeIndex"); idx {
				case "是", "yes", "YES", "1", "true", "TRUE", "True":
					f.index = true
				case "", "否", "no", "NO", "0", "false", "FALSE", "False":
				default:
					problems = append(problems, rules.Problem{Where: where("MakeIndex"),
						What: fmt.Sprintf("索引 (MakeIndex) %q is not a yes/no value: write 是 (or true) to index the field, or leave it empty", idx)})
				}
				structs[obj] = append(structs[obj], f)
			default:
				problems = append(problems, rules.Problem{Where: where("Kind"),
					What: fmt.Sprintf("unknown kind %q (want 表头/HeaderStruct or 枚举/Enum)", cell(r.cells, hi, "Kind"))})
				continue
			}
			sc.typeRows = append(sc.typeRows, d)
		}
	}
	return problems
}

// readData reads a data table's file: header names map to fields by 字段名
// or 标识名; a header starting with # is a comment column; an array field
// may span several columns.
func (t *table) readData(dir, file string) []rules.Problem {
	sheets, problems := readSheets(dir, file)
	byName := map[string]*field{}
	for _, f := range t.fields {
		byName[f.name] = f
		if f.display != "" {
			byName[f.display] = f
		}
	}
	for _, s := range sheets {
		if s.empty {
			continue
		}
		rows, ps := s.shape()
		problems = append(problems, ps...)
		if len(rows) == 0 || strings.HasPrefix(strings.TrimSpace(rows[0].cells[0]), "#") {
			continue // tabtoy skips a sheet whose first header is a comment
		}
		cols := make([]*field, len(rows[0].cells))
		count := map[*field]int{}
		for i, h := range rows[0].cells {
			h = strings.TrimSpace(h)
			if strings.HasPrefix(h, "#") {
				continue
			}
			f := byName[h]
			if f == nil {
				problems = append(problems, rules.Problem{Where: s.at(rows[0].n, i),
					What: fmt.Sprintf("header %q is not a field of %s (fields: %s): fix the name, add the field to the type table, or start it with # to mark a comment column", h, t.name, t.fieldList())})
				continue
			}
			cols[i] = f
			count[f]++
		}
		for i, f := range cols {
			if f != nil && count[f] > 1 && !f.array {
				problems = append(problems, rules.Problem{Where: s.at(rows[0].n, i),
					What: fmt.Sprintf("%s has several columns but is not an array: give it a 数组切割 in the type table, or delete the extra column", f.name)})
				count[f] = 1 // report once
			}
		}
		for _, f := range t.fields {
			if f.index && count[f] == 0 && len(rows) > 1 {
				problems = append(problems, rules.Problem{Where: s.at(rows[0].n, len(rows[0].cells)),
					What: fmt.Sprintf("no column for %s, which is indexed: every row would have the same empty key; add the column", f.name)})
			}
			if f.array && count[f] > 1 {
				if t.arrayCols == nil {
					t.arrayCols = map[*field]arrayCols{}
				}
				if prev, ok := t.arrayCols[f]; !ok {
					t.arrayCols[f] = arrayCols{count[f], s.at(rows[0].n, 0)}
				} else if prev.n != count[f] {
					problems = append(problems, rules.Problem{Where: s.at(rows[0].n, 0),
						What: fmt.Sprintf("array %s has %d columns here but %d at %s: tabtoy needs the same number of columns in every sheet", f.name, count[f], prev.n, prev.where)})
				}
			}
		}
		for _, r := range rows[1:] {
			d := dataRow{cells: map[string][]string{}, where: map[string]rules.Location{}, loc: rules.Location{File: s.file, Sheet: s.name, Row: r.n}}
			for i, f := range cols {
				if f == nil {
					continue
				}
				v := ""
				if i < len(r.cells) {
					v = r.cells[i]
				}
				if _, seen := d.where[f.name]; !seen {
					d.where[f.name] = rules.Location{File: s.file, Sheet: s.name, Row: r.n, Col: colName(i), Field: f.name}
				}
				d.cells[f.name] = append(d.cells[f.name], v)
				d.at = append(d.at, cellAt{f: f, v: v, where: rules.Location{File: s.file, Sheet: s.name, Row: r.n, Col: colName(i), Field: f.name}, multi: count[f] > 1})
			}
			t.rows = append(t.rows, d)
		}
	}
	return problems
}

func (sc *schema) readKV(t *table, dir, file string) []rules.Problem {
	sheets, problems := readSheets(dir, file)
	if t.kvCells == nil {
		t.kvCells = map[string]kvCell{}
	}
	for _, s := range sheets {
		rows, ps := s.shape()
		problems = append(problems, ps...)
		if len(rows) == 0 {
			continue
		}
		hi, missing := headerIndex(rows[0].cells, [2]string{"字段名", "FieldName"}, [2]string{"字段类型", "FieldType"}, [2]string{"标识名", "Name"},
			[2]string{"值", "Value"}, [2]string{"数组切割", "ArraySplitter"})
		if missing = required(missing, "FieldName", "FieldType", "Value"); len(missing) > 0 {
			problems = append(problems, s.missingColumns(rows[0].n, missing, "a key-value table"))
			continue
		}
		for _, r := range rows[1:] {
			f := &field{name: cell(r.cells, hi, "FieldName"), display: cell(r.cells, hi, "Name"), typ: cell(r.cells, hi, "FieldType"),
				split: cell(r.cells, hi, "ArraySplitter"), where: s.at(r.n, hi["FieldType"])}
			f.array = f.split != ""
			nameAt := s.at(r.n, hi["FieldName"])
			if !token.IsIdentifier(f.name) {
				problems = append(problems, rules.Problem{Where: nameAt, What: fmt.Sprintf("field name %q is not a Go identifier (letters, digits, _; not starting with a digit)", f.name)})
			}
			if prev, dup := t.kvCells[f.name]; dup {
				problems = append(problems, rules.Problem{Where: nameAt, What: fmt.Sprintf("%s is already a field of %s at %s: tabtoy refuses a key-value field twice; delete or rename one", f.name, t.name, prev.where)})
				continue
			}
			t.fields = append(t.fields, f)
			v := ""
			if i, ok := hi["Value"]; ok && i < len(r.cells) {
				v = r.cells[i]
			}
			t.kvCells[f.name] = kvCell{value: v, where: rules.Location{File: s.file, Sheet: s.name, Row: r.n, Col: colName(hi["Value"]), Field: f.name}}
		}
	}
	return problems
}

// goType is the Go type tabtoy generates for a field's element.
func (sc *schema) goType(f *field) (string, bool) {
	if g, ok := goTypes[f.typ]; ok {
		return g, true
	}
	if _, ok := sc.enums[f.typ]; ok {
		return f.typ, true
	}
	return "", false
}

// hash identifies the shape of the data: tables, fields, types, in order.
// A data file is only read by code generated for the same shape.
func (sc *schema) hash() uint64 {
	h := fnv.New64a()
	for _, t := range sc.order {
		fmt.Fprintf(h, "%s:%s{", t.name, t.kind)
		for _, f := range t.fields {
			g, _ := sc.goType(f)
			fmt.Fprintf(h, "%s %s %v;", f.name, g, f.array)
		}
		h.Write([]byte("}"))
	}
	enums := make([]string, 0, len(sc.enums))
	for e := range sc.enums {
		enums = append(enums, e)
	}
	sort.Strings(enums)
	for _, e := range enums {
		fmt.Fprintf(h, "enum %s %v;", e, sc.enums[e])
	}
	return h.Sum64()
}

// Dataset view of the sources, for the rules (values as written).

func (sc *schema) Fields(name string) ([]string, bool) {
	t := sc.tables[name]
	if t == nil {
		return nil, false
	}
	out := make([]string, len(t.fields))
	for i, f := range t.fields {
		out[i] = f.name
	}
	return out, true
}

func (sc *schema) Column(name, field string) rules.Column {
	t := sc.tables[name]
	f := t.field(field)
	if t.kind == kindKV {
		return kvColumn{t, f}
	}
	return srcColumn{t, f}
}

// srcColumn is a data table's field in the sources: values as written.
type srcColumn struct {
	t *table
	f *field
}

func (c srcColumn) Len() int { return len(c.t.rows) }

func (c srcColumn) Values(i int, dst []rules.Value) []rules.Value {
	return splitValues(c.f, c.t.rows[i].cells[c.f.name], dst)
}

func (c srcColumn) Where(i int) rules.Location {
	r := &c.t.rows[i]
	if w, ok := r.where[c.f.name]; ok {
		return w
	}
	l := r.loc
	l.Field = c.f.name
	return l
}

func splitValues(f *field, cells []string, dst []rules.Value) []rules.Value {
	for _, c := range cells {
		if f.split != "" {
			for _, v := range strings.Split(c, f.split) {
				if v != "" {
					dst = append(dst, rules.Value{S: v})
				}
			}
		} else if c != "" {
			dst = append(dst, rules.Value{S: c})
		}
	}
	return dst
}

func (t *table) field(name string) *field {
	for _, f := range t.fields {
		if f.name == name {
			return f
		}
	}
	return nil
}

// kvColumn is a key-value table's field: one row.
type kvColumn struct {
	t *table
	f *field
}

func (c kvColumn) Len() int { return 1 }

func (c kvColumn) Values(_ int, dst []rules.Value) []rules.Value {
	return splitValues(c.f, []string{c.t.kvCells[c.f.name].value}, dst)
}

func (c kvColumn) Where(int) rules.Location { return c.t.kvCells[c.f.name].where }

// readRules reads Checks.csv (or .xlsx) if the source directory has one.
func (sc *schema) readRules(dir, file string) []rules.Problem {
	sheets, problems := readSheets(dir, file)
	for _, s := range sheets {
		rows, ps := s.shape()
		problems = append(problems, ps...)
		if len(rows) == 0 {
			continue
		}
		hi, missing := headerIndex(rows[0].cells, [2]string{"表", "Table"}, [2]string{"字段", "Field"}, [2]string{"规则", "Rule"}, [2]string{"参数", "Arg"})
		if missing = required(missing, "Table", "Field", "Rule"); len(missing) > 0 {
			problems = append(problems, s.missingColumns(rows[0].n, missing, "the rules file"))
			continue
		}
		for _, r := range rows[1:] {
			rule, err := rules.Parse(cell(r.cells, hi, "Table"), cell(r.cells, hi, "Field"), cell(r.cells, hi, "Rule"), cell(r.cells, hi, "Arg"),
				rules.Location{File: s.file, Sheet: s.name, Row: r.n})
			if err != nil {
				problems = append(problems, rules.Problem{Where: rule.Where, What: err.Error()})
				continue
			}
			sc.rules = append(sc.rules, rule)
		}
	}
	return problems
}
