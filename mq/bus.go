package mq

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nsqio/go-nsq"
	"golang.org/x/time/rate"
)

// busyGap: a batcher woken for messages more often than this (on
// average) is busy enough to coalesce.
const busyGap = 66 * time.Microsecond

// DefaultMaxMsgSize is nsqd's default largest message (1 MiB).
const DefaultMaxMsgSize = 1 << 20

// ErrClosed is returned by a Bus after Close.
var ErrClosed = errors.New("mq: bus is closed")

// BusConfig says which NSQ cluster a Bus talks to and how. The same code
// runs against the embedded broker (Broker.BusConfig) and an external
// cluster. Zero values are defaults.
type BusConfig struct {
	// NSQD lists nsqd TCP addresses. Publishing goes to the first reachable
	// one, in order (list the local nsqd first), and back to the first
	// PreferRetry after it failed. Consumers connect to all of them unless
	// Lookupd is set.
	NSQD []string
	// PreferRetry is how long after a failover publishing tries the first
	// nsqd again (it may have restarted). It must exceed the time consumers
	// take to find a restarted nsqd (LookupdPollInterval): messages
	// published there before they reconnect wait for them. Default the
	// larger of 30s and 6 × LookupdPollInterval.
	PreferRetry time.Duration
	// NSQDHTTP lists nsqd HTTP addresses, used to create topics and channels
	// before consumers connect (EnsureChannel). nsqd registered with Lookupd
	// are found there as well.
	NSQDHTTP []string
	// Lookupd lists nsqlookupd HTTP addresses. When set, consumers discover
	// the nsqd that hold a topic through them.
	Lookupd []string
	// Local, when set, is an embedded broker this process runs: messages
	// are published into its nsqd in-process (as nsqd's own HTTP /pub
	// does), skipping a TCP round trip and go-nsq's producer goroutines per
	// publish. Consumers still connect over TCP. Broker.BusConfig sets it;
	// set it to nil to publish over TCP.
	Local *Broker
	// LookupdPollInterval is how often consumers ask nsqlookupd for new
	// nsqd. Default 5s.
	LookupdPollInterval time.Duration

	// MaxMsgSize is the largest message body accepted for publishing; larger
	// ones are refused before they reach nsqd. It must not exceed nsqd's own
	// limit. Default 1 MiB.
	MaxMsgSize int
	// BatchSize caps the messages in one batched (MPUB) publish. Default 256.
	BatchSize int
	// BatchBytes caps the bytes in one batched publish; keep it under nsqd's
	// MaxBodySize (5 MiB by default). Default 4 MiB.
	BatchBytes int
	// Linger is how long the async batcher may wait for more messages before
	// publishing a batch that is not full; at most 1ms. Default 0: a batch
	// leaves as soon as the previous one is acknowledged, so batches grow with
	// load and an idle bus adds no delay.
	Linger time.Duration
	// Coalesce makes a busy bus send fewer, fuller batches and packs:
	// while messages arrive more than about 15,000 a second (a smoothed gap
	// under 66µs), the batcher waits until Coalesce has passed since its
	// previous batch before sending the next. A quiet bus, or a
	// request/reply ping-pong, still sends each message at once. Per NSQ message, nsqd writes to the consumer and the
	// consumer answers with a FIN: fuller packs spend those syscalls once
	// for many messages. Default 100µs, at most 1ms; negative disables.
	Coalesce time.Duration
	// QueueSize bounds the async publish queue; PublishAsync blocks while it
	// is full. Default 65536.
	QueueSize int
	// PublishTimeout is how long a failing async batch is retried (with
	// backoff, across nsqd) before it is dropped and counted. Default 10s.
	PublishTimeout time.Duration

	// TLS, when set, makes every connection to nsqd negotiate TLS with this
	// configuration (nsqd started with --tls-cert and --tls-key): RootCAs
	// verify nsqd's certificate, whose names must include the host of the
	// NSQD address; Certificates are presented to an nsqd with
	// --tls-client-auth-policy. Only the TCP protocol is encrypted: the
	// HTTP calls to NSQDHTTP and Lookupd stay plain (see docs/mq.md).
	TLS *tls.Config
	// AuthSecret is sent to nsqd's AUTH command when nsqd asks for it
	// (nsqd started with --auth-http-address, which checks it).
	AuthSecret string

	// Keys signs every message this Bus publishes and checks every message
	// it receives (HMAC-SHA256; see docs/mq.md). Required: every process of
	// a cluster holds the same keys. Broker.BusConfig fills it in with the
	// embedded broker's keyring.
	Keys *Keyring

	// Logger receives the Bus's and go-nsq's logs. Default slog.Default().
	Logger *slog.Logger
	// LogLevel filters go-nsq's own logs. Default slog.LevelWarn.
	LogLevel *slog.Level
}

func (c *BusConfig) setDefaults() error {
	if len(c.NSQD) == 0 {
		return errors.New("mq: BusConfig.NSQD needs at least one nsqd TCP address")
	}
	if c.Keys == nil {
		return errors.New("mq: BusConfig.Keys is required: every message is signed with the cluster key (see ParseKeyring, GenerateKeyring)")
	}
	if c.LookupdPollInterval <= 0 {
		c.LookupdPollInterval = 5 * time.Second
	}
	if c.MaxMsgSize <= 0 {
		c.MaxMsgSize = DefaultMaxMsgSize
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 256
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = 4 << 20
	}
	if c.BatchBytes < c.MaxMsgSize {
		c.BatchBytes = c.MaxMsgSize
	}
	if c.Linger < 0 || c.Linger > time.Millisecond {
		return fmt.Errorf("mq: BusConfig.Linger %v is outside [0, 1ms]", c.Linger)
	}
	if c.Coalesce == 0 {
		c.Coalesce = 100 * time.Microsecond
	}
	if c.Coalesce > time.Millisecond {
		return fmt.Errorf("mq: BusConfig.Coalesce %v is over 1ms", c.Coalesce)
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 65536
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 10 * time.Second
	}
	if c.PreferRetry <= 0 {
		c.PreferRetry = max(30*time.Second, 6*c.LookupdPollInterval)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.LogLevel == nil {
		l := slog.LevelWarn
		c.LogLevel = &l
	}
	return nil
}

// BusStats are cumulative counters of a Bus.
type BusStats struct {
	Published     uint64 // messages acknowledged by nsqd
	Batches       uint64 // publish commands (PUB or MPUB) acknowledged
	PublishErrors uint64 // failed publish attempts (each retry counts)
	Dropped       uint64 // async messages given up after PublishTimeout or Close
	Queued        int    // async messages waiting to be published now
	Received      uint64 // messages delivered to subscription handlers
	Requeued      uint64 // messages a handler asked to have redelivered
	GivenUp       uint64 // messages finished unprocessed after MaxAttempts
	// Rejected counts messages dropped before any handler, by reason
	// (RejectUnsigned, RejectBadSignature, ...).
	Rejected map[string]uint64
}

// Bus publishes to and consumes from NSQ. It is safe for concurrent use.
type Bus struct {
	cfg BusConfig
	log *slog.Logger
	// producers, one per NSQD address; a producer whose publish failed is
	// replaced by a fresh one (go-nsq's Producer is not safe to reconnect
	// once its connection broke: nsqio/go-nsq#345).
	producers []atomic.Pointer[nsq.Producer]
	// direct: a second set, for Publish and MultiPublish, on their own
	// connections, so a heartbeat never waits behind the batcher's queued
	// traffic on one nsqd connection.
	direct    []atomic.Pointer[nsq.Producer]
	next      atomic.Int32 // index of the producer that last worked
	leftFirst atomic.Int64 // unix nanoseconds: when publishing last moved off the first nsqd

	mu     sync.RWMutex // held for reading while enqueueing; Close takes it to close queue
	closed bool
	queue  chan asyncItem
	done   chan struct{} // closed when the batcher exits

	subsMu sync.Mutex
	subs   map[*Subscription]struct{}

	published, batches, publishErrors, dropped atomic.Uint64
	received, requeued, givenUp                atomic.Uint64
	rejected                                   [len(rejectReasons)]atomic.Uint64

	sign      *signer
	rejectLog rate.Sometimes // the counts are in Stats; logs show a sample
}

var rejectReasons = [...]string{RejectUnsigned, RejectUnknownKey, RejectBadSignature, RejectExpired, RejectReplayed}

type asyncItem struct {
	topic string
	body  []byte
	pack  bool          // may share one NSQ message with neighbours (PackAsync)
	flush chan struct{} // set on Flush markers only
}

// NewBus connects lazily: no connection is made until the first publish or
// subscription, so a Bus can be created before the cluster is up.
func NewBus(cfg BusConfig) (*Bus, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	b := &Bus{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "mq"),
		queue: make(chan asyncItem, cfg.QueueSize),
		done:  make(chan struct{}),
		subs:  make(map[*Subscription]struct{}),
		sign:  newSigner(cfg.Keys),

		rejectLog: rate.Sometimes{Interval: time.Second},
	}
	b.producers = make([]atomic.Pointer[nsq.Producer], len(cfg.NSQD))
	b.direct = make([]atomic.Pointer[nsq.Producer], len(cfg.NSQD))
	for _, set := range [][]atomic.Pointer[nsq.Producer]{b.producers, b.direct} {
		for i, addr := range cfg.NSQD {
			p, err := b.newProducer(addr) // connects on first use
			if err != nil {
				b.stopProducers()
				return nil, fmt.Errorf("mq: producer for nsqd %s: %w", addr, err)
			}
			set[i].Store(p)
		}
	}
	go b.batcher()
	return b, nil
}

func (b *Bus) newProducer(addr string) (*nsq.Producer, error) {
	p, err := nsq.NewProducer(addr, b.nsqConfig())
	if err != nil {
		return nil, err
	}
	p.SetLogger(slogWriter{log: b.log.With("nsqd", addr)}, goNSQLevel(*b.cfg.LogLevel))
	return p, nil
}

// renewProducer replaces producer idx, whose publish failed, with a fresh
// one for the next attempt.
func (b *Bus) renewProducer(set []atomic.Pointer[nsq.Producer], idx int, failed *nsq.Producer) {
	p, err := b.newProducer(b.cfg.NSQD[idx])
	if err != nil {
		return // the configuration did not change since NewBus: cannot happen
	}
	if set[idx].CompareAndSwap(failed, p) {
		go failed.Stop()
	} else {
		p.Stop()
	}
}

// Config returns the configuration in use, defaults filled in.
func (b *Bus) Config() BusConfig { return b.cfg }

func (b *Bus) nsqConfig() *nsq.Config {
	c := nsq.NewConfig()
	c.LookupdPollInterval = b.cfg.LookupdPollInterval
	c.WriteTimeout = 5 * time.Second
	if b.cfg.TLS != nil {
		c.TlsV1, c.TlsConfig = true, b.cfg.TLS
	}
	c.AuthSecret = b.cfg.AuthSecret
	return c
}

// Stats returns the Bus's counters.
func (b *Bus) Stats() BusStats {
	return BusStats{
		Published: b.published.Load(), Batches: b.batches.Load(),
		PublishErrors: b.publishErrors.Load(), Dropped: b.dropped.Load(),
		Queued: len(b.queue), Received: b.received.Load(),
		Requeued: b.requeued.Load(), GivenUp: b.givenUp.Load(),
		Rejected: b.rejectedStats(),
	}
}

func (b *Bus) rejectedStats() map[string]uint64 {
	m := make(map[string]uint64, len(rejectReasons))
	for i, r := range rejectReasons {
		m[r] = b.rejected[i].Load()
	}
	return m
}

// reject counts and logs (rate limited) a message dropped unread.
func (b *Bus) reject(topic, channel string, m *nsq.Message, err error) {
	var re *rejectError
	if errors.As(err, &re) {
		for i, r := range rejectReasons {
			if r == re.reason {
				b.rejected[i].Add(1)
			}
		}
	}
	b.rejectLog.Do(func() {
		b.log.Warn("mq message dropped (one in a second is logged; citadel_mq_rejected_total counts them)", "topic", topic,
			"channel", channel, "msg_id", string(m.ID[:]), "bytes", len(m.Body), "err", err)
	})
}

// CheckPublish validates a publish without sending it: the topic name and
// the body size. Callers that build bodies can check early.
func (b *Bus) CheckPublish(topic string, body []byte) error {
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	if len(body)+SealSize > b.cfg.MaxMsgSize {
		return &TooLargeError{Topic: topic, Size: len(body), Max: b.cfg.MaxMsgSize - SealSize}
	}
	return nil
}

// TooLargeError reports a message refused before publishing for its size.
type TooLargeError struct {
	Topic string
	Size  int
	Max   int
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("mq: message of %d bytes for topic %q exceeds the %d-byte limit (BusConfig.MaxMsgSize and nsqd --max-msg-size, less the signature and framing)",
		e.Size, e.Topic, e.Max)
}

// Publish sends one message and waits for nsqd to acknowledge it.
func (b *Bus) Publish(topic string, body []byte) error {
	if err := b.CheckPublish(topic, body); err != nil {
		return err
	}
	return b.send(topic, [][]byte{b.sign.seal(topic, body)})
}

// MultiPublish sends messages to one topic in a single MPUB command and waits
// for nsqd to acknowledge them; they are queued in order.
func (b *Bus) MultiPublish(topic string, bodies [][]byte) error {
	if len(bodies) == 0 {
		return nil
	}
	size := 0
	for _, body := range bodies {
		if err := b.CheckPublish(topic, body); err != nil {
			return err
		}
		size += len(body) + SealSize + 4
	}
	if size > b.cfg.BatchBytes {
		return fmt.Errorf("mq: batch of %d messages (%d bytes) for topic %q exceeds BusConfig.BatchBytes (%d)",
			len(bodies), size, topic, b.cfg.BatchBytes)
	}
	sealed := make([][]byte, len(bodies))
	for i, body := range bodies {
		sealed[i] = b.sign.seal(topic, body)
	}
	return b.send(topic, sealed)
}

// send tries each nsqd once, starting with the one that last worked.
func (b *Bus) send(topic string, bodies [][]byte) error {
	b.mu.RLock()
	closed := b.closed
	b.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	return b.sendOnce(b.direct, topic, bodies)
}

func (b *Bus) sendOnce(set []atomic.Pointer[nsq.Producer], topic string, bodies [][]byte) error {
	if b.cfg.Local != nil {
		if err := b.cfg.Local.put(topic, bodies); err != nil {
			b.publishErrors.Add(1)
			return fmt.Errorf("mq: publish %d message(s) to topic %q in-process: %w", len(bodies), topic, err)
		}
		b.published.Add(uint64(len(bodies)))
		b.batches.Add(1)
		return nil
	}
	var errs []error
	start := int(b.next.Load())
	if start != 0 && time.Since(time.Unix(0, b.leftFirst.Load())) >= b.cfg.PreferRetry {
		start = 0 // the first nsqd may be back
	}
	for i := range set {
		idx := (start + i) % len(set)
		p := set[idx].Load()
		var err error
		if len(bodies) == 1 {
			err = p.Publish(topic, bodies[0])
		} else {
			err = p.MultiPublish(topic, bodies)
		}
		if err == nil {
			prev := int(b.next.Swap(int32(idx)))
			if idx != 0 && (prev == 0 || start == 0) {
				b.leftFirst.Store(time.Now().UnixNano()) // moved off the first nsqd, or it failed again
			}
			if prev != idx {
				b.log.Info("publishing to another nsqd", "nsqd", b.cfg.NSQD[idx], "previous", b.cfg.NSQD[prev])
			}
			b.published.Add(uint64(len(bodies)))
			b.batches.Add(1)
			return nil
		}
		b.publishErrors.Add(1)
		b.renewProducer(set, idx, p)
		errs = append(errs, fmt.Errorf("nsqd %s: %w", b.cfg.NSQD[idx], err))
	}
	return fmt.Errorf("mq: publish %d message(s) to topic %q: %w", len(bodies), topic, errors.Join(errs...))
}

// PublishAsync queues a message for the batcher and returns at once; it
// blocks only while the queue is full. Validation errors (bad topic, too
// large) are returned immediately. Transport failures are retried for
// PublishTimeout, then logged and counted in Stats().Dropped. Messages for
// one topic are published in the order they were queued.
func (b *Bus) PublishAsync(topic string, body []byte) error {
	if err := b.CheckPublish(topic, body); err != nil {
		return err
	}
	return b.enqueue(asyncItem{topic: topic, body: body})
}

// PackAsync is PublishAsync for small messages that may travel together:
// messages for the same topic that are queued at the same moment are packed
// into one NSQ message (up to MaxMsgSize), so nsqd handles, writes and
// acknowledges them once. Order is kept. Under load this multiplies
// throughput; an idle bus still sends each message at once. Consumers must
// subscribe with SubscribeOptions.Unpack.
//
// The bus takes body over: its bytes are copied into the pack and the
// buffer is reused (see PackBuffer), so the caller must not touch body
// after the call.
func (b *Bus) PackAsync(topic string, body []byte) error {
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	if len(body)+packOverhead+SealSize > b.cfg.MaxMsgSize {
		return &TooLargeError{Topic: topic, Size: len(body), Max: b.cfg.MaxMsgSize - SealSize - packOverhead}
	}
	return b.enqueue(asyncItem{topic: topic, body: body, pack: true})
}

func (b *Bus) enqueue(it asyncItem) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	b.queue <- it
	return nil
}

// Flush waits until every message queued by PublishAsync before the call has
// been published (or dropped).
func (b *Bus) Flush(ctx context.Context) error {
	marker := make(chan struct{})
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return ErrClosed
	}
	select {
	case b.queue <- asyncItem{flush: marker}:
	case <-ctx.Done():
		b.mu.RUnlock()
		return ctx.Err()
	}
	b.mu.RUnlock()
	select {
	case <-marker:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// batcher drains the async queue into MPUB batches: it takes what is
// queued (up to BatchSize messages or BatchBytes), waits at most Linger for
// more, publishes one command per topic, and repeats.
func (b *Bus) batcher() {
	defer close(b.done)
	var (
		order   []string
		batches = make(map[string][][]byte)
		// A topic's pack that can still grow (its last body) is built in
		// packing[topic], a buffer reused from batch to batch, and copied
		// out at its final size when it closes: growing each pack by
		// appending would allocate about twice its bytes. Empty: no open
		// pack.
		packing = make(map[string][]byte)
		markers []chan struct{}
		count   int // NSQ messages in the batch
		items   int // messages queued by callers in the batch (packed ones each count)
		size    int
	)
	closePack := func(topic string, bodies [][]byte) {
		pk := packing[topic]
		if len(pk) == 0 {
			return
		}
		b.sign.sealInPlace(topic, pk)
		bodies[len(bodies)-1] = bytes.Clone(pk)
		if cap(pk) > maxReusedPack {
			pk = nil
		}
		packing[topic] = pk[:0]
	}
	add := func(it asyncItem) {
		if it.flush != nil {
			markers = append(markers, it.flush)
			return
		}
		items++
		bodies, ok := batches[it.topic]
		if !ok {
			order = append(order, it.topic)
		}
		if it.pack {
			defer recyclePart(it.body) // copied into the pack below
			if pk := packing[it.topic]; len(pk) > 0 && len(pk)+packedLen(it.body) <= b.cfg.MaxMsgSize {
				packing[it.topic] = appendPacked(pk, it.body)
				size += len(packing[it.topic]) - len(pk)
				return
			}
			closePack(it.topic, bodies)
			pk := appendPacked(append(append(packing[it.topic][:0], unsealed[:]...), packMagic...), it.body)
			packing[it.topic] = pk
			bodies = append(bodies, nil) // filled in by closePack
			size += len(pk) + 4
		} else {
			closePack(it.topic, bodies)
			sealed := b.sign.seal(it.topic, it.body)
			bodies = append(bodies, sealed)
			size += len(sealed) + 4
		}
		batches[it.topic] = bodies
		count++
	}
	var (
		linger *time.Timer
		last   time.Time // when the previous batch left
		rate   arrivals
	)
	for {
		it, ok := <-b.queue
		if !ok {
			return
		}
		add(it)
		wait := time.Duration(0)
		if it.flush == nil {
			now := time.Now()
			rate.wake(now)
			wait = b.cfg.Linger
			if b.cfg.Coalesce > 0 && rate.busy() {
				wait = max(wait, b.cfg.Coalesce-now.Sub(last))
			}
		}
		if wait > 0 {
			linger = time.NewTimer(wait)
		}
	fill:
		for count < b.cfg.BatchSize && size < b.cfg.BatchBytes-b.cfg.MaxMsgSize && len(markers) == 0 {
			select {
			case it, ok = <-b.queue:
				if !ok {
					break fill
				}
				add(it)
				continue
			default:
			}
			if linger == nil {
				break
			}
			select {
			case it, ok = <-b.queue:
				if !ok {
					break fill
				}
				add(it)
			case <-linger.C:
				linger = nil
				break fill
			}
		}
		if linger != nil {
			linger.Stop()
			linger = nil
		}
		for _, topic := range order {
			closePack(topic, batches[topic])
			b.publishRetrying(topic, batches[topic])
			delete(batches, topic)
		}
		if len(order) > 0 {
			last = time.Now()
		}
		rate.took(items)
		order, count, items, size = order[:0], 0, 0, 0
		for _, m := range markers {
			close(m)
		}
		markers = markers[:0]
		if !ok {
			return
		}
	}
}

// arrivals estimates how fast messages are queued from the batcher's
// wake-ups and the messages each batch took. A coalescing batcher wakes
// less often but takes more each time, so the gap per message, not per
// wake-up, says whether the bus is busy (measured per wake-up, coalescing
// would switch itself off).
type arrivals struct {
	last  time.Time // the previous wake-up for a message
	taken int       // messages taken since last
	gap   float64   // smoothed seconds between queued messages
}

// wake records that the batcher woke at now for a message.
func (a *arrivals) wake(now time.Time) {
	if !a.last.IsZero() && a.taken > 0 {
		a.gap += 0.1 * (now.Sub(a.last).Seconds()/float64(a.taken) - a.gap)
	}
	a.last, a.taken = now, 0
}

// took records that a batch took n messages.
func (a *arrivals) took(n int) { a.taken += n }

// busy reports whether messages arrive faster than one per busyGap.
func (a *arrivals) busy() bool { return a.gap > 0 && a.gap < busyGap.Seconds() }

// publishRetrying publishes one async batch, retrying with backoff across
// nsqd until PublishTimeout; then the batch is dropped and counted.
func (b *Bus) publishRetrying(topic string, bodies [][]byte) {
	deadline := time.Now().Add(b.cfg.PublishTimeout)
	backoff := 10 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := b.sendOnce(b.producers, topic, bodies)
		if err == nil {
			if attempt > 1 {
				b.log.Info("mq publish recovered", "topic", topic, "messages", len(bodies), "attempts", attempt)
			}
			return
		}
		if time.Now().Add(backoff).After(deadline) {
			b.dropped.Add(uint64(len(bodies)))
			b.log.Error("mq publish failed; messages dropped", "topic", topic, "messages", len(bodies),
				"attempts", attempt, "err", err)
			return
		}
		if attempt == 1 {
			b.log.Warn("mq publish failed; retrying", "topic", topic, "messages", len(bodies), "err", err)
		}
		time.Sleep(backoff)
		backoff = min(backoff*2, time.Second)
	}
}

// Close publishes what is queued, stops all subscriptions (waiting for
// their handlers) and closes the connections to nsqd.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.queue)
	b.mu.Unlock()
	<-b.done

	b.subsMu.Lock()
	subs := make([]*Subscription, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.subsMu.Unlock()
	for _, s := range subs {
		s.Stop()
	}
	b.stopProducers()
	return nil
}

func (b *Bus) stopProducers() {
	for _, set := range [][]atomic.Pointer[nsq.Producer]{b.producers, b.direct} {
		for i := range set {
			if p := set[i].Load(); p != nil {
				p.Stop()
			}
		}
	}
}
