// Command citadel runs a Citadel server.
//
// Until the login, gate and game services land, it runs the foundation: an
// embedded NSQ broker, a "gate" node and a "game" node in one process. A demo
// actor on the game node counts the pings the gate node sends it across the
// mq every second and answers each with the running total; the gate prints
// what it gets back. Admin HTTP serves /healthz, /metrics and the nsqadmin UI.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/mq"
	"github.com/citadel-go/citadel/services"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Ping and Pong are the demo's messages.
type (
	Ping struct{ From string }
	Pong struct {
		Total int
		By    string
	}
)

// counter is the demo actor: it counts pings and replies with the total.
type counter struct{ total int }

func (c *counter) Receive(ctx *framework.Context) {
	switch m := ctx.Message().(type) {
	case framework.Started:
		ctx.Logger().Info("counter actor started", "addr", ctx.Self().String())
	case *Ping:
		c.total++
		ctx.Reply(&Pong{Total: c.total, By: ctx.Self().String()})
		_ = m
	}
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "citadel:", err)
		os.Exit(1)
	}
}

func run() error {
	dataDir := flag.String("data", "data", "directory for the embedded NSQ queues")
	nsqdTCP := flag.String("nsqd-tcp", "127.0.0.1:4150", "embedded nsqd TCP address")
	nsqdHTTP := flag.String("nsqd-http", "127.0.0.1:4151", "embedded nsqd HTTP address")
	lookupTCP := flag.String("lookupd-tcp", "127.0.0.1:4160", "embedded nsqlookupd TCP address")
	lookupHTTP := flag.String("lookupd-http", "127.0.0.1:4161", "embedded nsqlookupd HTTP address")
	admin := flag.String("admin", "127.0.0.1:8080", "admin HTTP address (/healthz, /metrics, /nsqadmin/)")
	interval := flag.Duration("ping-every", time.Second, "how often the demo gate pings the game node")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	logFormat := flag.String("log-format", "text", "text or json")
	flag.Parse()

	log, err := framework.NewLogger(os.Stderr, *logLevel, *logFormat)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	broker, err := mq.StartBroker(mq.BrokerConfig{
		DataDir: filepath.Join(*dataDir, "nsq"), TCPAddr: *nsqdTCP, HTTPAddr: *nsqdHTTP,
		LookupdTCPAddr: *lookupTCP, LookupdHTTPAddr: *lookupHTTP, Logger: log,
	})
	if err != nil {
		return fmt.Errorf("%w (choose other ports with -nsqd-tcp, -nsqd-http, -lookupd-tcp, -lookupd-http)", err)
	}
	defer broker.Close()

	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg := framework.NewRegistry()
	reg.MustRegister(services.GameIDs+1, (*Ping)(nil))
	reg.MustRegister(services.GameIDs+2, (*Pong)(nil))
	busCfg := broker.BusConfig()
	newNode := func(service, id string) (*framework.Node, error) {
		n, err := framework.NewNode(framework.NodeConfig{Service: service, ID: id, Registry: reg, MQ: &busCfg,
			Logger: log, Metrics: metrics})
		if err != nil {
			return nil, err
		}
		return n, n.Start(ctx)
	}
	game, err := newNode(services.Game, "game-1")
	if err != nil {
		return err
	}
	gate, err := newNode(services.Gate, "gate-1")
	if err != nil {
		return err
	}
	if _, err := game.Spawn("counter", func() framework.Actor { return &counter{} }, framework.SpawnOptions{Kind: "demo"}); err != nil {
		return err
	}

	nsqadmin, err := broker.AdminHandler("/nsqadmin")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.Handle("/metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
	mux.Handle("/nsqadmin/", nsqadmin)
	ln, err := net.Listen("tcp", *admin)
	if err != nil {
		return fmt.Errorf("admin HTTP: %w (choose another address with -admin)", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)

	fmt.Printf("citadel demo running\n  nsqd        tcp://%s http://%s\n  nsqlookupd  http://%s\n  admin       http://%s/healthz /metrics /nsqadmin/\n"+
		"  the gate node pings actor %s every %v; Ctrl-C stops\n",
		broker.TCPAddr(), broker.HTTPAddr(), broker.LookupdHTTPAddr(), ln.Addr(), game.ActorAddr("counter"), *interval)

	tick := time.NewTicker(*interval)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
			start := time.Now()
			r, err := gate.Call(callCtx, game.ActorAddr("counter"), &Ping{From: "gate-1"})
			cancel()
			if err != nil {
				if !errors.Is(err, context.Canceled) {
					log.Warn("ping failed", "err", err)
				}
				continue
			}
			pong := r.(*Pong)
			fmt.Printf("gate-1 -> %s: pong #%d over NSQ in %v\n", pong.By, pong.Total, time.Since(start).Round(time.Microsecond))
		}
	}
	log.Info("shutting down")
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(shutdown)
	gate.Stop(shutdown)
	game.Stop(shutdown)
	return nil
}
