package citadel

// The deploy files (Dockerfile, deploy/compose.yaml, deploy/k8s/*.yaml,
// deploy/gen-secrets.sh) are checked here offline: no Docker daemon, no
// cluster, no network. Kubernetes objects are decoded strictly into the
// official API types; every citadel process the files start has its flags
// parsed against the flags this package defines (run -h in a child
// process), its secrets traced to mounted files, and its addresses to
// objects the files define; the Dockerfile's go build lines are run as
// written and their output checked to be static. docs/deploy.md says what
// the files are for.

import (
	"bytes"
	"cmp"
	"debug/elf"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/citadel-go/citadel/game/sample"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citadel-go/citadel/services"
	"github.com/jackc/pgx/v5/pgconn"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const (
	// drainTimeoutDefault is -drain-timeout's default (docs/deploy.md),
	// used when the flag set has no -drain-timeout to read it from.
	drainTimeoutDefault = 60 * time.Second
	// shutdownBudget is what run gives the stop that follows a drain
	// (players saved, NSQ flushed): a supervisor must wait drain + this.
	shutdownBudget = 30 * time.Second
	// citadelContainer is the name of the container that runs citadel in
	// every Kubernetes workload.
	citadelContainer = "citadel"
)

// repoRoot is the repository, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// --- flags ------------------------------------------------------------

// flagSpec is one flag as -h describes it.
type flagSpec struct {
	kind string // "" for a bool flag, else the type -h names: string, duration, int, float, value
	def  string // the default -h shows, unquoted; "" if it shows none
}

var (
	usageFlagLine = regexp.MustCompile(`^  -([A-Za-z0-9][A-Za-z0-9_.-]*)(?: ([a-z0-9]+))?(?:\t.*)?$`)
	usageDefault  = regexp.MustCompile(`\(default (.*)\)$`)
)

// parseUsage reads the flags out of a Go flag set's -h output.
func parseUsage(usage string) map[string]flagSpec {
	specs := map[string]flagSpec{}
	last := ""
	for _, line := range strings.Split(usage, "\n") {
		if m := usageFlagLine.FindStringSubmatch(line); m != nil {
			last = m[1]
			specs[last] = flagSpec{kind: m[2]}
		}
		if d := usageDefault.FindStringSubmatch(line); d != nil && last != "" {
			s := specs[last]
			s.def = d[1]
			if u, err := strconv.Unquote(d[1]); err == nil {
				s.def = u
			}
			specs[last] = s
		}
	}
	return specs
}

// TestDeployUsageHelper is not a test: citadelFlags runs it in a child
// process (the test binary itself) to get run's -h output without
// building the server or touching this process's stderr.
func TestDeployUsageHelper(t *testing.T) {
	if os.Getenv("CITADEL_DEPLOY_USAGE_HELPER") != "1" {
		t.Skip("run by citadelFlags in a child process")
	}
	if err := Run(&sample.Game{}, []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "run -h:", err)
		os.Exit(3)
	}
	os.Exit(0)
}

var (
	citadelFlagsOnce sync.Once
	citadelFlagSpecs map[string]flagSpec
	citadelFlagsErr  error
)

// citadelFlags are the flags run defines, read from its -h output.
func citadelFlags(t *testing.T) map[string]flagSpec {
	t.Helper()
	citadelFlagsOnce.Do(func() {
		cmd := exec.Command(os.Args[0], "-test.run=^TestDeployUsageHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), "CITADEL_DEPLOY_USAGE_HELPER=1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			citadelFlagsErr = fmt.Errorf("citadel -h in a child process: %v\n%s", err, stderr.String())
			return
		}
		citadelFlagSpecs = parseUsage(stderr.String())
		if len(citadelFlagSpecs) < 20 || citadelFlagSpecs["role"].kind != "value" {
			citadelFlagsErr = fmt.Errorf("citadel -h lists %d flags; cannot read them from:\n%s", len(citadelFlagSpecs), stderr.String())
		}
	})
	if citadelFlagsErr != nil {
		t.Fatal(citadelFlagsErr)
	}
	return citadelFlagSpecs
}

var (
	nsqFlagSpecs  = map[string]map[string]flagSpec{}
	nsqToolsShort = "the NSQ daemons' flags come from building them (go tool); not with -short"
)

// nsqFlags are the flags of an NSQ daemon (nsqd, nsqlookupd) at the
// version go.mod pins, the one the nsqio/nsq image must have.
func nsqFlags(t *testing.T, daemon string) map[string]flagSpec {
	t.Helper()
	if specs, ok := nsqFlagSpecs[daemon]; ok {
		return specs
	}
	bin, err := exec.Command("go", "tool", "-n", daemon).Output()
	if err != nil {
		t.Fatalf("go tool -n %s: %v", daemon, err)
	}
	cmd := exec.Command(strings.TrimSpace(string(bin)), "-h")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Run() // -h exits 0 or 2 depending on the flag package's mood; the usage is what counts
	specs := parseUsage(stderr.String())
	if len(specs) < 5 {
		t.Fatalf("%s -h lists %d flags:\n%s", daemon, len(specs), stderr.String())
	}
	nsqFlagSpecs[daemon] = specs
	return specs
}

// parsedFlags holds every value given to each flag, in order.
type parsedFlags map[string][]string

// last is the value a flag ends up with (the last one given).
func (p parsedFlags) last(name string) (string, bool) {
	v := p[name]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// list is a list flag's values (repeated or comma-separated, as listFlag).
func (p parsedFlags) list(name string) []string {
	var l listFlag
	for _, v := range p[name] {
		l.Set(v)
	}
	return l
}

type checkedValue struct {
	name, kind string
	got        parsedFlags
}

func (v *checkedValue) String() string   { return "" }
func (v *checkedValue) IsBoolFlag() bool { return v.kind == "" }
func (v *checkedValue) Set(s string) error {
	var err error
	switch v.kind {
	case "":
		_, err = strconv.ParseBool(s)
	case "duration":
		_, err = time.ParseDuration(s)
	case "int", "int64":
		_, err = strconv.ParseInt(s, 0, 64)
	case "uint", "uint64":
		_, err = strconv.ParseUint(s, 0, 64)
	case "float":
		_, err = strconv.ParseFloat(s, 64)
	}
	if err != nil {
		return fmt.Errorf("not a %s", cmp.Or(v.kind, "bool"))
	}
	v.got[v.name] = append(v.got[v.name], s)
	return nil
}

// parseArgs parses args as a program with these flags would: an unknown
// flag, a value of the wrong type or a positional argument is an error.
func parseArgs(specs map[string]flagSpec, args []string) (parsedFlags, error) {
	fs := flag.NewFlagSet("deploy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	got := parsedFlags{}
	for name, s := range specs {
		fs.Var(&checkedValue{name: name, kind: s.kind, got: got}, name, "")
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (every setting is a flag)", fs.Arg(0))
	}
	return got, nil
}

// --- Dockerfile ---------------------------------------------------------

type dfInstr struct {
	line  int
	cmd   string            // upper case
	flags map[string]string // --from=, --chown=, ... (the last of each)
	rest  string
}

type dfStage struct {
	image, name string
	instrs      []dfInstr
}

// parseDockerfile splits a Dockerfile into stages of instructions,
// joining continued lines and dropping comments.
func parseDockerfile(text string) ([]dfStage, error) {
	var stages []dfStage
	var logical strings.Builder
	start := 0
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "#") || (line == "" && logical.Len() == 0) {
			continue
		}
		if logical.Len() == 0 {
			start = i + 1
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			logical.WriteString(cont + " ")
			continue
		}
		logical.WriteString(line)
		in := dfInstr{line: start, flags: map[string]string{}}
		cmd, rest, _ := strings.Cut(strings.TrimSpace(logical.String()), " ")
		logical.Reset()
		in.cmd = strings.ToUpper(cmd)
		rest = strings.TrimSpace(rest)
		for strings.HasPrefix(rest, "--") {
			var f string
			f, rest, _ = strings.Cut(rest, " ")
			k, v, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
			in.flags[k] = v
			rest = strings.TrimSpace(rest)
		}
		in.rest = rest
		if in.cmd == "FROM" {
			f := strings.Fields(rest)
			st := dfStage{image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			return nil, fmt.Errorf("line %d: %s before the first FROM", in.line, in.cmd)
		}
		stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
	}
	if logical.Len() > 0 {
		return nil, errors.New("the last line continues (ends with a backslash)")
	}
	return stages, nil
}

// shellWords splits a shell command line into words: quotes and
// backslashes as sh reads them, && and ; as words of their own.
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				w.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated double quote")
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t' || c == ';':
			if inWord {
				words, inWord = append(words, w.String()), false
				w.Reset()
			}
			if c == ';' {
				words = append(words, ";")
			}
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

var envAssign = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// goBuild is one `go build` in the Dockerfile's build stage.
type goBuild struct {
	line int
	env  []string // the stage's ENV, then the command's own assignments
	args []string // after "go build"
	out  string   // -o
	pkg  string
}

// image is what the Dockerfile says about the image it builds.
type image struct {
	builds     []goBuild
	user       string
	base       string
	entrypoint []string
	expose     map[int]bool
	// copies maps a build-stage path to its image path (COPY --from).
	copies []struct{ from, to, chown string }
	golang string // the build stage's golang image tag
}

// imagePath is where a build-stage file ends up in the image.
func (im *image) imagePath(p string) (string, bool) {
	for _, c := range im.copies {
		if p == c.from {
			return c.to, true
		}
		if rel, ok := strings.CutPrefix(p, strings.TrimSuffix(c.from, "/")+"/"); ok {
			return path.Join(c.to, rel), true
		}
	}
	return "", false
}

func loadDockerfile(t *testing.T) *image {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	stages, err := parseDockerfile(string(b))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile: %d stage(s); want a build stage and a small final one", len(stages))
	}
	final := stages[len(stages)-1]
	im := &image{base: final.image, expose: map[int]bool{}}
	byName := map[string]dfStage{}
	for _, st := range stages[:len(stages)-1] {
		byName[st.name] = st
	}
	for _, in := range final.instrs {
		switch in.cmd {
		case "USER":
			im.user = in.rest
		case "EXPOSE":
			for _, p := range strings.Fields(in.rest) {
				n, err := strconv.Atoi(strings.TrimSuffix(p, "/tcp"))
				if err != nil {
					t.Errorf("Dockerfile line %d: EXPOSE %s: want a TCP port", in.line, p)
				}
				im.expose[n] = true
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.rest), &im.entrypoint); err != nil || len(im.entrypoint) == 0 {
				t.Errorf("Dockerfile line %d: ENTRYPOINT %s: want the exec form, a JSON array (the shell form would make sh PID 1, and SIGTERM would not reach citadel)", in.line, in.rest)
			}
		case "CMD":
			t.Errorf("Dockerfile line %d: CMD in the final stage: compose command: and Kubernetes args: replace it, so flags the image needs belong in ENTRYPOINT", in.line)
		case "COPY":
			from, ok := in.flags["from"]
			if !ok {
				continue
			}
			f := strings.Fields(in.rest)
			if _, known := byName[from]; !known || len(f) != 2 {
				t.Errorf("Dockerfile line %d: COPY --from=%s %s: want one path from a stage of this file to one destination", in.line, from, in.rest)
				continue
			}
			im.copies = append(im.copies, struct{ from, to, chown string }{f[0], f[1], in.flags["chown"]})
		}
	}
	// The stage the final one copies from.
	for _, c := range final.instrs {
		from := c.flags["from"]
		st, ok := byName[from]
		if c.cmd != "COPY" || !ok || im.golang != "" {
			continue
		}
		im.golang = st.image
		var stageEnv []string
		for _, in := range st.instrs {
			switch in.cmd {
			case "ENV":
				for _, kv := range strings.Fields(in.rest) {
					stageEnv = append(stageEnv, kv)
				}
			case "RUN":
				words, err := shellWords(in.rest)
				if err != nil {
					t.Fatalf("Dockerfile line %d: %v", in.line, err)
				}
				for _, cmd := range splitCommands(words) {
					b := goBuild{line: in.line, env: slices.Clone(stageEnv)}
					for len(cmd) > 0 && envAssign.MatchString(cmd[0]) {
						b.env, cmd = append(b.env, cmd[0]), cmd[1:]
					}
					if len(cmd) < 2 || cmd[0] != "go" || cmd[1] != "build" {
						continue
					}
					b.args = cmd[2:]
					for i := 0; i < len(b.args); i++ {
						a := b.args[i]
						switch {
						case a == "-o" && i+1 < len(b.args):
							b.out = b.args[i+1]
							i++
						case strings.HasPrefix(a, "-o="):
							b.out = strings.TrimPrefix(a, "-o=")
						case !strings.HasPrefix(a, "-"):
							b.pkg = a
						}
					}
					im.builds = append(im.builds, b)
				}
			}
		}
	}
	return im
}

func splitCommands(words []string) [][]string {
	var cmds [][]string
	var cur []string
	for _, w := range words {
		if w == "&&" || w == ";" || w == "||" {
			cmds, cur = append(cmds, cur), nil
			continue
		}
		cur = append(cur, w)
	}
	return append(cmds, cur)
}

// entrypointFlags are the flags the image's ENTRYPOINT passes citadel
// before those of compose's command: or Kubernetes' args:.
func entrypointFlags(t *testing.T, im *image) []string {
	t.Helper()
	if len(im.entrypoint) == 0 {
		t.Fatal("Dockerfile has no ENTRYPOINT")
	}
	return im.entrypoint[1:]
}

// pinnedNSQ is the NSQ version go.mod pins.
func pinnedNSQ(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/nsqio/nsq").Output()
	if err != nil {
		t.Fatalf("go list -m github.com/nsqio/nsq: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// goModVersion is go.mod's go directive, major and minor.
func goModVersion(t *testing.T) (int, int) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	major, _ := strconv.Atoi(string(m[1]))
	minor, _ := strconv.Atoi(string(m[2]))
	return major, minor
}

// staticELF says why the file at path is not a statically linked ELF
// executable, or nil.
func staticELF(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_INTERP:
			return errors.New("has a program interpreter (PT_INTERP): dynamically linked, it cannot run on a distroless static or scratch image")
		case elf.PT_DYNAMIC:
			return errors.New("has a dynamic section (PT_DYNAMIC): it needs shared libraries the image does not have")
		}
	}
	return nil
}

func TestDeployDockerfile(t *testing.T) {
	root := repoRoot(t)
	im := loadDockerfile(t)

	// The final stage: small, non-root, the server as PID 1.
	if !strings.HasPrefix(im.base, "gcr.io/distroless/static") && im.base != "scratch" {
		t.Errorf("Dockerfile: final stage FROM %s; want gcr.io/distroless/static…:nonroot or scratch (a static binary needs nothing else)", im.base)
	}
	uid, _, _ := strings.Cut(im.user, ":")
	if uid == "" || uid == "0" || uid == "root" {
		t.Errorf("Dockerfile: final stage USER %q; want a non-root user (65532, distroless's nonroot)", im.user)
	}
	if im.base == "scratch" {
		if _, err := strconv.Atoi(uid); err != nil {
			t.Errorf("Dockerfile: USER %s on scratch: want a numeric ID (scratch has no /etc/passwd)", im.user)
		}
	}
	major, minor := goModVersion(t)
	if m := regexp.MustCompile(`^golang:(\d+)\.(\d+)`).FindStringSubmatch(im.golang); m == nil {
		t.Errorf("Dockerfile: build stage FROM %s; want golang:MAJOR.MINOR…", im.golang)
	} else if a, _ := strconv.Atoi(m[1]); a < major || a == major && atoi(m[2]) < minor {
		t.Errorf("Dockerfile: build stage FROM %s, older than go.mod's go %d.%d", im.golang, major, minor)
	}

	// Every go build: static flags, and where its output lands.
	var server *goBuild
	for i, b := range im.builds {
		env := strings.Join(b.env, " ")
		if !slices.Contains(b.env, "CGO_ENABLED=0") {
			t.Errorf("Dockerfile line %d: go build without CGO_ENABLED=0 (%s): the binary would need libc, which the final image lacks", b.line, env)
		}
		if !slices.Contains(b.args, "-trimpath") {
			t.Errorf("Dockerfile line %d: go build without -trimpath: the binary would carry the build machine's paths", b.line)
		}
		if !slices.ContainsFunc(b.args, func(a string) bool {
			f := strings.Fields(strings.TrimPrefix(a, "-ldflags="))
			return strings.HasPrefix(a, "-ldflags=") && slices.Contains(f, "-s") && slices.Contains(f, "-w")
		}) {
			t.Errorf("Dockerfile line %d: go build without -ldflags='-s -w'", b.line)
		}
		if b.out == "" || b.pkg == "" {
			t.Errorf("Dockerfile line %d: go build %s: want -o FILE and one package", b.line, strings.Join(b.args, " "))
			continue
		}
		if _, ok := im.imagePath(b.out); !ok {
			t.Errorf("Dockerfile line %d: go build -o %s, which no COPY --from puts in the image", b.line, b.out)
		}
		if path.Clean(b.pkg) == "cmd/citadel" {
			server = &im.builds[i]
		}
	}
	if server == nil {
		t.Fatal("Dockerfile: no go build of ./cmd/citadel in the stage the final one copies from")
	}
	bin, _ := im.imagePath(server.out)
	if len(im.entrypoint) == 0 || im.entrypoint[0] != bin {
		t.Errorf("Dockerfile: ENTRYPOINT %q does not start the server built to %s (%s in the image)", im.entrypoint, server.out, bin)
	}
	flags, err := parseArgs(citadelFlags(t), im.entrypoint[1:])
	if err != nil {
		t.Fatalf("Dockerfile: ENTRYPOINT flags %q: %v", im.entrypoint[1:], err)
	}
	// The plugin folder holds every example plugin, built, where the plugin
	// host looks: <plugins>/<name>/<build>. The image has no go to build them.
	pluginsDir, _ := flags.last("plugins")
	if v, _ := flags.last("build-plugins"); v != "false" {
		t.Errorf("Dockerfile: ENTRYPOINT lacks -build-plugins=false: the image has no Go toolchain and no source to build plugins with")
	}
	for name, pkg := range (&sample.Game{}).PluginSources() {
		found := false
		for _, b := range im.builds {
			p, _ := im.imagePath(b.out)
			if path.Clean(b.pkg) == path.Clean(pkg) && pluginsDir != "" && path.Dir(path.Dir(p)) == path.Clean(pluginsDir) && path.Base(path.Dir(p)) == name {
				found = true
			}
		}
		if !found {
			t.Errorf("Dockerfile: no go build of %s into -plugins %q/%s/ in the image: the sample game's %s plugin would be missing", pkg, pluginsDir, name, name)
		}
	}
	// The data directory exists and belongs to the user the server runs as.
	dataDir, _ := flags.last("data")
	owned := false
	for _, c := range im.copies {
		owned = owned || (path.Clean(c.to) == path.Clean(dataDir) && c.chown == im.user)
	}
	if dataDir == "" || !owned {
		t.Errorf("Dockerfile: -data %q is not a directory the image gives to USER %s (COPY --chown=%s … %s)", dataDir, im.user, im.user, dataDir)
	}

	// What the build must not see: a running server's data and keys.
	di, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatalf(".dockerignore: %v (without it, `COPY . .` sends ./data with its key files into the build)", err)
	}
	ignored := map[string]bool{}
	for _, l := range strings.Split(string(di), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			ignored[strings.Trim(l, "/")] = true
		}
	}
	for _, p := range []string{"data", "deploy/secrets", ".git"} {
		if !ignored[p] {
			t.Errorf(".dockerignore does not exclude %s", p)
		}
	}

	// Run the builds as written, into a temporary directory.
	if testing.Short() {
		t.Skip("the image's go builds take a while on a cold build cache; not with -short")
	}
	tmp := t.TempDir()
	for _, b := range im.builds {
		out := filepath.Join(tmp, filepath.FromSlash(b.out))
		args := []string{"build"}
		for i := 0; i < len(b.args); i++ {
			switch a := b.args[i]; {
			case a == "-o":
				args = append(args, "-o", out)
				i++
			case strings.HasPrefix(a, "-o="):
				args = append(args, "-o="+out)
			default:
				args = append(args, a)
			}
		}
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		// As in the golang image: no GOFLAGS from this machine, a Linux binary.
		cmd.Env = append(append(os.Environ(), "GOFLAGS=", "GOOS=linux"), b.env...)
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("Dockerfile line %d: go %s: %v\n%s", b.line, strings.Join(args, " "), err, msg)
		}
		if err := staticELF(out); err != nil {
			t.Errorf("Dockerfile line %d: %s %v", b.line, b.out, err)
		}
	}
	usage, _ := exec.Command(filepath.Join(tmp, filepath.FromSlash(server.out)), "-h").CombinedOutput()
	if !strings.Contains(string(usage), "Usage of citadel") {
		t.Errorf("the image's citadel -h did not print its usage:\n%s", usage)
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// --- what every citadel process needs ------------------------------------

// citadelProc is one citadel process a deploy file starts.
type citadelProc struct {
	where string // file and object, for messages
	specs map[string]flagSpec
	flags parsedFlags
	env   map[string]string // the environment it gets (values; secrets never)
	// secretFile says why path is not a secret file mounted for it, or nil.
	secretFile func(path string) error
	// reach says why host:port is not something the file starts, or nil.
	reach func(host string, port int) error
}

func (p *citadelProc) roles() []string {
	r := p.flags.list("role")
	if len(r) == 0 {
		return []string{services.Login, services.Gate, services.Game}
	}
	return r
}

func (p *citadelProc) has(role string) bool { return slices.Contains(p.roles(), role) }

// get is a flag's value as the process sees it: the last one given, or
// the default.
func (p *citadelProc) get(name string) string {
	if v, ok := p.flags.last(name); ok {
		return v
	}
	return p.specs[name].def
}

// drainTimeout is -drain-timeout as given, or its default.
func (p *citadelProc) drainTimeout() time.Duration {
	if d, err := time.ParseDuration(p.get("drain-timeout")); err == nil {
		return d
	}
	return drainTimeoutDefault
}

// listenPort checks a listen address a probe, a Service or another
// container must reach: not loopback, and returns its port.
func listenPort(flagName, addr string) (int, error) {
	if err := checkAddr(addr, true); err != nil {
		return 0, fmt.Errorf("-%s %s: %v", flagName, addr, err)
	}
	host, port, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		return 0, fmt.Errorf("-%s %s listens on loopback only: nothing outside the container reaches it (want :PORT)", flagName, addr)
	}
	return strconv.Atoi(port)
}

// secretLooking finds values that look like keys: a run of 32 or more
// hex digits.
var secretLooking = regexp.MustCompile(`[0-9a-fA-F]{32,}`)

// secretEnvNames are variables whose value is a secret: they may come
// from a Secret, never written out in a deploy file.
var secretEnvNames = append([]string{"PGPASSWORD"}, secretEnvs...)

// nodeName is the node name a process runs a role under.
func (p *citadelProc) nodeName(role string) string { return role + "-" + p.get("id") }

// checkProc checks what every citadel process of a cluster needs and
// returns problems, each naming the flag or variable to change.
func checkProc(p *citadelProc, args []string) []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	for _, a := range args {
		if secretLooking.MatchString(a) {
			bad("argument %q looks like a key: secrets go in files (-*-file) or the environment, never on the command line", a)
		}
	}
	for _, name := range secretEnvNames {
		if v, ok := p.env[name]; ok && v != "" {
			bad("%s is set to a value written in the deploy file: take it from a secret, or better a -*-file", name)
		}
	}
	for _, r := range p.flags.list("role") {
		if r != services.Login && r != services.Gate && r != services.Game {
			bad("-role %s: want login, gate or game", r)
		}
	}
	if id := p.get("id"); checkNodeID(id) != nil {
		bad("-id %q: %v", id, checkNodeID(id))
	}

	// One NSQ cluster for all: no process may fall back to its own embedded one.
	for _, f := range []string{"nsqd", "nsqd-http", "lookupd"} {
		addrs := p.flags.list(f)
		if len(addrs) == 0 {
			bad("no -%s: the process would run an embedded NSQ of its own instead of joining the cluster's", f)
		}
		for _, a := range addrs {
			if err := checkAddr(a, false); err != nil {
				bad("-%s %s: %v", f, a, err)
				continue
			}
			host, port, _ := net.SplitHostPort(a)
			if err := p.reach(host, atoi(port)); err != nil {
				bad("-%s %s: %v", f, a, err)
			}
		}
	}

	// Secrets: the cluster's, from mounted files, the same for every process.
	need := []string{"cluster-key-file", "admin-token-file"}
	if p.has(services.Login) || p.has(services.Gate) {
		need = append(need, "ticket-key-file") // else each makes its own, and no gate accepts another's tickets
	}
	for _, f := range need {
		v, ok := p.flags.last(f)
		if !ok {
			bad("no -%s: the process would make a key of its own in -data, which no other process shares", f)
			continue
		}
		if err := p.secretFile(v); err != nil {
			bad("-%s %s: %v", f, v, err)
		}
	}

	// The store: PostgreSQL, with the DSN (password included) in a file.
	if p.has(services.Login) || p.has(services.Game) {
		store, dsn := p.get("store"), p.get("pg")
		switch {
		case store != "postgres" || dsn == "":
			bad("-store %q -pg %q: login and game nodes share one PostgreSQL (bbolt is one process's file; a second game node on another store refuses to start)", store, dsn)
		case dsnHasPassword(dsn):
			bad("-pg %q holds a password: put the DSN in a service file (PGSERVICEFILE, -pg service=NAME)", dsn)
		case strings.HasPrefix(dsn, "service="):
			if f := p.env["PGSERVICEFILE"]; f == "" {
				bad("-pg %s without PGSERVICEFILE: the service file holds the DSN", dsn)
			} else if err := p.secretFile(f); err != nil {
				bad("PGSERVICEFILE %s: %v", f, err)
			}
		}
	}

	// Listeners other containers, probes and clients must reach.
	if _, err := listenPort("admin", p.get("admin")); err != nil {
		bad("%v", err)
	}
	if p.has(services.Login) {
		if _, err := listenPort("login", p.get("login")); err != nil {
			bad("%v", err)
		}
	}
	if p.has(services.Gate) {
		for _, l := range []struct{ listen, public string }{{"gate-tcp", "public-tcp"}, {"gate-ws", "public-ws"}} {
			v := p.get(l.listen)
			if v == "" {
				continue
			}
			if _, err := listenPort(l.listen, v); err != nil {
				bad("%v", err)
			}
			if p.get(l.public) == "" {
				bad("-%s %s without -%s: login would send clients to the listen address", l.listen, v, l.public)
			}
		}
		if pub := p.get("public-tcp"); pub != "" && checkAddr(pub, false) != nil {
			bad("-public-tcp %s: %v", pub, checkAddr(pub, false))
		}
		if pub := p.get("public-ws"); pub != "" {
			if u, err := url.Parse(pub); err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Port() == "" {
				bad("-public-ws %s: want ws://HOST:PORT/ws or wss://…", pub)
			}
		}
	}
	return errs
}

// checkCluster checks what the processes of one deploy file need
// together: unique node names and one store.
func checkCluster(t *testing.T, procs []*citadelProc) {
	t.Helper()
	names := map[string]string{}
	stores := map[string]string{}
	games := 0
	for _, p := range procs {
		for _, r := range p.roles() {
			n := p.nodeName(r)
			if other, dup := names[n]; dup {
				t.Errorf("%s and %s both run node %s: node names must be unique (-id)", other, p.where, n)
			}
			names[n] = p.where
		}
		if p.has(services.Game) {
			games++
		}
		if p.has(services.Login) || p.has(services.Game) {
			stores[p.get("store")+" "+p.get("pg")+" "+p.env["PGSERVICEFILE"]] = p.where
		}
	}
	if len(stores) > 1 {
		t.Errorf("login and game processes use different stores: %v", stores)
	}
	if games < 2 {
		t.Errorf("%d game node(s): the deploy files are meant to show several on PostgreSQL", games)
	}
}

// --- Kubernetes -----------------------------------------------------------

type k8sObject struct {
	where string // file and document
	kind  string
	meta  metav1.Object
	obj   any
}

// decodeK8s decodes one YAML document into the official API type of its
// kind, refusing unknown and duplicate fields as the API server does.
func decodeK8s(doc []byte) (*k8sObject, error) {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, err
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(j, &tm); err != nil {
		return nil, err
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 Namespace":
		obj = &corev1.Namespace{}
	case "v1 Secret":
		obj = &corev1.Secret{}
	case "v1 ConfigMap":
		obj = &corev1.ConfigMap{}
	case "v1 Service":
		obj = &corev1.Service{}
	case "apps/v1 Deployment":
		obj = &appsv1.Deployment{}
	case "apps/v1 StatefulSet":
		obj = &appsv1.StatefulSet{}
	case "policy/v1 PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	default:
		return nil, fmt.Errorf("apiVersion %q kind %q: a kind this test does not know; teach decodeK8s its type and check what it refers to", tm.APIVersion, tm.Kind)
	}
	strict, err := kjson.UnmarshalStrict(j, obj, kjson.DisallowUnknownFields, kjson.DisallowDuplicateFields)
	if err != nil {
		return nil, err
	}
	if err := errors.Join(strict...); err != nil {
		return nil, err
	}
	return &k8sObject{kind: tm.Kind, meta: obj.(metav1.Object), obj: obj}, nil
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// k8s is every object in deploy/k8s.
type k8s struct {
	objects    []*k8sObject
	namespaces map[string]*corev1.Namespace
	secrets    map[string]*corev1.Secret
	configMaps map[string]*corev1.ConfigMap
	services   map[string]*corev1.Service
	workloads  []*workload
}

// workload is a Deployment or StatefulSet and the pods it makes.
type workload struct {
	where    string
	name     string
	selector *metav1.LabelSelector
	template *corev1.PodTemplateSpec
	sts      *appsv1.StatefulSet // nil for a Deployment
	replicas int
}

// pod is one pod a workload makes, with the labels it gets.
type pod struct {
	w      *workload
	name   string
	labels map[string]string
}

func (w *workload) pods() []pod {
	var ps []pod
	for i := range w.replicas {
		name := fmt.Sprintf("%s-7d4b9c8f6d-x2x9%d", w.name, i) // a Deployment's pod: name-<template hash>-<random>
		l := map[string]string{}
		for k, v := range w.template.Labels {
			l[k] = v
		}
		if w.sts != nil {
			name = fmt.Sprintf("%s-%d", w.name, i)
			l["statefulset.kubernetes.io/pod-name"] = name
			l["apps.kubernetes.io/pod-index"] = strconv.Itoa(i)
		}
		ps = append(ps, pod{w: w, name: name, labels: l})
	}
	return ps
}

func loadK8s(t *testing.T) *k8s {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "deploy", "k8s", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no deploy/k8s/*.yaml (%v)", err)
	}
	m := &k8s{namespaces: map[string]*corev1.Namespace{}, secrets: map[string]*corev1.Secret{},
		configMaps: map[string]*corev1.ConfigMap{}, services: map[string]*corev1.Service{}}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range docSeparator.Split(string(b), -1) {
			where := fmt.Sprintf("deploy/k8s/%s document %d", filepath.Base(f), i+1)
			if j, err := yaml.YAMLToJSON([]byte(doc)); err == nil && string(j) == "null" {
				continue // comments only
			}
			o, err := decodeK8s([]byte(doc))
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			o.where = fmt.Sprintf("%s (%s %s)", where, o.kind, o.meta.GetName())
			m.objects = append(m.objects, o)
			name := o.meta.GetName()
			var dup bool
			switch x := o.obj.(type) {
			case *corev1.Namespace:
				_, dup = m.namespaces[name]
				m.namespaces[name] = x
			case *corev1.Secret:
				_, dup = m.secrets[name]
				m.secrets[name] = x
			case *corev1.ConfigMap:
				_, dup = m.configMaps[name]
				m.configMaps[name] = x
			case *corev1.Service:
				_, dup = m.services[name]
				m.services[name] = x
			case *appsv1.Deployment:
				m.workloads = append(m.workloads, &workload{where: o.where, name: name, selector: x.Spec.Selector,
					template: &x.Spec.Template, replicas: int(ptrOr(x.Spec.Replicas, 1))})
			case *appsv1.StatefulSet:
				m.workloads = append(m.workloads, &workload{where: o.where, name: name, selector: x.Spec.Selector,
					template: &x.Spec.Template, sts: x, replicas: int(ptrOr(x.Spec.Replicas, 1))})
			}
			if dup {
				t.Errorf("%s: a second %s named %s", o.where, o.kind, name)
			}
		}
	}
	return m
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func (m *k8s) allPods() []pod {
	var ps []pod
	for _, w := range m.workloads {
		ps = append(ps, w.pods()...)
	}
	return ps
}

// containerPort resolves a port (number or name) of a pod's containers.
func containerPort(spec *corev1.PodSpec, p intstr.IntOrString) (int, bool) {
	for _, c := range spec.Containers {
		for _, cp := range c.Ports {
			if p.Type == intstr.String && cp.Name == p.StrVal || p.Type == intstr.Int && cp.ContainerPort == p.IntVal {
				return int(cp.ContainerPort), true
			}
		}
	}
	return 0, false
}

// reach says why host:port does not lead to a pod of these manifests:
// a Service name (its port; for a headless Service, the pods' port), or
// POD.SERVICE for a StatefulSet pod behind its headless Service.
func (m *k8s) reach(ns string) func(host string, port int) error {
	return func(host string, port int) error {
		host = strings.TrimSuffix(host, ".svc.cluster.local")
		host = strings.TrimSuffix(host, ".svc")
		host = strings.TrimSuffix(host, "."+ns)
		parts := strings.Split(host, ".")
		svc, ok := m.services[parts[len(parts)-1]]
		if !ok || len(parts) > 2 {
			return fmt.Errorf("%s is not a Service of deploy/k8s (want NAME or POD.NAME of a headless Service)", host)
		}
		headless := svc.Spec.ClusterIP == corev1.ClusterIPNone
		var pods []pod
		for _, p := range m.allPods() {
			if len(svc.Spec.Selector) > 0 && labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(p.labels)) &&
				(len(parts) == 1 || p.name == parts[0] && p.w.sts != nil && p.w.sts.Spec.ServiceName == svc.Name) {
				pods = append(pods, p)
			}
		}
		if len(pods) == 0 {
			return fmt.Errorf("%s: no pod behind it (a POD.SERVICE name needs a StatefulSet pod with that name and serviceName)", host)
		}
		if len(parts) == 2 && !headless {
			return fmt.Errorf("%s: Service %s is not headless, so its pods have no DNS names", host, svc.Name)
		}
		if port == 0 {
			return nil
		}
		if !headless && len(parts) == 1 {
			for _, sp := range svc.Spec.Ports {
				if int(sp.Port) == port {
					return nil
				}
			}
			return fmt.Errorf("Service %s has no port %d", svc.Name, port)
		}
		for _, p := range pods {
			if _, ok := containerPort(&p.w.template.Spec, intstr.FromInt(port)); !ok {
				return fmt.Errorf("%s: pod %s has no container port %d", host, p.name, port)
			}
		}
		return nil
	}
}

// envValue is an environment variable as a container gets it.
type envValue struct {
	value  string
	secret bool // from a Secret
	err    error
}

// containerEnv resolves a container's env for one pod, as the kubelet
// would, with what the manifests define.
func (m *k8s) containerEnv(p pod, c *corev1.Container) map[string]envValue {
	env := map[string]envValue{}
	ns := p.w.template.Namespace
	for _, e := range c.Env {
		v := envValue{value: e.Value}
		if s := e.ValueFrom; s != nil {
			switch {
			case s.FieldRef != nil:
				fp := s.FieldRef.FieldPath
				switch {
				case fp == "metadata.name":
					v.value = p.name
				case fp == "metadata.namespace":
					v.value = ns
				case strings.HasPrefix(fp, "metadata.labels['"):
					key := strings.TrimSuffix(strings.TrimPrefix(fp, "metadata.labels['"), "']")
					l, ok := p.labels[key]
					if !ok {
						v.err = fmt.Errorf("env %s: pod %s has no label %s", e.Name, p.name, key)
					}
					v.value = l
				default:
					v.value = "10.0.0.1"
				}
			case s.ConfigMapKeyRef != nil:
				cm, ok := m.configMaps[s.ConfigMapKeyRef.Name]
				if !ok {
					v.err = fmt.Errorf("env %s: no ConfigMap %s", e.Name, s.ConfigMapKeyRef.Name)
				} else if v.value, ok = cm.Data[s.ConfigMapKeyRef.Key]; !ok {
					v.err = fmt.Errorf("env %s: ConfigMap %s has no key %s", e.Name, cm.Name, s.ConfigMapKeyRef.Key)
				}
			case s.SecretKeyRef != nil:
				v.secret = true
				if _, ok := m.secretValue(s.SecretKeyRef.Name, s.SecretKeyRef.Key); !ok {
					v.err = fmt.Errorf("env %s: no Secret %s with key %s", e.Name, s.SecretKeyRef.Name, s.SecretKeyRef.Key)
				}
			case s.ResourceFieldRef != nil:
				v.value = "1"
			}
		}
		env[e.Name] = v
	}
	return env
}

func (m *k8s) secretValue(name, key string) (string, bool) {
	s, ok := m.secrets[name]
	if !ok {
		return "", false
	}
	if v, ok := s.StringData[key]; ok {
		return v, true
	}
	v, ok := s.Data[key]
	return string(v), ok
}

var varRef = regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand replaces $(VAR) in a command or argument as the kubelet does;
// a reference it cannot resolve would stay in the argument as it is.
func expand(s string, env map[string]envValue) (string, []error) {
	var errs []error
	out := varRef.ReplaceAllStringFunc(s, func(ref string) string {
		if ref == "$$" {
			return "$"
		}
		name := ref[2 : len(ref)-1]
		v, ok := env[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%q refers to $(%s), which the container's env does not define: it would stay in the argument as written", s, name))
		case v.secret:
			errs = append(errs, fmt.Errorf("%q puts the secret %s on the command line", s, name))
		}
		return v.value
	})
	return out, errs
}

// secretFiles lists the files a container's secret volume mounts give it.
func (m *k8s) secretFiles(spec *corev1.PodSpec, c *corev1.Container) map[string]string {
	files := map[string]string{} // path → "Secret/key"
	for _, vm := range c.VolumeMounts {
		for _, v := range spec.Volumes {
			if v.Name != vm.Name || v.Secret == nil {
				continue
			}
			s := m.secrets[v.Secret.SecretName]
			add := func(key, p string) {
				if vm.SubPath != "" {
					if vm.SubPath == p {
						files[vm.MountPath] = v.Secret.SecretName + "/" + key
					}
					return
				}
				files[path.Join(vm.MountPath, p)] = v.Secret.SecretName + "/" + key
			}
			if len(v.Secret.Items) > 0 {
				for _, it := range v.Secret.Items {
					add(it.Key, it.Path)
				}
			} else if s != nil {
				for k := range s.StringData {
					add(k, k)
				}
				for k := range s.Data {
					add(k, k)
				}
			}
		}
	}
	return files
}

func TestDeployKubernetes(t *testing.T) {
	m := loadK8s(t)
	specs := citadelFlags(t)
	im := loadDockerfile(t)
	entry := entrypointFlags(t, im)
	// A problem of a pod template shows in every pod it makes: say it once.
	said := map[string]bool{}
	errorf := func(format string, a ...any) {
		t.Helper()
		if msg := fmt.Sprintf(format, a...); !said[msg] {
			said[msg] = true
			t.Error(msg)
		}
	}

	if len(m.namespaces) != 1 {
		t.Fatalf("deploy/k8s defines %d Namespaces; want one that holds everything", len(m.namespaces))
	}
	var ns string
	var restricted bool
	for name, n := range m.namespaces {
		ns, restricted = name, n.Labels["pod-security.kubernetes.io/enforce"] == "restricted"
	}
	for _, o := range m.objects {
		if o.kind != "Namespace" && o.meta.GetNamespace() != ns {
			t.Errorf("%s: namespace %q; want %q, the Namespace the manifests define", o.where, o.meta.GetNamespace(), ns)
		}
	}

	// Workloads select their own pods; Services and budgets select pods
	// that exist, on ports they have.
	for _, w := range m.workloads {
		sel, err := metav1.LabelSelectorAsSelector(w.selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(w.template.Labels)) {
			t.Errorf("%s: selector %v does not match its pod template's labels %v (%v)", w.where, w.selector, w.template.Labels, err)
		}
		if w.sts != nil {
			svc, ok := m.services[w.sts.Spec.ServiceName]
			if !ok || svc.Spec.ClusterIP != corev1.ClusterIPNone {
				t.Errorf("%s: serviceName %q is not a headless Service of the manifests", w.where, w.sts.Spec.ServiceName)
			}
			if r := w.sts.Spec.UpdateStrategy; r.Type != "" && r.Type != appsv1.RollingUpdateStatefulSetStrategyType {
				t.Errorf("%s: updateStrategy %s; want RollingUpdate (one pod at a time)", w.where, r.Type)
			}
			if r := w.sts.Spec.UpdateStrategy.RollingUpdate; r != nil && r.MaxUnavailable != nil && r.MaxUnavailable.IntValue() != 1 {
				t.Errorf("%s: maxUnavailable %s; want 1", w.where, r.MaxUnavailable.String())
			}
		}
	}
	for _, o := range m.objects {
		switch x := o.obj.(type) {
		case *corev1.Service:
			if len(x.Spec.Selector) == 0 {
				t.Errorf("%s: no selector", o.where)
				continue
			}
			var matched []pod
			for _, p := range m.allPods() {
				if labels.SelectorFromSet(x.Spec.Selector).Matches(labels.Set(p.labels)) {
					matched = append(matched, p)
				}
			}
			if len(matched) == 0 {
				t.Errorf("%s: selector %v matches no pod of any workload", o.where, x.Spec.Selector)
			}
			for _, sp := range x.Spec.Ports {
				target := sp.TargetPort
				if target.Type == intstr.Int && target.IntVal == 0 {
					target = intstr.FromInt32(sp.Port)
				}
				for _, p := range matched {
					if _, ok := containerPort(&p.w.template.Spec, target); !ok {
						t.Errorf("%s: port %s targets %s, which pod %s does not have", o.where, sp.Name, target.String(), p.name)
					}
				}
			}
		case *policyv1.PodDisruptionBudget:
			sel, err := metav1.LabelSelectorAsSelector(x.Spec.Selector)
			found := false
			for _, p := range m.allPods() {
				found = found || (err == nil && !sel.Empty() && sel.Matches(labels.Set(p.labels)))
			}
			if !found {
				t.Errorf("%s: selector matches no pod of any workload", o.where)
			}
		}
	}
	// Game nodes: a disruption budget of one.
	gamePDB := false
	for _, o := range m.objects {
		if x, ok := o.obj.(*policyv1.PodDisruptionBudget); ok && x.Spec.MaxUnavailable != nil && x.Spec.MaxUnavailable.IntValue() == 1 {
			sel, _ := metav1.LabelSelectorAsSelector(x.Spec.Selector)
			for _, w := range m.workloads {
				if sel != nil && sel.Matches(labels.Set(w.template.Labels)) && w.name == "game" {
					gamePDB = true
				}
			}
		}
	}
	if !gamePDB {
		t.Error("no PodDisruptionBudget with maxUnavailable 1 for the game StatefulSet")
	}

	// Pods: what they refer to exists, they run as non-root, and every
	// citadel container is a process the cluster can run.
	var procs []*citadelProc
	nsqVersion := pinnedNSQ(t)
	citadelImages := map[string]bool{}
	for _, w := range m.workloads {
		spec := &w.template.Spec
		for _, v := range spec.Volumes {
			switch {
			case v.Secret != nil:
				if _, ok := m.secrets[v.Secret.SecretName]; !ok {
					t.Errorf("%s: volume %s: no Secret %s in the manifests", w.where, v.Name, v.Secret.SecretName)
				}
				for _, it := range v.Secret.Items {
					if _, ok := m.secretValue(v.Secret.SecretName, it.Key); !ok {
						t.Errorf("%s: volume %s: Secret %s has no key %s", w.where, v.Name, v.Secret.SecretName, it.Key)
					}
				}
				if mode := ptrOr(v.Secret.DefaultMode, 0o644); mode&0o007 != 0 {
					t.Errorf("%s: volume %s: defaultMode %#o lets every user of the container read the secrets; want 0440 (the pod's fsGroup reads them)", w.where, v.Name, mode)
				}
			case v.ConfigMap != nil:
				if _, ok := m.configMaps[v.ConfigMap.Name]; !ok {
					t.Errorf("%s: volume %s: no ConfigMap %s in the manifests", w.where, v.Name, v.ConfigMap.Name)
				}
			}
		}
		for ci := range spec.Containers {
			c := &spec.Containers[ci]
			where := fmt.Sprintf("%s container %s", w.where, c.Name)
			for _, ef := range c.EnvFrom {
				if ef.SecretRef != nil {
					t.Errorf("%s: envFrom Secret %s: mount secrets as files, named one by one", where, ef.SecretRef.Name)
				}
				if ef.ConfigMapRef != nil {
					if _, ok := m.configMaps[ef.ConfigMapRef.Name]; !ok {
						t.Errorf("%s: envFrom: no ConfigMap %s", where, ef.ConfigMapRef.Name)
					}
				}
			}
			for _, vm := range c.VolumeMounts {
				claim := w.sts != nil && slices.ContainsFunc(w.sts.Spec.VolumeClaimTemplates, func(pvc corev1.PersistentVolumeClaim) bool { return pvc.Name == vm.Name })
				if !claim && !slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name }) {
					t.Errorf("%s: mounts volume %s, which neither the pod nor a volumeClaimTemplate defines", where, vm.Name)
				}
			}
			// Non-root: the pod's or the container's securityContext says so.
			psc, csc := spec.SecurityContext, c.SecurityContext
			if psc == nil {
				psc = &corev1.PodSecurityContext{}
			}
			if csc == nil {
				csc = &corev1.SecurityContext{}
			}
			nonRoot := ptrOr(csc.RunAsNonRoot, ptrOr(psc.RunAsNonRoot, false))
			uid := ptrOr(csc.RunAsUser, ptrOr(psc.RunAsUser, -1))
			if !nonRoot || uid == 0 {
				t.Errorf("%s: not sure to run as non-root (runAsNonRoot %v, runAsUser %d)", where, nonRoot, uid)
			}
			if restricted {
				seccomp := csc.SeccompProfile
				if seccomp == nil {
					seccomp = psc.SeccompProfile
				}
				if ptrOr(csc.AllowPrivilegeEscalation, true) || csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") ||
					seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault && seccomp.Type != corev1.SeccompProfileTypeLocalhost {
					t.Errorf("%s: the Namespace enforces the restricted pod security standard, which would refuse this pod: want allowPrivilegeEscalation false, capabilities drop ALL, seccompProfile RuntimeDefault", where)
				}
			}

			if strings.HasPrefix(c.Image, "nsqio/nsq:") {
				if want := "nsqio/nsq:" + nsqVersion; c.Image != want {
					t.Errorf("%s: image %s; want %s, the NSQ version go.mod pins and the tests run", where, c.Image, want)
				}
			}
			if c.Name != citadelContainer {
				if strings.Contains(c.Image, "citadel") {
					t.Errorf("%s: runs a citadel image but is not named %q, so nothing here checks its flags", where, citadelContainer)
				}
				if len(c.Command) == 1 && (c.Command[0] == "/nsqd" || c.Command[0] == "/nsqlookupd") {
					t.Run("nsq flags "+w.name, func(t *testing.T) {
						if testing.Short() {
							t.Skip(nsqToolsShort)
						}
						for _, p := range w.pods() {
							env := m.containerEnv(p, c)
							var args []string
							for _, a := range c.Args {
								e, errs := expand(a, env)
								for _, err := range errs {
									t.Errorf("%s: %v", where, err)
								}
								args = append(args, e)
							}
							f, err := parseArgs(nsqFlags(t, path.Base(c.Command[0])), args)
							if err != nil {
								t.Errorf("%s: %s %q: %v", where, c.Command[0], args, err)
								continue
							}
							for _, a := range f["lookupd-tcp-address"] {
								host, port, err := net.SplitHostPort(a)
								if err == nil {
									err = m.reach(ns)(host, atoi(port))
								}
								if err != nil {
									t.Errorf("%s: --lookupd-tcp-address %s: %v", where, a, err)
								}
							}
						}
					})
				}
				continue
			}

			// A citadel container.
			citadelImages[c.Image] = true
			if len(c.Command) > 0 {
				errorf("%s: command %q replaces the image's ENTRYPOINT and the flags it sets; give args only", where, c.Command)
			}
			grace := time.Duration(ptrOr(spec.TerminationGracePeriodSeconds, 30)) * time.Second
			files := m.secretFiles(spec, c)
			for _, p := range w.pods() {
				env := m.containerEnv(p, c)
				plain := map[string]string{}
				for _, e := range c.Env {
					v := env[e.Name]
					if v.err != nil {
						errorf("%s: %v", where, v.err)
					}
					if v.secret {
						plain[e.Name] = "" // a Secret reference: allowed, and never a value in the file
						continue
					}
					plain[e.Name] = v.value
					if e.ValueFrom == nil && slices.Contains(secretEnvNames, e.Name) {
						plain[e.Name] = "(written in the manifest)"
					}
				}
				args := slices.Clone(entry)
				for _, a := range c.Args {
					e, errs := expand(a, env)
					for _, err := range errs {
						errorf("%s: %v", where, err)
					}
					args = append(args, e)
				}
				for _, a := range c.Args {
					for _, s := range m.secrets {
						for k, v := range s.StringData {
							if len(strings.TrimSpace(v)) >= 8 && strings.Contains(a, strings.TrimSpace(v)) {
								errorf("%s: argument %q holds the value of Secret %s key %s", where, a, s.Name, k)
							}
						}
					}
				}
				flags, err := parseArgs(specs, args)
				if err != nil {
					errorf("%s: pod %s: citadel %q: %v", where, p.name, args[len(entry):], err)
					continue
				}
				pr := &citadelProc{where: fmt.Sprintf("%s pod %s", where, p.name), specs: specs, flags: flags, env: plain, reach: m.reach(ns),
					secretFile: func(f string) error {
						if _, ok := files[path.Clean(f)]; !ok {
							return fmt.Errorf("not a file of a Secret mounted in this container (mounted: %v)", sortedKeys(files))
						}
						return nil
					}}
				for _, err := range checkProc(pr, args) {
					errorf("%s: %v", pr.where, err)
				}
				procs = append(procs, pr)
				// A gate's public addresses lead to it: a load balancer
				// Service selecting exactly this pod, on the advertised
				// port, to the port the gate listens on.
				if pr.has(services.Gate) {
					checkGateReachable(t, m, p, pr)
				}

				// SIGTERM drains: the kubelet must wait for the drain and the stop after it.
				if p.name != w.pods()[0].name {
					continue // the rest is the same for every pod of the workload
				}
				if d := pr.drainTimeout(); grace <= d+shutdownBudget {
					errorf("%s: terminationGracePeriodSeconds %v is not above -drain-timeout %v plus %v for the shutdown that follows: the kubelet would kill it mid-drain", where, grace, d, shutdownBudget)
				}
				// Probes on the admin port.
				admin := pr.get("admin")
				adminPort, _ := listenPort("admin", admin)
				for _, pb := range []struct {
					name, path string
					probe      *corev1.Probe
				}{{"readinessProbe", "/readyz", c.ReadinessProbe}, {"livenessProbe", "/healthz", c.LivenessProbe}} {
					if pb.probe == nil || pb.probe.HTTPGet == nil || pb.probe.HTTPGet.Path != pb.path {
						errorf("%s: want a %s httpGet %s on the admin port", where, pb.name, pb.path)
						continue
					}
					if got, ok := containerPort(spec, pb.probe.HTTPGet.Port); !ok || got != adminPort {
						errorf("%s: %s on port %s, not the admin port %d (-admin %s)", where, pb.name, pb.probe.HTTPGet.Port.String(), adminPort, admin)
					}
				}
				// Every port it declares is one the image exposes.
				for _, cp := range c.Ports {
					if !im.expose[int(cp.ContainerPort)] {
						errorf("%s: containerPort %d, which the Dockerfile does not EXPOSE", where, cp.ContainerPort)
					}
				}
			}
		}
	}
	if len(citadelImages) != 1 {
		t.Errorf("citadel containers run %d different images %v; the manifests should name one release", len(citadelImages), sortedKeys(citadelImages))
	}
	checkCluster(t, procs)
	for _, want := range []string{services.Login, services.Gate, services.Game} {
		if !slices.ContainsFunc(procs, func(p *citadelProc) bool { return p.has(want) }) {
			t.Errorf("no citadel container runs the %s role", want)
		}
	}

	// The Secret's placeholders must keep citadel from starting, and its
	// PostgreSQL service file must name the PostgreSQL the manifests run.
	s, ok := m.secrets["citadel-secrets"]
	if !ok {
		t.Fatal("no Secret citadel-secrets")
	}
	dir := t.TempDir()
	for k, v := range s.StringData {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, err := range loadSecretFiles(dir) {
		if err == nil {
			t.Error("Secret citadel-secrets: a placeholder is accepted as a real secret; placeholders must keep citadel from starting until replaced")
		}
	}
	pg := checkServiceFile(t, filepath.Join(dir, "pg_service.conf"), "citadel")
	if err := m.reach(ns)(pg.Host, int(pg.Port)); err != nil {
		t.Errorf("Secret citadel-secrets pg_service.conf host=%s port=%d: %v", pg.Host, pg.Port, err)
	}
	if pw, _ := m.secretValue("citadel-secrets", "pg_password"); pg.Password != strings.TrimSpace(pw) {
		t.Error("Secret citadel-secrets: the password in pg_service.conf differs from pg_password, the PostgreSQL server's")
	}
}

// checkGateReachable checks that gate pod p's advertised addresses are
// served by a Service that selects that pod alone.
func checkGateReachable(t *testing.T, m *k8s, p pod, pr *citadelProc) {
	t.Helper()
	for _, l := range []struct{ listen, public string }{{"gate-tcp", "public-tcp"}, {"gate-ws", "public-ws"}} {
		listen, pub := pr.get(l.listen), pr.get(l.public)
		if listen == "" || pub == "" {
			continue
		}
		if u, err := url.Parse(pub); err == nil && u.Host != "" {
			pub = u.Host
		}
		_, pubPort, _ := net.SplitHostPort(pub)
		_, listenP, _ := net.SplitHostPort(listen)
		found := false
		for _, svc := range m.services {
			if svc.Spec.Type != corev1.ServiceTypeLoadBalancer && svc.Spec.Type != corev1.ServiceTypeNodePort {
				continue
			}
			sel := labels.SelectorFromSet(svc.Spec.Selector)
			if !sel.Matches(labels.Set(p.labels)) {
				continue
			}
			only := true
			for _, other := range p.w.pods() {
				only = only && (other.name == p.name || !sel.Matches(labels.Set(other.labels)))
			}
			for _, sp := range svc.Spec.Ports {
				tp, ok := containerPort(&p.w.template.Spec, sp.TargetPort)
				if only && ok && strconv.Itoa(int(sp.Port)) == pubPort && strconv.Itoa(tp) == listenP {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("%s: -%s %s: no LoadBalancer or NodePort Service selects this pod alone with port %s to its -%s %s: login would send clients where no gate answers (a ticket is good at one gate only)",
				pr.where, l.public, pub, pubPort, l.listen, listen)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// --- secrets --------------------------------------------------------------

// loadSecretFiles loads ticket.key, cluster.key and admin.token from dir
// with the server's own loaders; one error (or nil) per secret.
func loadSecretFiles(dir string) []error {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := config{NSQD: []string{"nsqd:4150"}, // a cluster member: no key is made up
		TicketKeyFile: filepath.Join(dir, "ticket.key"), ClusterKeyFile: filepath.Join(dir, "cluster.key"),
		AdminTokenFile: filepath.Join(dir, "admin.token")}
	_, _, terr := loadTicketKey(cfg, log)
	_, _, cerr := loadClusterKey(cfg, log)
	_, aerr := loadAdminToken(cfg, log)
	return []error{terr, cerr, aerr}
}

// checkServiceFile parses the DSN -pg service=NAME gives with
// PGSERVICEFILE=file, as the server's PostgreSQL driver does.
func checkServiceFile(t *testing.T, file, name string) *pgconn.Config {
	t.Helper()
	t.Setenv("PGSERVICEFILE", file)
	for _, v := range []string{"PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGPASSFILE", "PGSERVICE"} {
		t.Setenv(v, "") // the driver ignores empty ones: only the file counts
	}
	c, err := pgconn.ParseConfig("service=" + name)
	if err != nil {
		t.Fatalf("%s: -pg service=%s does not parse: %v", filepath.Base(file), name, err)
	}
	if c.Host == "" || c.User == "" || c.Database == "" || c.Password == "" {
		t.Errorf("%s: service %s lacks host, user, dbname or password (host=%q user=%q dbname=%q)", filepath.Base(file), name, c.Host, c.User, c.Database)
	}
	return c
}

// genSecrets runs deploy/gen-secrets.sh into a new directory.
func genSecrets(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "secrets")
	out, err := exec.Command("sh", filepath.Join(repoRoot(t), "deploy", "gen-secrets.sh"), dir, "postgres").CombinedOutput()
	if err != nil {
		t.Fatalf("deploy/gen-secrets.sh: %v\n%s", err, out)
	}
	if out, err := exec.Command("sh", filepath.Join(repoRoot(t), "deploy", "gen-secrets.sh"), dir).CombinedOutput(); err == nil {
		t.Errorf("deploy/gen-secrets.sh overwrote existing secrets:\n%s", out)
	}
	return dir
}

func TestDeploySecretsScript(t *testing.T) {
	dir := genSecrets(t)
	for i, err := range loadSecretFiles(dir) {
		if err != nil {
			t.Errorf("deploy/gen-secrets.sh wrote a secret citadel refuses (%d): %v", i, err)
		}
	}
	pg := checkServiceFile(t, filepath.Join(dir, "pg_service.conf"), "citadel")
	pw, err := os.ReadFile(filepath.Join(dir, "pg_password"))
	if err != nil || strings.TrimSpace(string(pw)) != pg.Password {
		t.Errorf("deploy/gen-secrets.sh: pg_password and the password in pg_service.conf differ (%v)", err)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("deploy/gen-secrets.sh: the secrets directory is not 0700 (%v): other users of the host could read the keys", err)
	}
}

// --- compose -------------------------------------------------------------

type composeFile struct {
	Name     string                     `json:"name"`
	Services map[string]*composeService `json:"services"`
	Secrets  map[string]struct {
		File string `json:"file"`
	} `json:"secrets"`
	Volumes map[string]*struct{} `json:"volumes"`
}

type composeService struct {
	Build *struct {
		Context    string `json:"context"`
		Dockerfile string `json:"dockerfile"`
	} `json:"build"`
	Image       string            `json:"image"`
	Command     []string          `json:"command"`
	Environment map[string]string `json:"environment"`
	Secrets     []string          `json:"secrets"`
	Volumes     []string          `json:"volumes"`
	Ports       []string          `json:"ports"`
	Tmpfs       []string          `json:"tmpfs"`
	User        string            `json:"user"`
	DependsOn   map[string]struct {
		Condition string `json:"condition"`
	} `json:"depends_on"`
	Healthcheck *struct {
		Test        []string `json:"test"`
		Interval    string   `json:"interval"`
		Timeout     string   `json:"timeout"`
		Retries     int      `json:"retries"`
		StartPeriod string   `json:"start_period"`
	} `json:"healthcheck"`
	Restart         string `json:"restart"`
	StopGracePeriod string `json:"stop_grace_period"`
}

// loadCompose parses deploy/compose.yaml strictly at every level it
// models; top-level x- extension fields (YAML anchors) are allowed.
func loadCompose(t *testing.T) *composeFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSONStrict(b)
	if err != nil {
		t.Fatalf("deploy/compose.yaml: %v", err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(j, &top); err != nil {
		t.Fatalf("deploy/compose.yaml: %v", err)
	}
	for k := range top {
		if strings.HasPrefix(k, "x-") {
			delete(top, k)
		}
	}
	j, _ = json.Marshal(top)
	var c composeFile
	strict, err := kjson.UnmarshalStrict(j, &c, kjson.DisallowUnknownFields, kjson.DisallowDuplicateFields)
	if err == nil {
		err = errors.Join(strict...)
	}
	if err != nil {
		t.Fatalf("deploy/compose.yaml: %v", err)
	}
	return &c
}

var runSecret = regexp.MustCompile(`/run/secrets/([A-Za-z0-9_.-]+)`)

var composeVar = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// interpolate replaces ${VAR:-default} as compose does with VAR unset;
// a variable without a default is an error (the file must work as is).
func interpolate(s string) (string, error) {
	var err error
	out := composeVar.ReplaceAllStringFunc(s, func(ref string) string {
		if ref == "$$" {
			return "$"
		}
		m := composeVar.FindStringSubmatch(ref)
		if m[2] == "" {
			err = fmt.Errorf("%q uses %s without a default (${VAR:-default})", s, ref)
		}
		return m[3]
	})
	return out, err
}

// composePort is one "[ip:]host:container" of ports:.
type composePort struct{ ip, host, container string }

func parsePort(s string) (composePort, error) {
	f := strings.Split(s, ":")
	switch len(f) {
	case 2:
		return composePort{host: f[0], container: f[1]}, nil
	case 3:
		return composePort{ip: f[0], host: f[1], container: f[2]}, nil
	}
	return composePort{}, fmt.Errorf("port %q: want [IP:]HOST:CONTAINER", s)
}

func TestDeployCompose(t *testing.T) {
	c := loadCompose(t)
	specs := citadelFlags(t)
	entry := entrypointFlags(t, loadDockerfile(t))
	root := repoRoot(t)
	generated := genSecrets(t)

	// The service graph: dependencies exist, are healthy-checkable when
	// waited for, and have no cycles.
	for name, s := range c.Services {
		for dep, d := range s.DependsOn {
			ds, ok := c.Services[dep]
			switch {
			case !ok:
				t.Errorf("service %s depends on %s, which is not a service", name, dep)
			case d.Condition == "service_healthy" && ds.Healthcheck == nil:
				t.Errorf("service %s waits for %s to be healthy, which has no healthcheck", name, dep)
			case d.Condition != "service_healthy" && d.Condition != "service_started" && d.Condition != "service_completed_successfully":
				t.Errorf("service %s: depends_on %s condition %q", name, dep, d.Condition)
			}
		}
		if s.Restart != "" && !slices.Contains([]string{"no", "always", "on-failure", "unless-stopped"}, s.Restart) {
			t.Errorf("service %s: restart %q", name, s.Restart)
		}
		if s.Healthcheck != nil {
			for _, d := range []string{s.Healthcheck.Interval, s.Healthcheck.Timeout, s.Healthcheck.StartPeriod} {
				if _, err := time.ParseDuration(d); d != "" && err != nil {
					t.Errorf("service %s: healthcheck duration %q: %v", name, d, err)
				}
			}
			if len(s.Healthcheck.Test) == 0 || s.Healthcheck.Test[0] != "CMD" && s.Healthcheck.Test[0] != "CMD-SHELL" {
				t.Errorf("service %s: healthcheck test %q: want [CMD, …]", name, s.Healthcheck.Test)
			}
		}
		for _, sec := range s.Secrets {
			if _, ok := c.Secrets[sec]; !ok {
				t.Errorf("service %s uses secret %s, which is not defined", name, sec)
			}
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if _, ok := c.Volumes[src]; !ok && !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
				t.Errorf("service %s mounts volume %s, which is not defined", name, src)
			}
		}
		for _, p := range s.Ports {
			if _, err := parsePort(p); err != nil {
				t.Errorf("service %s: %v", name, err)
			}
		}
		// Every /run/secrets/NAME it names is a secret it mounts.
		texts := slices.Clone(s.Command)
		for _, v := range s.Environment {
			texts = append(texts, v)
		}
		for _, x := range texts {
			for _, m := range runSecret.FindAllStringSubmatch(x, -1) {
				if !slices.Contains(s.Secrets, m[1]) {
					t.Errorf("service %s names %s, but does not mount secret %s", name, m[0], m[1])
				}
			}
		}
	}
	var visit func(name string, stack []string)
	state := map[string]int{} // 1 visiting, 2 done
	visit = func(name string, stack []string) {
		switch state[name] {
		case 1:
			t.Errorf("depends_on cycle: %s", strings.Join(append(stack, name), " -> "))
			return
		case 2:
			return
		}
		state[name] = 1
		for dep := range c.Services[name].DependsOn {
			if _, ok := c.Services[dep]; ok {
				visit(dep, append(stack, name))
			}
		}
		state[name] = 2
	}
	for _, name := range sortedKeys(c.Services) {
		visit(name, nil)
	}
	dependsOn := func(name, dep string) bool {
		seen := map[string]bool{}
		var walk func(string) bool
		walk = func(n string) bool {
			if seen[n] {
				return false
			}
			seen[n] = true
			s, ok := c.Services[n]
			if !ok {
				return false
			}
			for d := range s.DependsOn {
				if d == dep || walk(d) {
					return true
				}
			}
			return false
		}
		return walk(name)
	}

	// Secret files: what gen-secrets.sh writes, in the ignored folder.
	for name, s := range c.Secrets {
		p := filepath.Join(root, "deploy", filepath.FromSlash(s.File))
		rel, err := filepath.Rel(filepath.Join(root, "deploy", "secrets"), p)
		if err != nil || strings.HasPrefix(rel, "..") {
			t.Errorf("secret %s: file %s is not under deploy/secrets (ignored by git and by the image build)", name, s.File)
			continue
		}
		if _, err := os.Stat(filepath.Join(generated, rel)); err != nil {
			t.Errorf("secret %s: deploy/gen-secrets.sh does not write %s", name, rel)
		}
	}

	// PostgreSQL as gen-secrets.sh's service file describes it.
	pgc := checkServiceFile(t, filepath.Join(generated, "pg_service.conf"), "citadel")
	if pgs, ok := c.Services[pgc.Host]; !ok {
		t.Errorf("pg_service.conf host=%s is not a compose service", pgc.Host)
	} else if pgs.Environment["POSTGRES_USER"] != pgc.User || pgs.Environment["POSTGRES_DB"] != pgc.Database || pgs.Environment["POSTGRES_PASSWORD_FILE"] != "/run/secrets/pg_password" {
		t.Errorf("service %s: POSTGRES_USER/DB/PASSWORD_FILE %v do not match pg_service.conf (user=%s dbname=%s) and the pg_password secret", pgc.Host, pgs.Environment, pgc.User, pgc.Database)
	}

	// The NSQ daemons: the pinned version, flags they have, peers that exist.
	nsqVersion := pinnedNSQ(t)
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		if !strings.HasPrefix(s.Image, "nsqio/nsq:") {
			continue
		}
		if s.Image != "nsqio/nsq:"+nsqVersion {
			t.Errorf("service %s: image %s; want nsqio/nsq:%s, the version go.mod pins", name, s.Image, nsqVersion)
		}
		if len(s.Command) == 0 {
			t.Errorf("service %s: no command", name)
			continue
		}
		t.Run("nsq flags "+name, func(t *testing.T) {
			if testing.Short() {
				t.Skip(nsqToolsShort)
			}
			f, err := parseArgs(nsqFlags(t, path.Base(s.Command[0])), s.Command[1:])
			if err != nil {
				t.Fatalf("service %s: %q: %v", name, s.Command, err)
			}
			for _, a := range f["lookupd-tcp-address"] {
				host, _, _ := net.SplitHostPort(a)
				if _, ok := c.Services[host]; !ok || !dependsOn(name, host) {
					t.Errorf("service %s: --lookupd-tcp-address %s: want a service it depends on", name, a)
				}
			}
		})
	}

	// The citadel services.
	var procs []*citadelProc
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		if s.Build == nil {
			if strings.Contains(s.Image, "citadel") {
				t.Errorf("service %s: image %s without build: compose would try to pull it", name, s.Image)
			}
			continue
		}
		where := "deploy/compose.yaml service " + name
		dockerfile := s.Build.Dockerfile
		if dockerfile == "" {
			dockerfile = "Dockerfile"
		}
		df := filepath.Join(root, "deploy", filepath.FromSlash(s.Build.Context), filepath.FromSlash(dockerfile))
		if df != filepath.Join(root, "Dockerfile") {
			t.Errorf("%s: builds %s, not the repository's Dockerfile", where, df)
		}
		if s.User == "root" || s.User == "0" || strings.HasPrefix(s.User, "0:") {
			t.Errorf("%s: user %s: the image runs as non-root; keep it", where, s.User)
		}
		args := slices.Clone(entry)
		for _, a := range s.Command {
			v, err := interpolate(a)
			if err != nil {
				t.Errorf("%s: %v", where, err)
			}
			args = append(args, v)
		}
		flags, err := parseArgs(specs, args)
		if err != nil {
			t.Errorf("%s: citadel %q: %v", where, args[len(entry):], err)
			continue
		}
		env := map[string]string{}
		for k, v := range s.Environment {
			env[k] = v
			if slices.Contains(secretEnvNames, k) {
				env[k] = "(written in compose.yaml)"
			}
		}
		pr := &citadelProc{where: where, specs: specs, flags: flags, env: env,
			secretFile: func(f string) error {
				sec, ok := strings.CutPrefix(f, "/run/secrets/")
				if !ok || !slices.Contains(s.Secrets, sec) {
					return fmt.Errorf("not /run/secrets/NAME of a secret the service mounts (%v)", s.Secrets)
				}
				return nil
			},
			reach: func(host string, _ int) error {
				if _, ok := c.Services[host]; !ok {
					return fmt.Errorf("%s is not a compose service", host)
				}
				if !dependsOn(name, host) {
					return fmt.Errorf("%s does not depend on %s (directly or through another service), so it may start first", name, host)
				}
				return nil
			}}
		for _, err := range checkProc(pr, args) {
			t.Errorf("%s: %v", where, err)
		}
		if pr.has(services.Login) || pr.has(services.Game) {
			if !dependsOn(name, pgc.Host) {
				t.Errorf("%s: does not depend on %s, its store", where, pgc.Host)
			}
		}
		procs = append(procs, pr)

		// docker stop must wait for the drain and the stop after it.
		grace, err := time.ParseDuration(s.StopGracePeriod)
		if s.StopGracePeriod == "" {
			grace, err = 10*time.Second, nil // compose's default
		}
		if err != nil {
			t.Errorf("%s: stop_grace_period %q: %v", where, s.StopGracePeriod, err)
		} else if d := pr.drainTimeout(); grace <= d+shutdownBudget {
			t.Errorf("%s: stop_grace_period %v is not above -drain-timeout %v plus %v for the shutdown: docker would SIGKILL it mid-drain", where, grace, d, shutdownBudget)
		}
		// Published ports lead to listeners; a gate's public addresses
		// are the host ports that lead to its listeners.
		listens := map[string]string{} // container port → flag
		for _, f := range []string{"admin", "login", "gate-tcp", "gate-ws"} {
			if v := pr.get(f); v != "" && (f == "admin" || pr.has(strings.Split(f, "-")[0])) {
				_, port, _ := net.SplitHostPort(v)
				listens[port] = f
			}
		}
		hostPort := map[string]string{} // listen flag → published host port
		for _, p := range s.Ports {
			cp, err := parsePort(p)
			if err != nil {
				continue
			}
			f, ok := listens[cp.container]
			if !ok {
				t.Errorf("%s: publishes container port %s, where citadel does not listen", where, cp.container)
			}
			hostPort[f] = cp.host
			if f == "admin" && cp.ip != "127.0.0.1" {
				t.Errorf("%s: publishes the admin port as %s: keep it on the host's loopback (127.0.0.1:…)", where, p)
			}
		}
		for _, l := range []struct{ listen, public string }{{"gate-tcp", "public-tcp"}, {"gate-ws", "public-ws"}} {
			pub := pr.get(l.public)
			if !pr.has(services.Gate) || pub == "" {
				continue
			}
			if u, err := url.Parse(pub); err == nil && u.Host != "" {
				pub = u.Host
			}
			if _, port, _ := net.SplitHostPort(pub); port != hostPort[l.listen] {
				t.Errorf("%s: -%s %s, but its -%s is published on host port %q", where, l.public, pub, l.listen, hostPort[l.listen])
			}
		}
	}
	checkCluster(t, procs)
}
