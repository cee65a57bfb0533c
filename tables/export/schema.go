package export

import (
	"fmt"
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
}

type kvCell struct {
	value string
	where rules.Location
}

type dataRow struct {
	cells map[string][]string
	where map[string]rules.Location
	loc   rules.Location // the row
}

type schema struct {
	enums  map[string][]string
	order  []*table // in index order
	tables map[string]*table
	rules  []rules.Rule
}

// headerIndex maps header names (Chinese or English) to column positions.
func headerIndex(cells []string, names ...[2]string) map[string]int {
	idx := make(map[string]int)
	for i, c := range cells {
		c = strings.TrimSpace(c)
		for _, n := range names {
			if c == n[0] || c == n[1] {
				idx[n[1]] = i
			}
		}
	}
	return idx
}

func cell(cells []string, idx map[string]int, name string) string {
	i, ok := idx[name]
	if !ok || i >= len(cells) {
		return ""
	}
	return strings.TrimSpace(cells[i])
}

// loadSchema reads the index and everything it names.
func loadSchema(dir, index string) (*schema, []rules.Problem) {
	sheets, problems := readSheets(dir, index)
	if len(problems) > 0 {
		return nil, problems
	}
	sc := &schema{enums: map[string][]string{}, tables: map[string]*table{}}
	var typeFiles []string
	for _, s := range sheets {
		rows, ps := s.shape()
		problems = append(problems, ps...)
		if len(rows) == 0 {
			continue
		}
		hi := headerIndex(rows[0].cells, [2]string{"模式", "TableKind"}, [2]string{"表类型", "TableType"}, [2]string{"表文件名", "TableFileName"})
		for _, need := range []string{"TableKind", "TableType", "TableFileName"} {
			if _, ok := hi[need]; !ok {
				problems = append(problems, rules.Problem{Where: s.at(rows[0].n, 0), What: "the index needs the columns 模式, 表类型 and 表文件名"})
				return nil, problems
			}
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
				problems = append(problems, rules.Problem{Where: s.at(r.n, hi["TableFileName"]), What: "no file name"})
				continue
			}
			if kind == kindType {
				typeFiles = append(typeFiles, file)
				continue
			}
			if name == "" {
				problems = append(problems, rules.Problem{Where: s.at(r.n, hi["TableType"]), What: "a data or key-value table needs a name (表类型)"})
				continue
			}
			t := sc.tables[name]
			if t == nil {
				t = &table{name: name, kind: kind}
				sc.tables[name] = t
				sc.order = append(sc.order, t)
			} else if t.kind != kind {
				problems = append(problems, rules.Problem{Where: s.at(r.n, hi["TableKind"]), What: fmt.Sprintf("table %s is listed as two kinds", name)})
				continue
			}
			t.files = append(t.files, file)
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	structs := map[string][]*field{}
	for _, f := range typeFiles {
		problems = append(problems, sc.readTypes(dir, f, structs)...)
	}
	for _, t := range sc.order {
		switch t.kind {
		case kindData:
			t.fields = structs[t.name]
			if len(t.fields) == 0 {
				problems = append(problems, rules.Problem{Where: rules.Location{File: index},
					What: fmt.Sprintf("data table %s has no fields in the type table (表头 rows with 对象类型 %s)", t.name, t.name)})
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
	}
	return sc, problems
}

func (sc *schema) readTypes(dir, file string, structs map[string][]*field) []rules.Problem {
	sheets, problems := readSheets(dir, file)
	for _, s := range sheets {
		rows, ps := s.shape()
		problems = append(problems, ps...)
		if len(rows) == 0 {
			continue
		}
		hi := headerIndex(rows[0].cells, [2]string{"种类", "Kind"}, [2]string{"对象类型", "ObjectType"}, [2]string{"标识名", "Name"},
			[2]string{"字段名", "FieldName"}, [2]string{"字段类型", "FieldType"}, [2]string{"数组切割", "ArraySplitter"},
			[2]string{"值", "Value"}, [2]string{"索引", "MakeIndex"})
		for _, r := range rows[1:] {
			obj, name := cell(r.cells, hi, "ObjectType"), cell(r.cells, hi, "FieldName")
			switch cell(r.cells, hi, "Kind") {
			case "枚举", "Enum":
				sc.enums[obj] = append(sc.enums[obj], name)
			case "表头", "HeaderStruct":
				f := &field{name: name, display: cell(r.cells, hi, "Name"), typ: cell(r.cells, hi, "FieldType"),
					split: cell(r.cells, hi, "ArraySplitter")}
				f.array = f.split != ""
				switch strings.ToLower(cell(r.cells, hi, "MakeIndex")) {
				case "是", "yes", "true", "1":
					f.index = true
				}
				structs[obj] = append(structs[obj], f)
			default:
				problems = append(problems, rules.Problem{Where: s.at(r.n, hi["Kind"]),
					What: fmt.Sprintf("unknown kind %q (want 表头/HeaderStruct or 枚举/Enum)", cell(r.cells, hi, "Kind"))})
			}
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
				problems = append(problems, rules.Problem{Where: s.at(rows[0].n, i), What: fmt.Sprintf("header %q is not a field of %s", h, t.name)})
				continue
			}
			cols[i] = f
			count[f]++
		}
		for i, f := range cols {
			if f != nil && count[f] > 1 && !f.array {
				problems = append(problems, rules.Problem{Where: s.at(rows[0].n, i),
					What: fmt.Sprintf("%s has several columns but is not an array: give it a 数组切割 in the type table", f.name)})
				count[f] = 1 // report once
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
		hi := headerIndex(rows[0].cells, [2]string{"字段名", "FieldName"}, [2]string{"字段类型", "FieldType"}, [2]string{"标识名", "Name"},
			[2]string{"值", "Value"}, [2]string{"数组切割", "ArraySplitter"})
		for _, r := range rows[1:] {
			f := &field{name: cell(r.cells, hi, "FieldName"), display: cell(r.cells, hi, "Name"), typ: cell(r.cells, hi, "FieldType"),
				split: cell(r.cells, hi, "ArraySplitter")}
			f.array = f.split != ""
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
		hi := headerIndex(rows[0].cells, [2]string{"表", "Table"}, [2]string{"字段", "Field"}, [2]string{"规则", "Rule"}, [2]string{"参数", "Arg"})
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
