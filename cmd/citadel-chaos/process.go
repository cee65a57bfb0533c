package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one incarnation of a process of the cluster: a citadel role, an
// nsqd or the nsqlookupd. A restart makes a new proc with the same name.
type proc struct {
	name string // game-1, gate-2, login-1, nsqd-1, nsqlookupd
	bin  string
	args []string
	log  *os.File // stdout and stderr, appended over incarnations

	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has been reaped
	err    error         // Wait's result, valid once exited is closed

	// Addresses the process printed (citadel) or logged (NSQ daemons).
	loginURL, gateTCP, admin string
	tcp, http                string

	mu      sync.Mutex
	games   map[string]bool // game nodes this process sees alive (from its membership log lines)
	errLogs []string        // its first ERROR log lines
	nErrors int
	metrics map[string]float64 // last scrape of the counters in scrapedMetrics
}

// maxErrLogs is how many ERROR lines of a process the report can quote.
const maxErrLogs = 20

// startTimeout bounds a process's start: its addresses printed, its admin
// port answering /readyz.
const startTimeout = 90 * time.Second

var (
	loginLine  = regexp.MustCompile(`login HTTP\s+(\S+)`)
	gateLine   = regexp.MustCompile(`gate TCP\s+(\S+)`)
	adminLine  = regexp.MustCompile(`^\s+admin\s+(http\S+)`)
	listenLine = regexp.MustCompile(`(TCP|HTTP): listening on (\S+)`)
)

// startProc starts bin with args, its output appended to logPath. For
// citadel (daemon false) it waits until the admin line is printed; for an
// NSQ daemon until it logged both listeners.
func startProc(ctx context.Context, name, bin string, args []string, logPath string, daemon bool) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, bin: bin, args: args, log: f, exited: make(chan struct{}), games: map[string]bool{}}
	fmt.Fprintf(f, "=== %s start %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(append([]string{bin}, args...), " "))
	p.cmd = exec.Command(bin, args...)
	// Own process group: a Ctrl-C in the terminal reaches only the chaos
	// command, which stops its processes itself. Pdeathsig: if the chaos
	// command dies without cleaning up, the kernel kills its processes.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		f.Close()
		return nil, err
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	ready := make(chan struct{})
	var once sync.Once
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); p.readStdout(stdout, ready, &once, daemon) }()
	go func() { defer readers.Done(); p.readStderr(stderr, ready, &once, daemon) }()
	go func() {
		readers.Wait() // Wait closes the pipes: read them to the end first
		p.err = p.cmd.Wait()
		fmt.Fprintf(f, "=== %s exit: %v\n", time.Now().Format(time.RFC3339Nano), p.err)
		f.Close()
		close(p.exited)
	}()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-ready:
		return p, nil
	case <-p.exited:
		return nil, fmt.Errorf("%s exited before it was ready (%v); see %s", name, p.err, logPath)
	case <-timer.C:
		p.kill()
		return nil, fmt.Errorf("%s did not print its addresses within %v; see %s", name, startTimeout, logPath)
	case <-ctx.Done():
		p.kill()
		return nil, ctx.Err()
	}
}

func (p *proc) readStdout(r io.Reader, ready chan struct{}, once *sync.Once, daemon bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		p.writeLog(l)
		if daemon {
			continue
		}
		if m := loginLine.FindStringSubmatch(l); m != nil {
			p.loginURL = m[1]
		}
		if m := gateLine.FindStringSubmatch(l); m != nil {
			p.gateTCP = m[1]
		}
		if m := adminLine.FindStringSubmatch(l); m != nil {
			p.admin = m[1] // printed last: everything above is set
			once.Do(func() { close(ready) })
		}
	}
	io.Copy(io.Discard, r)
}

// logLine is the part of a citadel JSON log line the suite reads.
type logLine struct {
	Level  string `json:"level"`
	Msg    string `json:"msg"`
	Event  string `json:"event"`
	Member string `json:"member"`
	Err    string `json:"err"`
}

func (p *proc) readStderr(r io.Reader, ready chan struct{}, once *sync.Once, daemon bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var tcp, httpAddr string
	for sc.Scan() {
		l := sc.Text()
		p.writeLog(l)
		if daemon {
			if m := listenLine.FindStringSubmatch(l); m != nil && (tcp == "" || httpAddr == "") {
				if m[1] == "TCP" {
					tcp = m[2]
				} else {
					httpAddr = m[2]
				}
				if tcp != "" && httpAddr != "" {
					p.tcp, p.http = tcp, httpAddr
					once.Do(func() { close(ready) })
				}
			}
			continue
		}
		var ll logLine
		if !strings.HasPrefix(l, "{") || json.Unmarshal([]byte(l), &ll) != nil {
			continue
		}
		p.mu.Lock()
		if ll.Msg == "membership changed" && strings.HasPrefix(ll.Member, "game/") {
			p.games[strings.TrimPrefix(ll.Member, "game/")] = ll.Event == "joined"
		}
		if ll.Level == "ERROR" {
			p.nErrors++
			if len(p.errLogs) < maxErrLogs {
				p.errLogs = append(p.errLogs, strings.TrimSpace(ll.Msg+" "+ll.Err))
			}
		}
		p.mu.Unlock()
	}
	io.Copy(io.Discard, r)
}

func (p *proc) writeLog(l string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.log, l)
}

// sees reports whether this process's membership has every game node in
// names alive.
func (p *proc) sees(names []string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, n := range names {
		if !p.games[n] {
			return false
		}
	}
	return true
}

func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *proc) signal(sig syscall.Signal) error {
	if !p.alive() {
		return fmt.Errorf("%s has exited", p.name)
	}
	return p.cmd.Process.Signal(sig)
}

// kill SIGKILLs the process (also a stopped one) and waits until it is
// reaped.
func (p *proc) kill() {
	if p.alive() {
		p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.exited
}

// term sends SIGTERM (and SIGCONT, in case it is stopped) and waits up to
// timeout for a clean exit; it SIGKILLs the process after that. It
// returns why the exit was not clean, if it was not.
func (p *proc) term(timeout time.Duration) error {
	if !p.alive() {
		return fmt.Errorf("%s had already exited: %v", p.name, p.err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-p.exited:
		if p.err != nil {
			return fmt.Errorf("%s exited after SIGTERM with %v", p.name, p.err)
		}
		return nil
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("%s did not exit within %v of SIGTERM (killed)", p.name, timeout)
	}
}

// waitReady polls the process's /readyz until it answers 200.
func (p *proc) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(startTimeout)
	for {
		err := get(ctx, p.admin+"/readyz", nil)
		if err == nil {
			return nil
		}
		if !p.alive() {
			return fmt.Errorf("%s exited while starting: %v", p.name, p.err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %v: %v", p.name, startTimeout, err)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// scrapedMetrics are the counters read from game nodes' /metrics: refused
// saves today, and whatever counts fenced saves once ownership epochs
// exist (any metric whose name contains "fenc").
var scrapedMetrics = []string{"citadel_game_save_conflicts_total", "citadel_save_stale_total"}

// labelledMetrics are scraped per label set: handoffs by outcome, kicks
// by code.
var labelledMetrics = []string{"citadel_game_handoffs_total", "citadel_gate_handoffs_total", "citadel_gate_kicks_total", holdBuckets}

// holdBuckets is the gates' histogram of how long sessions were held.
const holdBuckets = "citadel_gate_hold_seconds_bucket"

// scrape reads the process's /metrics and keeps the counters the report
// shows, summed over their labels.
func (p *proc) scrape(ctx context.Context) {
	var body strings.Builder
	if err := get(ctx, p.admin+"/metrics", &body); err != nil {
		return
	}
	m := map[string]float64{}
	for _, l := range strings.Split(body.String(), "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(l, " ")
		base, _, _ := strings.Cut(name, "{")
		var v float64
		if _, err := fmt.Sscan(strings.TrimSpace(rest), &v); err != nil {
			continue
		}
		switch {
		case contains(labelledMetrics, base):
			m[name] += v
		case strings.Contains(base, "fenc") || contains(scrapedMetrics, base):
			m[base] += v
		}
	}
	p.mu.Lock()
	p.metrics = m
	p.mu.Unlock()
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// get fetches url; a status other than 200 is an error. The body goes to
// into when it is not nil.
func get(ctx context.Context, url string, into io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: HTTP %d %s", url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if into != nil {
		_, err = io.Copy(into, resp.Body)
	}
	return err
}
