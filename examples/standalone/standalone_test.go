package main

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"example.com/standalone/farm"

	"github.com/citadel-go/citadel/client"
	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/services"
)

// The farm's own server binary runs, and a client plays it: registers,
// logs in over the gate, plants, waits for the crop's timer to push that
// it is ready, harvests for the price the crops table gives, and finds its
// gold again after logging in anew.
func TestPlayTheFarm(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "standalone")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	loginURL := startServer(t, bin)

	reg := framework.NewRegistry()
	if err := services.RegisterClient(reg); err != nil {
		t.Fatal(err)
	}
	if err := farm.Register(reg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lr, err := client.Register(ctx, loginURL, "farmer", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := client.Connect(ctx, lr, client.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if f := waitPush[*farm.Farm](t, conn); f.Gold != 0 || len(f.Plots) != farm.Plots {
		t.Fatalf("a new farm: %+v", f)
	}

	r, err := conn.Call(ctx, &farm.Plant{Plot: 1, Crop: "radish"})
	if err != nil {
		t.Fatal(err)
	}
	if p := r.(*farm.Planted); p.Crop != "radish" || p.ReadyAt <= time.Now().Add(-time.Minute).UnixMilli() {
		t.Fatalf("planted %+v", p)
	}
	// Wheat takes a minute: harvesting it now is too early.
	if _, err = conn.Call(ctx, &farm.Plant{Plot: 2, Crop: "wheat"}); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Call(ctx, &farm.Harvest{Plot: 2})
	var se *client.ServerError
	if !errors.As(err, &se) || se.Code != farm.CodeNotReady {
		t.Fatalf("an early harvest: %v", err)
	}
	if _, err = conn.Call(ctx, &farm.Plant{Plot: 2, Crop: "radish"}); !errors.As(err, &se) || se.Code != farm.CodeBusyPlot {
		t.Fatalf("planting a plot in use: %v", err)
	}
	if _, err = conn.Call(ctx, &farm.Plant{Plot: 9, Crop: "radish"}); !errors.As(err, &se) || se.Code != farm.CodeBadPlot {
		t.Fatalf("a plot that does not exist: %v", err)
	}
	if ready := waitPush[*farm.CropReady](t, conn); ready.Plot != 1 || ready.Crop != "radish" {
		t.Fatalf("ready %+v", ready)
	}
	r, err = conn.Call(ctx, &farm.Harvest{Plot: 1})
	if err != nil {
		t.Fatal(err)
	}
	if h := r.(*farm.Harvested); h.Paid <= 0 || h.Gold != h.Paid {
		t.Fatalf("harvested %+v", h)
	}
	gold := r.(*farm.Harvested).Gold
	conn.Close()

	lr, err = client.Login(ctx, loginURL, "farmer", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	again, err := client.Connect(ctx, lr, client.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if f := waitPush[*farm.Farm](t, again); f.Gold != gold {
		t.Fatalf("after logging in again: %+v, want gold %d", f, gold)
	}
}

// startServer runs the binary with every role on free ports and returns
// its login URL; the process is stopped (SIGTERM) when the test ends.
func startServer(t *testing.T, bin string) string {
	t.Helper()
	data := t.TempDir()
	cmd := exec.Command(bin, "-data", data, "-bcrypt-cost", "4",
		"-login", "127.0.0.1:0", "-gate-tcp", "127.0.0.1:0", "-gate-ws", "127.0.0.1:0", "-admin", "127.0.0.1:0",
		"-embedded-nsqd-tcp", "127.0.0.1:0", "-embedded-nsqd-http", "127.0.0.1:0",
		"-embedded-lookupd-tcp", "127.0.0.1:0", "-embedded-lookupd-http", "127.0.0.1:0")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
		}
	})
	// The start-up lines name the login URL and the admin address; the
	// server takes players once /readyz says so (login sees a gate, the
	// gate a game node).
	lines := make(chan []string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- strings.Fields(sc.Text())
		}
		close(lines)
	}()
	var loginURL, admin string
	timeout := time.After(2 * time.Minute)
	for loginURL == "" || admin == "" {
		select {
		case f, ok := <-lines:
			if !ok {
				t.Fatal("the server exited before printing its addresses")
			}
			switch {
			case len(f) >= 3 && f[0] == "login" && f[1] == "HTTP":
				loginURL = f[2]
			case len(f) >= 2 && f[0] == "admin" && strings.HasPrefix(f[1], "http"):
				admin = f[1]
			}
		case <-timeout:
			t.Fatal("the server did not print its login and admin addresses")
		}
	}
	go func() {
		for range lines { // keep the pipe drained
		}
	}()
	for {
		resp, err := http.Get(admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return loginURL
			}
		}
		select {
		case <-timeout:
			t.Fatalf("the server never became ready (%s/readyz)", admin)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitPush returns the next push of type T, skipping others.
func waitPush[T any](t *testing.T, c *client.Conn) T {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case p := <-c.Pushes():
			if v, ok := p.(T); ok {
				return v
			}
		case <-timeout:
			var zero T
			t.Fatalf("no %T pushed", zero)
			return zero
		}
	}
}
