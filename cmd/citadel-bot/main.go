// Command citadel-bot drives bots against a Citadel server: each registers
// (or logs in), connects over TCP or WebSocket, and plays the sample game
// (moves, chats, uses its inventory) until the duration ends. It prints
// progress every second and a summary at the end; it exits 1 if a bot could
// not connect or more than 1% of calls failed.
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
)

func main() {
	cfg := botConfig{}
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
	fs.Parse(os.Args[1:])
	if *ws {
		cfg.Transport = "ws"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := runBots(ctx, cfg, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "citadel-bot:", err)
		os.Exit(1)
	}
	if !sum.ok(cfg.N) {
		os.Exit(1)
	}
}

// printf writes one line of progress.
func printf(w io.Writer, format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
