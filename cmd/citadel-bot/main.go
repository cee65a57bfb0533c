// Command citadel-bot drives bots against a Citadel server: each registers
// (or logs in), connects over TCP or WebSocket, and plays the sample game
// (moves, chats, uses its inventory) until the duration ends. It prints
// progress every second and a summary at the end: bots that could not
// connect by cause, bots kicked by kick code, bots that lost their
// connection, failed calls by cause. It exits 1 if more bots dropped out
// than -max-dropped allows (default none) or more than 1% of calls failed.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/citadel-go/citadel/client"
)

func main() {
	cfg := botConfig{Transport: client.TCP}
	fs := flag.NewFlagSet("citadel-bot", flag.ExitOnError)
	fs.StringVar(&cfg.LoginURL, "login", "http://127.0.0.1:8000", "login service URL")
	fs.IntVar(&cfg.N, "n", 10, "number of bots")
	fs.DurationVar(&cfg.Duration, "d", 30*time.Second, "how long bots play (after connecting)")
	ws := fs.Bool("ws", false, "connect over WebSocket instead of TCP")
	fs.StringVar(&cfg.Prefix, "prefix", "bot", "account name prefix (names are <prefix>-<i>)")
	fs.StringVar(&cfg.Password, "password", "bot-password", "account password")
	fs.DurationVar(&cfg.Think, "think", 500*time.Millisecond, "pause between a bot's actions")
	fs.IntVar(&cfg.LoginConcurrency, "login-concurrency", 32, "bots logging in at the same time")
	fs.BoolVar(&cfg.EchoOnly, "echo", false, "send only Echo (measures the bare request path)")
	fs.IntVar(&cfg.MaxDropped, "max-dropped", 0, "bots that may fail to connect, be kicked or lose their connection without failing the run (for load tests at the edge)")
	fs.Parse(os.Args[1:])
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "citadel-bot: unexpected argument %q: every setting is a flag (citadel-bot -h lists them)\n", fs.Arg(0))
		os.Exit(2)
	}
	if *ws {
		cfg.Transport = client.WebSocket
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := runBots(ctx, cfg, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "citadel-bot:", err)
		os.Exit(1)
	}
	if sum.verdict(cfg.MaxDropped) != "" {
		os.Exit(1)
	}
}

// printf writes one line of progress.
func printf(w io.Writer, format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
