package export

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	"github.com/citadel-go/citadel/tables/rules"
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

// tabtoy's report: "TableError.ID 中文 | context @File|Sheet(A5)".
var tabtoyError = regexp.MustCompile(`TableError\.(\w+) \S+ \| (.*?)\s*@([^|@]+)\|([^(|]*)\(([A-Z]+)(\d+)\)`)

// tabtoyBinary finds the tabtoy built from go.mod's tool directive.
func tabtoyBinary() (string, error) {
	out, err := exec.Command("go", "tool", "-n", "tabtoy").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return "", fmt.Errorf("cannot build tabtoy (go tool -n tabtoy; run from inside the Citadel module): %s", bytes.TrimSpace(ee.Stderr))
		}
		return "", fmt.Errorf("cannot run go tool: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// runTabtoy exports from the index in dir into goOut and jsonOut (absolute
// paths). tabtoy resolves every file name from its working directory, so it
// runs in dir. It reports only its first problem.
func runTabtoy(bin, dir, index, pkg, goOut, jsonOut string) []rules.Problem {
	cmd := exec.Command(bin, "-mode=v3", "-index="+index, "-package="+pkg, "-go_out="+goOut, "-json_out="+jsonOut)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err == nil {
		return nil
	}
	return []rules.Problem{parseTabtoyError(out.String(), index)}
}

func parseTabtoyError(out, index string) rules.Problem {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "TableError.") {
			last = strings.TrimSpace(lines[i])
			break
		}
	}
	m := tabtoyError.FindStringSubmatch(last)
	if m == nil {
		return rules.Problem{Where: rules.Location{File: index}, What: "tabtoy: " + strings.TrimPrefix(last, "\ufeff")}
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
	// tabtoy names a CSV's "sheet" after the file; only an .xlsx sheet is
	// worth showing.
	if sheet := m[4]; !strings.EqualFold(strings.TrimSuffix(m[3], ".csv"), sheet) && strings.HasSuffix(strings.ToLower(m[3]), ".xlsx") {
		where.Sheet = sheet
	}
	return rules.Problem{Where: where, What: what + " (reported by tabtoy, which stops at the first problem)"}
}
