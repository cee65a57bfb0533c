// Package tablestest exports variants of a game's tables for tests: the
// sources with some files edited, through the real checks, tabtoy and
// export.
package tablestest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/citadel-go/citadel/tables/export"
)

// Sources copies the source folder src (the index and the files it names)
// into a temporary folder, passing each file through edit (which may
// return it unchanged), and returns the folder.
func Sources(t testing.TB, src string, edit func(name string, data []byte) []byte) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			data = edit(e.Name(), data)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// Export exports the sources in src with edit applied and returns the data
// file and its version.
func Export(t testing.TB, src string, edit func(name string, data []byte) []byte) ([]byte, string) {
	t.Helper()
	out := t.TempDir()
	res, err := export.Run(export.Options{Src: Sources(t, src, edit), Out: out, Package: "tablestest"})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(out, export.DataFile))
	if err != nil {
		t.Fatal(err)
	}
	return data, res.Version
}

// Replace returns an edit that replaces old by new once in file.
func Replace(file, old, new string) func(string, []byte) []byte {
	return func(name string, data []byte) []byte {
		if name != file {
			return data
		}
		return []byte(strings.Replace(string(data), old, new, 1))
	}
}
