package mq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func startTestBroker(t testing.TB, cfg BrokerConfig) *Broker {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	cfg.TCPAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	if !cfg.NoLookupd {
		cfg.LookupdTCPAddr, cfg.LookupdHTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	}
	cfg.Logger = quietLogger()
	if cfg.Keys == nil {
		cfg.Keys = testKeys
	}
	b, err := StartBroker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// testKeys is the cluster keyring of buses made with newTestBus.
var testKeys = func() *Keyring {
	k, err := ParseKeyring(GenerateKeyring())
	if err != nil {
		panic(err)
	}
	return k
}()

func newTestBus(t testing.TB, cfg BusConfig) *Bus {
	t.Helper()
	cfg.Logger = quietLogger()
	if cfg.Keys == nil {
		cfg.Keys = testKeys
	}
	bus, err := NewBus(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })
	return bus
}

func collect(t testing.TB, bus *Bus, topic, channel string, opts SubscribeOptions) chan string {
	t.Helper()
	ch := make(chan string, 100000)
	if _, err := bus.Subscribe(topic, channel, func(m *Message) error {
		ch <- string(m.Body)
		return nil
	}, opts); err != nil {
		t.Fatal(err)
	}
	return ch
}

func expect(t testing.TB, ch chan string, want ...string) {
	t.Helper()
	for _, w := range want {
		select {
		case got := <-ch:
			if got != w {
				t.Fatalf("got %q, want %q", got, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("timed out waiting for %q", w)
		}
	}
}

func TestNameValidation(t *testing.T) {
	for _, ok := range []string{"a", "citadel.game.game-1", "x_y-z.1", "members#ephemeral", strings.Repeat("a", 64)} {
		if err := ValidateTopic(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for bad, frag := range map[string]string{
		"":                      "empty",
		strings.Repeat("a", 65): "65 characters",
		"has space":             `invalid character ' '`,
		"slash/x":               `invalid character '/'`,
		"#ephemeral":            "nothing before",
		"é":                     "invalid character",
	} {
		err := ValidateChannel(bad)
		if err == nil || !strings.Contains(err.Error(), frag) || !strings.Contains(err.Error(), "channel") {
			t.Errorf("%q: got %v, want an error mentioning %q", bad, err, frag)
		}
	}
}

func TestPublishSubscribeSyncBatchedAsync(t *testing.T) {
	b := startTestBroker(t, BrokerConfig{NoLookupd: true})
	bus := newTestBus(t, b.BusConfig())
	got := collect(t, bus, "t1", "c", SubscribeOptions{})
	if err := bus.Publish("t1", []byte("one")); err != nil {
		t.Fatal(err)
	}
	expect(t, got, "one")
	if err := bus.MultiPublish("t1", [][]byte{[]byte("a"), []byte("b"), []byte("c")}); err != nil {
		t.Fatal(err)
	}
	expect(t, got, "a", "b", "c")

	before := bus.Stats()
	const n = 5000
	var want []string
	for i := 0; i < n; i++ {
		s := fmt.Sprint(i)
		want = append(want, s)
		if err := bus.PublishAsync("t1", []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := bus.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := bus.Stats()
	if after.Published-before.Published != n {
		t.Fatalf("published %d, want %d", after.Published-before.Published, n)
	}
	batches := after.Batches - before.Batches
	t.Logf("%d async messages went out in %d publish commands", n, batches)
	if batches >= n/2 {
		t.Fatalf("async publishes were not batched: %d commands for %d messages", batches, n)
	}
	// One consumer with concurrency 1, one nsqd, everything in memory: FIFO.
	expect(t, got, want...)
}

func TestLingerBatchesWithinOneMillisecond(t *testing.T) {
	b := startTestBroker(t, BrokerConfig{NoLookupd: true})
	if _, err := NewBus(BusConfig{NSQD: []string{b.TCPAddr()}, Linger: 2 * time.Millisecond}); err == nil {
		t.Fatal("a linger over 1ms should be refused")
	}
	cfg := b.BusConfig()
	cfg.Linger = time.Millisecond
	bus := newTestBus(t, cfg)
	got := collect(t, bus, "linger", "c", SubscribeOptions{})
	for i := 0; i < 10; i++ {
		bus.PublishAsync("linger", []byte("x"))
	}
	bus.Flush(context.Background())
	for i := 0; i < 10; i++ {
		expect(t, got, "x")
	}
	if s := bus.Stats(); s.Batches != 1 {
		t.Fatalf("10 messages queued within the linger went out in %d commands, want 1", s.Batches)
	}
}

func TestRefusals(t *testing.T) {
	b := startTestBroker(t, BrokerConfig{NoLookupd: true})
	bus := newTestBus(t, b.BusConfig())
	big := make([]byte, DefaultMaxMsgSize+1)
	for name, err := range map[string]error{
		"Publish":      bus.Publish("t", big),
		"PublishAsync": bus.PublishAsync("t", big),
		"MultiPublish": bus.MultiPublish("t", [][]byte{[]byte("ok"), big}),
	} {
		var tl *TooLargeError
		if !errors.As(err, &tl) || tl.Size != len(big) || !strings.Contains(err.Error(), fmt.Sprintf(`topic "t" exceeds the %d-byte limit`, DefaultMaxMsgSize-SealSize)) {
			t.Errorf("%s of an oversized message: %v", name, err)
		}
	}
	if err := bus.Publish("bad topic", []byte("x")); err == nil || !strings.Contains(err.Error(), `"bad topic"`) {
		t.Errorf("bad topic: %v", err)
	}
	if _, err := bus.Subscribe("t", "bad/channel", func(*Message) error { return nil }, SubscribeOptions{}); err == nil ||
		!strings.Contains(err.Error(), `channel name "bad/channel"`) {
		t.Errorf("bad channel: %v", err)
	}
	if s := bus.Stats(); s.Published != 0 || s.PublishErrors != 0 {
		t.Fatalf("refused messages reached nsqd: %+v", s)
	}
	bus.Close()
	if err := bus.PublishAsync("t", []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("publish after close: %v", err)
	}
}

func TestRequeueTouchAndMaxAttempts(t *testing.T) {
	b := startTestBroker(t, BrokerConfig{NoLookupd: true})
	bus := newTestBus(t, b.BusConfig())
	var mu sync.Mutex
	attempts := map[string][]uint16{}
	done := make(chan string, 10)
	_, err := bus.Subscribe("rq", "c", func(m *Message) error {
		body := string(m.Body)
		mu.Lock()
		attempts[body] = append(attempts[body], m.Attempts)
		mu.Unlock()
		switch body {
		case "fail-twice":
			if m.Attempts <= 2 {
				return errors.New("not yet")
			}
		case "always-fail":
			return errors.New("never")
		case "manual":
			m.DisableAutoResponse()
			go func() {
				m.Touch()
				time.Sleep(10 * time.Millisecond)
				if m.Attempts == 1 {
					m.Requeue(0)
					return
				}
				m.Finish()
				done <- body
			}()
			return nil
		}
		done <- body
		return nil
	}, SubscribeOptions{MaxAttempts: 3, RequeueDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"fail-twice", "always-fail", "manual"} {
		bus.Publish("rq", []byte(s))
	}
	// nsqd scans a new channel's deferred messages only after its next
	// channel list refresh (every 5s), so the first requeue can take that
	// long: the waits are generous.
	seen := map[string]bool{}
	for len(seen) < 2 {
		select {
		case s := <-done:
			seen[s] = true
		case <-time.After(30 * time.Second):
			t.Fatalf("only %v finished", seen)
		}
	}
	eventually(t, 30*time.Second, "always-fail given up", func() bool { return bus.Stats().GivenUp == 1 })
	// go-nsq counts a message as given up before it sends the FIN, and a
	// handler's done above comes before its FIN too: FINs are written
	// asynchronously, so the channel empties a moment later. Every message
	// must then be answered (a message left in flight would stay there for
	// nsqd's 60s MsgTimeout, well past this wait), and the attempt counts
	// below are read after that, so a redelivery in between would show.
	var st ChannelStats
	eventually(t, 30*time.Second, "channel empty", func() bool {
		st, _ = b.ChannelStats("rq", "c")
		return st.Depth == 0 && st.InFlight == 0 && st.Deferred == 0
	})
	if st.Timeouts != 0 {
		t.Errorf("messages timed out instead of being answered: %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if a := attempts["fail-twice"]; len(a) != 3 || a[2] != 3 {
		t.Errorf("fail-twice attempts %v", a)
	}
	// go-nsq hands a message past MaxAttempts to the give-up hook, not the handler.
	if a := attempts["always-fail"]; len(a) != 3 {
		t.Errorf("always-fail attempts %v", a)
	}
	if a := attempts["manual"]; len(a) != 2 {
		t.Errorf("manual attempts %v", a)
	}
}

func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBrokerRestartKeepsQueuedMessages(t *testing.T) {
	dir := t.TempDir()
	b := startTestBroker(t, BrokerConfig{DataDir: dir, NoLookupd: true, MemQueueSize: 100})
	if err := b.CreateChannel("keep", "c"); err != nil {
		t.Fatal(err)
	}
	bus := newTestBus(t, b.BusConfig())
	var want []string
	for i := 0; i < 500; i++ {
		want = append(want, fmt.Sprint(i))
		bus.PublishAsync("keep", []byte(want[i]))
	}
	bus.Flush(context.Background())
	bus.Close()
	b.Close()

	b2 := startTestBroker(t, BrokerConfig{DataDir: dir, NoLookupd: true})
	if st, ok := b2.ChannelStats("keep", "c"); !ok || st.Depth != 500 {
		t.Fatalf("after restart: %+v %v", st, ok)
	}
	got := collect(t, newTestBus(t, b2.BusConfig()), "keep", "c", SubscribeOptions{})
	seen := map[string]bool{}
	for len(seen) < 500 {
		select {
		case s := <-got:
			seen[s] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d of 500 after restart", len(seen))
		}
	}
}

func TestAdminHandlerMounts(t *testing.T) {
	b := startTestBroker(t, BrokerConfig{})
	bus := newTestBus(t, b.BusConfig())
	collect(t, bus, "visible", "c", SubscribeOptions{})
	h, err := b.AdminHandler("/nsqadmin")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/nsqadmin/", h)
	srv := &http.Server{Handler: mux}
	ln := listen(t)
	go srv.Serve(ln)
	defer srv.Close()
	get := func(path string) string {
		resp, err := http.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		return string(body)
	}
	if page := get("/nsqadmin/"); !strings.Contains(page, "nsqadmin") {
		t.Fatalf("index page: %.200s", page)
	}
	eventually(t, 5*time.Second, "nsqadmin lists the topic", func() bool {
		return strings.Contains(get("/nsqadmin/api/topics"), "visible")
	})
}

func TestNSQLogLevels(t *testing.T) {
	for line, want := range map[string]slog.Level{
		"INFO: TCP: listening on 127.0.0.1:4150": slog.LevelInfo,
		"WARNING: something":                     slog.LevelWarn,
		"ERROR: TOPIC(citadel.members) ERROR: failed to put msg(18a3) to channel(game.dst#ephemeral) - exiting": slog.LevelDebug,
		"ERROR: failed to put msg(18a3) to channel(durable) - exiting":                                          slog.LevelError,
		"WRN    1 [t/c] there are 0 connections left alive":                                                     slog.LevelWarn,
		"DBG    2 [t/c] querying nsqlookupd":                                                                    slog.LevelDebug,
	} {
		var buf strings.Builder
		w := slogWriter{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
		w.Output(2, line)
		if !strings.Contains(buf.String(), "level="+want.String()) {
			t.Errorf("%q logged as %s, want %s", line, buf.String(), want)
		}
	}
}

func TestPackAsyncPacksInOrderAndUnpacks(t *testing.T) {
	b := startTestBroker(t, BrokerConfig{NoLookupd: true})
	bus := newTestBus(t, b.BusConfig())
	got := collect(t, bus, "packed", "c", SubscribeOptions{Unpack: true})
	var want []string
	for i := 0; i < 3000; i++ {
		s := fmt.Sprintf("m%d", i)
		want = append(want, s)
		var err error
		if i%100 == 50 {
			err = bus.PublishAsync("packed", []byte(s)) // plain messages keep their place
		} else {
			// Buffers from PackBuffer are recycled once packed: the
			// contents checked below show none is reused too early.
			err = bus.PackAsync("packed", append(PackBuffer(len(s)), s...))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	bus.Flush(context.Background())
	expect(t, got, want...)
	st := bus.Stats()
	t.Logf("3000 messages went out as %d NSQ messages in %d commands", st.Published, st.Batches)
	if st.Published >= 1000 {
		t.Fatalf("PackAsync did not pack: %d NSQ messages for 3000", st.Published)
	}
	if st.Received != 3000 {
		t.Fatalf("handler saw %d parts, want 3000", st.Received)
	}
	var tl *TooLargeError
	if err := bus.PackAsync("packed", make([]byte, DefaultMaxMsgSize-5)); !errors.As(err, &tl) {
		t.Fatalf("a part that cannot fit a pack: %v", err)
	}
	// Damaged framing reaches the handler whole, once, and is finished.
	bad := append(append([]byte{}, packMagic...), 0xff, 0xff, 0xff)
	if err := bus.Publish("packed", bad); err != nil {
		t.Fatal(err)
	}
	if m := <-got; m != string(bad) {
		t.Fatalf("damaged pack delivered as %q", m)
	}
	eventually(t, 5*time.Second, "damaged pack finished", func() bool {
		st, _ := b.ChannelStats("packed", "c")
		return st.Depth == 0 && st.InFlight == 0 && st.Requeues == 0
	})
}

// Packs that reach MaxMsgSize close and a new one starts, within one
// batch and across topics; every part arrives whole and in order although
// the batcher builds each pack in a buffer it reuses.
func TestFullPacksKeepEveryPartInOrder(t *testing.T) {
	b := startTestBroker(t, BrokerConfig{NoLookupd: true})
	cfg := b.BusConfig()
	cfg.MaxMsgSize = 2048
	bus := newTestBus(t, cfg)
	got := map[string]chan string{}
	want := map[string][]string{}
	for _, topic := range []string{"full-a", "full-b"} {
		got[topic] = collect(t, bus, topic, "c", SubscribeOptions{Unpack: true})
	}
	for i := 0; i < 600; i++ {
		topic := []string{"full-a", "full-b"}[i%2]
		s := fmt.Sprintf("%04d%s", i, strings.Repeat(string(rune('a'+i%26)), 296))
		want[topic] = append(want[topic], s)
		if err := bus.PackAsync(topic, append(PackBuffer(len(s)), s...)); err != nil {
			t.Fatal(err)
		}
	}
	bus.Flush(context.Background())
	for topic, w := range want {
		expect(t, got[topic], w...)
	}
	// 600 parts of 300 bytes fit at most 6 to a 2 KiB pack.
	if st := bus.Stats(); st.Published < 100 || st.Published >= 600 {
		t.Fatalf("600 parts went out as %d NSQ messages, want packs of at most 6", st.Published)
	}
}

func TestPackedPartErrorRequeuesThePack(t *testing.T) {
	b := startTestBroker(t, BrokerConfig{NoLookupd: true})
	cfg := b.BusConfig()
	cfg.Linger = time.Millisecond // the three parts queued together share a pack
	bus := newTestBus(t, cfg)
	var mu sync.Mutex
	seen := map[string]int{}
	_, err := bus.Subscribe("pk", "c", func(m *Message) error {
		mu.Lock()
		defer mu.Unlock()
		seen[string(m.Body)]++
		m.Finish() // no effect on a part
		if string(m.Body) == "b" && seen["b"] == 1 {
			return errors.New("fail once")
		}
		return nil
	}, SubscribeOptions{Unpack: true, RequeueDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"a", "b", "c"} {
		bus.PackAsync("pk", []byte(s))
	}
	// nsqd looks for due deferred messages only on the channels it knew at
	// its last refresh (every 5s), so a REQ on a new channel can wait that long.
	eventually(t, 15*time.Second, "pack redelivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen["a"] == 2 && seen["b"] == 2 && seen["c"] == 2
	})
	if st := bus.Stats(); st.Requeued != 1 {
		t.Fatalf("requeued %d, want 1", st.Requeued)
	}
}

// A consumer of two nsqd gets messages from both at once, not after go-nsq's
// 5s RDY retry (see Subscription.rebalance).
func TestConsumerOfTwoNSQDIsNotStarved(t *testing.T) {
	for i := 0; i < 6; i++ {
		b1 := startTestBroker(t, BrokerConfig{NoLookupd: true})
		b2 := startTestBroker(t, BrokerConfig{NoLookupd: true})
		sub := newTestBus(t, BusConfig{NSQD: []string{b1.TCPAddr(), b2.TCPAddr()}, NSQDHTTP: []string{b1.HTTPAddr(), b2.HTTPAddr()}})
		got := collect(t, sub, "two", "c", SubscribeOptions{})
		for _, b := range []*Broker{b1, b2} {
			pub := newTestBus(t, b.BusConfig())
			start := time.Now()
			if err := pub.Publish("two", []byte("x")); err != nil {
				t.Fatal(err)
			}
			select {
			case <-got:
			case <-time.After(2 * time.Second):
				t.Fatalf("run %d: message published on %s not delivered within 2s", i, b.TCPAddr())
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("run %d: delivery took %v", i, d)
			}
		}
	}
}

// A coalescing batcher wakes less often and takes more per wake-up; the
// bus must still count as busy, or coalescing switches itself off after a
// few batches (it did: the gap was measured per wake-up).
func TestArrivalsCountMessagesNotWakeUps(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var busy arrivals // 10 messages per 100µs wake-up: 100k/s
	var quiet arrivals
	for i := range 200 {
		busy.wake(t0.Add(time.Duration(i) * 100 * time.Microsecond))
		busy.took(10)
		quiet.wake(t0.Add(time.Duration(i) * time.Millisecond)) // 1k/s
		quiet.took(1)
	}
	if !busy.busy() {
		t.Errorf("10 messages per 100µs wake-up: gap %.1fµs, want busy (< %v)", busy.gap*1e6, busyGap)
	}
	if quiet.busy() {
		t.Errorf("1 message per 1ms: gap %.1fµs, want not busy", quiet.gap*1e6)
	}
	// A pause ends it: the first wake-up after 1s idle is not busy.
	busy.wake(t0.Add(time.Second + 20*time.Millisecond))
	if busy.busy() {
		t.Errorf("after a 1s pause: gap %.1fµs, want not busy", busy.gap*1e6)
	}
}

// Publishing moves to the next nsqd when the first fails, and back to the
// first once it has restarted (PreferRetry later), instead of staying on
// the fallback for good. A failed producer is replaced, not reconnected
// (go-nsq's reconnect races with its old connection's goroutine).
func TestPublishingReturnsToARestartedNSQD(t *testing.T) {
	dir := t.TempDir()
	b1 := startTestBroker(t, BrokerConfig{NoLookupd: true, DataDir: dir})
	b2 := startTestBroker(t, BrokerConfig{NoLookupd: true})
	addr1, http1 := b1.TCPAddr(), b1.HTTPAddr()
	pub := newTestBus(t, BusConfig{NSQD: []string{addr1, b2.TCPAddr()}, PreferRetry: 200 * time.Millisecond})
	count := func(b *Broker) uint64 {
		st, _ := b.ChannelStats("back", "c")
		return st.Messages
	}
	reaches := func(b *Broker, what string) {
		t.Helper()
		before := count(b)
		for deadline := time.Now().Add(10 * time.Second); count(b) == before; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: nothing published reached %s", what, b.TCPAddr())
			}
			if err := pub.Publish("back", []byte("x")); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
	}
	for _, b := range []*Broker{b1, b2} {
		if err := b.CreateChannel("back", "c"); err != nil {
			t.Fatal(err)
		}
	}
	reaches(b1, "both up")
	b1.Close()
	reaches(b2, "the first nsqd down")
	var again *Broker
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var err error
		again, err = StartBroker(BrokerConfig{NoLookupd: true, DataDir: dir, TCPAddr: addr1, HTTPAddr: http1, Logger: quietLogger(), Keys: testKeys})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restart the first nsqd on its address: %v", err)
		}
	}
	t.Cleanup(func() { again.Close() })
	if err := again.CreateChannel("back", "c"); err != nil {
		t.Fatal(err)
	}
	reaches(again, "the first nsqd restarted")
}
