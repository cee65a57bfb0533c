// Command citadel-tables checks and exports a game's designer tables. It
// runs from any module that requires Citadel (tabtoy is built in):
//
//	go run github.com/citadel-go/citadel/cmd/citadel-tables check  -src tables/src
//	go run github.com/citadel-go/citadel/cmd/citadel-tables export -src tables/src -out gamedata [-package gamedata]
//
// check runs Citadel's checks and tabtoy and prints every problem with its
// file, sheet, row and column and how to fix it; export does the same and,
// when nothing is wrong, writes the game's tables package (tabtoy's Go
// types, the generated reader, the data file). Either exits 1 on problems
// (and then writes nothing), 2 on a usage or tool error.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/citadel-go/citadel/tables/export"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	usage := func() {
		fmt.Fprintln(stderr, "usage: citadel-tables check -src DIR [-index Index.csv] [-checks Checks.csv]\n"+
			"       citadel-tables export -src DIR -out DIR [-package NAME] [-index Index.csv] [-checks Checks.csv]")
	}
	if len(args) == 0 || (args[0] != "check" && args[0] != "export") {
		usage()
		return 2
	}
	cmd := args[0]
	fs := flag.NewFlagSet("citadel-tables "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	src := fs.String("src", "", "folder with the index and the files it names (required)")
	index := fs.String("index", "Index.csv", "index file, in -src")
	checks := fs.String("checks", "Checks.csv", "Citadel's rules file, in -src (optional)")
	out := fs.String("out", "", "export: the folder of the game's tables package: the generated code and data/ go there (required)")
	pkg := fs.String("package", "", "export: Go package of the generated code (default: -out's folder name)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *src == "" || cmd == "export" && *out == "" || fs.NArg() > 0 {
		usage()
		return 2
	}
	opts := export.Options{Src: *src, Index: *index, Checks: *checks, Package: *pkg}
	if cmd == "export" {
		opts.Out = *out
	}
	start := time.Now()
	fmt.Fprintf(stdout, "citadel-tables %s: %s/%s\n", cmd, *src, *index)
	res, err := export.Run(opts)
	var problems export.Problems
	if errors.As(err, &problems) {
		for _, p := range problems {
			fmt.Fprintf(stdout, "  %s\n", p)
		}
		fmt.Fprintf(stdout, "%d problem(s); nothing written\n", len(problems))
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "citadel-tables: %v\n", err)
		return 2
	}
	names := make([]string, 0, len(res.Rows))
	for name := range res.Rows {
		names = append(names, name)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%s %d", name, res.Rows[name])
	}
	fmt.Fprintf(stdout, "  ok: %s; version %s (%v)\n", strings.Join(parts, ", "), res.Version, time.Since(start).Round(time.Millisecond))
	if cmd == "export" {
		if len(res.Written) > 0 {
			fmt.Fprintf(stdout, "  wrote %s in %s\n", strings.Join(res.Written, ", "), *out)
		}
		if len(res.Unchanged) > 0 {
			fmt.Fprintf(stdout, "  unchanged: %s\n", strings.Join(res.Unchanged, ", "))
		}
	}
	return 0
}
