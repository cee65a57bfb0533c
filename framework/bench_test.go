package framework

import (
	"context"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citadel-go/citadel/mq"
	"github.com/nsqio/go-nsq"
)

// Each benchmark measures Citadel and its baseline in the same run and
// reports the ratio, so noise on the shared machine affects both alike.

// BenchmarkLocalSend: actor Send throughput vs a buffered Go channel
// hand-off of the same messages to one goroutine (target: ratio >= 0.25).
func BenchmarkLocalSend(b *testing.B) {
	const buf = 1024
	msg := &Seq{N: 1}

	ch := make(chan any, buf)
	done := make(chan struct{})
	go func() {
		for i := 0; i < b.N; i++ {
			<-ch
		}
		close(done)
	}()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		ch <- msg
	}
	<-done
	chanDur := time.Since(start)

	n := newNode(b, nil, "bench", "local", nil)
	var count atomic.Int64
	actorDone := make(chan struct{})
	target := int64(b.N)
	a, err := n.Spawn("sink", func() Actor {
		return ActorFunc(func(c *Context) {
			if _, ok := c.Message().(*Seq); ok && count.Add(1) == target {
				close(actorDone)
			}
		})
	}, SpawnOptions{MailboxSize: buf, Overflow: OverflowBlock})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start = time.Now()
	for i := 0; i < b.N; i++ {
		if err := n.Send(a, msg); err != nil {
			b.Fatal(err)
		}
	}
	<-actorDone
	actorDur := time.Since(start)
	b.StopTimer()
	reportRatio(b, "chan", chanDur, actorDur)
}

func reportRatio(b *testing.B, baseline string, baseDur, oursDur time.Duration) {
	b.ReportMetric(float64(baseDur.Nanoseconds())/float64(b.N), baseline+"-ns/msg")
	b.ReportMetric(float64(oursDur.Nanoseconds())/float64(b.N), "citadel-ns/msg")
	b.ReportMetric(float64(baseDur)/float64(oursDur), "ratio-vs-"+baseline)
}

// benchBody is a realistic small envelope for the raw baseline: the same
// size as what Citadel publishes for &Seq{From: "bench", N: i}.
func benchBody(b *testing.B) []byte {
	reg := testRegistry(b)
	_, payload, _ := reg.Marshal(&Seq{From: "bench", N: 123456})
	w := wireEnvelope{Kind: kindSend, From: Addr{"gate", "src", ""}, To: Addr{"game", "dst", "sink"}, Epoch: 1 << 60,
		Seq: 123456, Sent: time.Now().UnixNano(), MsgID: 10003, Payload: payload}
	return appendEnvelope(nil, &w)
}

func rawConsumerConfig() *nsq.Config {
	c := nsq.NewConfig()
	c.MaxInFlight = 256
	c.OutputBufferSize = -1
	c.OutputBufferTimeout = -1
	return c
}

// counter signals when a running count reaches a target.
type counter struct {
	n, target atomic.Int64
	hit       chan struct{}
}

func newCounter() *counter { return &counter{hit: make(chan struct{}, 1)} }

func (c *counter) add() {
	if c.n.Add(1) == c.target.Load() {
		c.hit <- struct{}{}
	}
}

// expect sets the next target (count so far + n) and returns a wait func.
func (c *counter) expect(n int) func(b *testing.B) {
	c.target.Store(c.n.Load() + int64(n))
	return func(b *testing.B) {
		select {
		case <-c.hit:
		case <-time.After(time.Minute):
			b.Fatalf("delivered %d, want %d", c.n.Load(), c.target.Load())
		}
	}
}

// BenchmarkRemoteSend: Send throughput from one node to an actor on another
// through the embedded NSQ vs raw go-nsq MPUB (batches of 256, Citadel's
// default BatchSize) plus a consumer with the same settings (target: ratio
// >= 0.8). Baseline and Citadel run in alternating rounds so that drift in
// the shared machine's speed hits both.
func BenchmarkRemoteSend(b *testing.B) {
	broker := startBroker(b, mq.BrokerConfig{})
	const rounds = 4

	// Baseline: raw go-nsq.
	body := benchBody(b)
	raw := newCounter()
	consumer, err := nsq.NewConsumer("raw", "c", rawConsumerConfig())
	if err != nil {
		b.Fatal(err)
	}
	consumer.SetLoggerLevel(nsq.LogLevelError)
	consumer.AddHandler(nsq.HandlerFunc(func(m *nsq.Message) error { raw.add(); return nil }))
	if err := broker.CreateChannel("raw", "c"); err != nil {
		b.Fatal(err)
	}
	if err := consumer.ConnectToNSQD(broker.TCPAddr()); err != nil {
		b.Fatal(err)
	}
	defer func() { consumer.Stop(); <-consumer.StopChan }()
	producer, _ := nsq.NewProducer(broker.TCPAddr(), nsq.NewConfig())
	producer.SetLoggerLevel(nsq.LogLevelError)
	defer producer.Stop()
	batch := make([][]byte, 0, 256)
	rawRound := func(n int) time.Duration {
		wait := raw.expect(n)
		start := time.Now()
		for i := 0; i < n; i++ {
			batch = append(batch, body)
			if len(batch) == cap(batch) || i == n-1 {
				if err := producer.MultiPublish("raw", batch); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		wait(b)
		return time.Since(start)
	}

	// Citadel: node to node.
	src := newNode(b, broker, "gate", "src", nil)
	dst := newNode(b, broker, "game", "dst", nil)
	ours := newCounter()
	sink, err := dst.Spawn("sink", func() Actor {
		return ActorFunc(func(c *Context) {
			if _, ok := c.Message().(*Seq); ok {
				ours.add()
			}
		})
	}, SpawnOptions{MailboxSize: 65536, Overflow: OverflowBlock})
	if err != nil {
		b.Fatal(err)
	}
	oursRound := func(n int) time.Duration {
		wait := ours.expect(n)
		start := time.Now()
		for i := 0; i < n; i++ {
			if err := src.Send(sink, &Seq{From: "bench", N: i}); err != nil {
				b.Fatal(err)
			}
		}
		wait(b)
		return time.Since(start)
	}

	var rawDur, oursDur time.Duration
	b.ResetTimer()
	for r := 0; r < rounds; r++ {
		n := b.N / rounds
		if r == rounds-1 {
			n = b.N - n*(rounds-1)
		}
		if n == 0 {
			continue
		}
		rawDur += rawRound(n)
		oursDur += oursRound(n)
	}
	b.StopTimer()
	reportRatio(b, "raw-nsq", rawDur, oursDur)
	st := dst.Stats()
	if st.GapsSkipped != 0 || st.Duplicates != 0 {
		b.Fatalf("unexpected stream repairs: %+v", st)
	}
}

// BenchmarkRemoteCall: round-trip latency of a Call to an actor on another
// node vs a raw go-nsq ping-pong (publish, consume, publish back, consume),
// same broker and consumer settings, alternating in blocks of 100 (target:
// p50 <= 150µs).
func BenchmarkRemoteCall(b *testing.B) {
	broker := startBroker(b, mq.BrokerConfig{})
	body := benchBody(b)

	// Baseline: raw ping-pong over two topics.
	pong := make(chan struct{}, 1)
	producer, _ := nsq.NewProducer(broker.TCPAddr(), nsq.NewConfig())
	producer.SetLoggerLevel(nsq.LogLevelError)
	defer producer.Stop()
	for topic, h := range map[string]nsq.HandlerFunc{
		"ping": func(m *nsq.Message) error { return producer.Publish("pong", m.Body) },
		"pong": func(m *nsq.Message) error { pong <- struct{}{}; return nil },
	} {
		c, _ := nsq.NewConsumer(topic, "c", rawConsumerConfig())
		c.SetLoggerLevel(nsq.LogLevelError)
		c.AddHandler(h)
		broker.CreateChannel(topic, "c")
		if err := c.ConnectToNSQD(broker.TCPAddr()); err != nil {
			b.Fatal(err)
		}
		defer func() { c.Stop(); <-c.StopChan }()
	}
	rawCall := func() {
		if err := producer.Publish("ping", body); err != nil {
			b.Fatal(err)
		}
		<-pong
	}

	src := newNode(b, broker, "gate", "src", nil)
	dst := newNode(b, broker, "game", "dst", nil)
	spawnEcho(b, dst, "echo")
	echo := dst.ActorAddr("echo")
	ctx := context.Background()
	oursCall := func() {
		if _, err := src.Call(ctx, echo, &Ping{N: 1}); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; i < 50; i++ { // warm up connections and streams
		rawCall()
		oursCall()
	}

	raw := make([]time.Duration, 0, b.N)
	ours := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for len(ours) < b.N {
		for i := 0; i < 100 && len(raw) < b.N; i++ {
			t0 := time.Now()
			rawCall()
			raw = append(raw, time.Since(t0))
		}
		for i := 0; i < 100 && len(ours) < b.N; i++ {
			t0 := time.Now()
			oursCall()
			ours = append(ours, time.Since(t0))
		}
	}
	b.StopTimer()
	rp50, rp99 := percentiles(raw)
	op50, op99 := percentiles(ours)
	b.ReportMetric(float64(rp50.Microseconds()), "raw-p50-µs")
	b.ReportMetric(float64(rp99.Microseconds()), "raw-p99-µs")
	b.ReportMetric(float64(op50.Microseconds()), "call-p50-µs")
	b.ReportMetric(float64(op99.Microseconds()), "call-p99-µs")
	b.ReportMetric(float64(op50)/float64(rp50), "p50-vs-raw")
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2], s[len(s)*99/100]
}
