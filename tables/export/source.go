package export

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/citadel-go/citadel/tables/rules"
	"github.com/xuri/excelize/v2"
	"golang.org/x/text/encoding/simplifiedchinese"
)

// sheet is one grid of cells: a CSV file, or one sheet of an .xlsx.
type sheet struct {
	file  string // as named in the index, relative to the source directory
	name  string // the .xlsx sheet; empty for CSV
	rows  []row
	empty bool // an .xlsx sheet with no cells (tabtoy skips it)
}

// row is a non-empty line of a sheet with its 1-based number as a
// spreadsheet shows it.
type row struct {
	n     int
	cells []string
}

func (s *sheet) at(r int, col int) rules.Location {
	return rules.Location{File: s.file, Sheet: s.name, Row: r, Col: colName(col)}
}

// colName turns a 0-based column index into spreadsheet letters.
func colName(i int) string {
	name := ""
	for i++; i > 0; i = (i - 1) / 26 {
		name = string(rune('A'+(i-1)%26)) + name
	}
	return name
}

var bom = []byte{0xEF, 0xBB, 0xBF}

// readSheets reads a CSV or .xlsx file; problems with the file itself (a
// byte order mark, bad encoding, bad CSV) are returned as problems.
func readSheets(dir, file string) ([]*sheet, []rules.Problem) {
	where := rules.Location{File: file}
	path := filepath.Join(dir, file)
	switch strings.ToLower(filepath.Ext(file)) {
	case ".csv":
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, []rules.Problem{{Where: where, What: fileError(err)}}
		}
		if bytes.HasPrefix(data, bom) {
			where.Row, where.Col = 1, "A"
			return nil, []rules.Problem{{Where: where, What: "the file starts with a UTF-8 byte order mark (BOM), " +
				"which tabtoy reads as part of the first header; save it as UTF-8 without BOM"}}
		}
		if !utf8.Valid(data) {
			return nil, []rules.Problem{notUTF8(file, data)}
		}
		s := &sheet{file: file}
		r := csv.NewReader(bytes.NewReader(data))
		r.FieldsPerRecord = -1
		for {
			rec, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				var pe *csv.ParseError
				if errors.As(err, &pe) {
					where.Row = pe.Line
					return nil, []rules.Problem{{Where: where, What: "bad CSV: " + pe.Err.Error()}}
				}
				return nil, []rules.Problem{{Where: where, What: "bad CSV: " + err.Error()}}
			}
			line, _ := r.FieldPos(0)
			s.rows = append(s.rows, row{n: line, cells: rec})
		}
		var problems []rules.Problem
		for _, r := range s.rows[min(1, len(s.rows)):] {
			if want := len(s.rows[0].cells); len(r.cells) != want {
				problems = append(problems, rules.Problem{Where: rules.Location{File: file, Row: r.n},
					What: fmt.Sprintf("this row has %d cells, the first row %d: tabtoy refuses a CSV whose rows differ in length; give every row %d (add or remove commas)", len(r.cells), want, want)})
			}
		}
		return []*sheet{s}, problems
	case ".xlsx":
		f, err := excelize.OpenFile(path)
		if err != nil {
			return nil, []rules.Problem{{Where: where, What: fileError(err)}}
		}
		defer f.Close()
		var out []*sheet
		var problems []rules.Problem
		for _, name := range f.GetSheetList() {
			merged, err := f.GetMergeCells(name)
			if err != nil {
				return nil, []rules.Problem{{Where: rules.Location{File: file, Sheet: name}, What: "cannot read sheet: " + err.Error()}}
			}
			for _, m := range merged {
				col, rowN, err := excelize.CellNameToCoordinates(m.GetStartAxis())
				if err != nil {
					continue
				}
				problems = append(problems, rules.Problem{Where: rules.Location{File: file, Sheet: name, Row: rowN, Col: colName(col - 1)},
					What: fmt.Sprintf("cells %s:%s are merged: tabtoy reads the value only into %s and the other cells as empty; unmerge them (Excel: Home, Merge & Center, Unmerge Cells) and fill every cell",
						m.GetStartAxis(), m.GetEndAxis(), m.GetStartAxis())})
			}
			rows, err := f.GetRows(name)
			if err != nil {
				return nil, []rules.Problem{{Where: rules.Location{File: file, Sheet: name}, What: "cannot read sheet: " + err.Error()}}
			}
			s := &sheet{file: file, name: name, empty: len(rows) == 0}
			for i, cells := range rows {
				for j := range cells {
					cells[j] = strings.TrimSpace(cells[j]) // as tabtoy does for .xlsx
				}
				s.rows = append(s.rows, row{n: i + 1, cells: cells})
			}
			out = append(out, s)
		}
		return out, problems
	default:
		return nil, []rules.Problem{{Where: where, What: "unsupported file type (want .csv or .xlsx)"}}
	}
}

// notUTF8 explains a CSV that is not UTF-8: most often one saved as "CSV"
// by Excel on a Chinese Windows, which writes GBK.
func notUTF8(file string, data []byte) rules.Problem {
	bad := 0
	for bad < len(data) {
		r, size := utf8.DecodeRune(data[bad:])
		if r == utf8.RuneError && size <= 1 {
			break
		}
		bad += size
	}
	where := rules.Location{File: file, Row: 1 + bytes.Count(data[:bad], []byte("\n"))}
	enc := "an unknown encoding"
	if gbk, err := simplifiedchinese.GBK.NewDecoder().Bytes(data); err == nil && utf8.Valid(gbk) && !bytes.ContainsRune(gbk, utf8.RuneError) {
		enc = "GBK (what Excel writes for \"CSV\" on a Chinese Windows)"
	}
	return rules.Problem{Where: where, What: fmt.Sprintf("the file is not UTF-8 (it reads as %s): convert it, "+
		"e.g. iconv -f GBK -t UTF-8 %s > %s.utf8 and rename that over it, or in Excel save it again as \"CSV UTF-8 (Comma delimited)\"", enc, file, file)}
}

// missingColumns reports header columns a sheet must have.
func (s *sheet) missingColumns(row int, missing []string, what string) rules.Problem {
	return rules.Problem{Where: s.at(row, 0), What: fmt.Sprintf("%s needs the column(s) %s in its header row; add them", what, strings.Join(missing, ", "))}
}

func fileError(err error) string {
	if errors.Is(err, os.ErrNotExist) {
		return "file not found (names in the index are relative to the index's folder)"
	}
	return err.Error()
}

func blank(cells []string) bool {
	for _, c := range cells {
		if strings.TrimSpace(c) != "" {
			return false
		}
	}
	return true
}

// shape checks what tabtoy would silently drop: a blank row ends a table
// (rows after it are lost), and a blank header cell ends the header
// (columns after it are lost). It returns the rows tabtoy reads (the
// header first), without comment rows.
func (s *sheet) shape() ([]row, []rules.Problem) {
	var out []row
	var problems []rules.Problem
	blankAt := 0
	for _, r := range s.rows {
		if blank(r.cells) {
			if blankAt == 0 {
				blankAt = r.n
			}
			continue
		}
		if blankAt != 0 {
			problems = append(problems, rules.Problem{Where: rules.Location{File: s.file, Sheet: s.name, Row: blankAt},
				What: fmt.Sprintf("blank row: tabtoy ends the table here and silently drops row %d and everything after it; delete the blank row", r.n)})
			blankAt = 0
		}
		out = append(out, r)
	}
	if len(out) > 0 {
		header := out[0].cells
		for i := len(header) - 1; i >= 0 && strings.TrimSpace(header[i]) == ""; i-- {
			header = header[:i]
		}
		for i, h := range header {
			if strings.TrimSpace(h) == "" {
				problems = append(problems, rules.Problem{Where: s.at(out[0].n, i),
					What: fmt.Sprintf("blank header cell: tabtoy ignores this column and every column after it (%s); name it, or start it with # to mark a comment column", colName(i+1))})
				break
			}
		}
		out[0].cells = header
	}
	data := out[:0]
	for i, r := range out {
		if i > 0 && strings.HasPrefix(strings.TrimSpace(r.cells[0]), "#") {
			continue // a comment row
		}
		data = append(data, r)
	}
	return data, problems
}
