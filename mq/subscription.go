package mq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nsqio/go-nsq"
)

// Handler handles one message. Returning nil finishes it; returning an error
// requeues it with a delay that grows with its attempts, until MaxAttempts.
type Handler func(*Message) error

// SubscribeOptions tune a subscription. Zero values are defaults.
type SubscribeOptions struct {
	// MaxInFlight is how many messages nsqd may deliver before they are
	// answered, across all nsqd. Default 256.
	MaxInFlight int
	// Concurrency is the number of handler goroutines. Default 1: messages
	// are handled one at a time in the order they arrive.
	Concurrency int
	// MaxAttempts is how many deliveries a message gets before it is
	// finished unprocessed, logged and counted (Stats().GivenUp). Default 5.
	MaxAttempts uint16
	// RequeueDelay is the base delay for a message whose handler failed;
	// the delay is RequeueDelay × attempts. Default 100ms.
	RequeueDelay time.Duration
	// MsgTimeout overrides nsqd's redelivery timeout for this consumer
	// (at least 1s). Default: nsqd's.
	MsgTimeout time.Duration
	// Buffered lets nsqd buffer writes to this consumer (up to 16 KiB or
	// 250ms), which saves syscalls for bulk consumers but adds up to 250 ms
	// to each message when more than one is in flight. Default false:
	// every message is written to the socket as soon as it is sent.
	Buffered bool
	// MaxAge drops messages published longer ago than this (by the
	// publisher's clock, from the signed seal), counted as expired. It bounds
	// how long a captured message can be replayed. Default 0: no limit.
	MaxAge time.Duration
	// Unique drops a message whose publisher and counter this subscription
	// has handled already (a replay, or a redelivery of a handled message),
	// counted as replayed. Meant for fan-out topics with Concurrency 1 and a
	// MaxAge (heartbeats, broadcasts): a message that arrives more than a
	// few thousand messages late counts as a replay too.
	Unique bool
	// Unpack splits messages published with PackAsync and calls the
	// handler once per part, in order. A packed message is answered as a
	// whole: finished when every part's handler returned nil, requeued
	// (all of it) if one returned an error; Finish and Requeue on a part
	// do nothing.
	Unpack bool
}

// Subscription is a running consumer of one topic and channel.
type Subscription struct {
	bus         *Bus
	consumer    *nsq.Consumer
	topic       string
	channel     string
	maxInFlight int
	stopping    atomic.Bool
	done        chan struct{}
}

// Subscribe starts consuming topic on channel. For a durable channel the
// topic and channel are created on every known nsqd first, so nothing
// published from now on is missed. With Lookupd configured, Subscribe also
// waits (briefly) until nsqlookupd knows an nsqd with the topic.
func (b *Bus) Subscribe(topic, channel string, h Handler, opts SubscribeOptions) (*Subscription, error) {
	if err := ValidateTopic(topic); err != nil {
		return nil, err
	}
	if err := ValidateChannel(channel); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("mq: Subscribe needs a handler")
	}
	b.mu.RLock()
	closed := b.closed
	b.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 256
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = 5
	}
	if opts.RequeueDelay <= 0 {
		opts.RequeueDelay = 100 * time.Millisecond
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.EnsureChannel(ctx, topic, channel); err != nil {
		return nil, err
	}

	c := b.nsqConfig()
	c.MaxInFlight = opts.MaxInFlight
	c.MaxAttempts = opts.MaxAttempts
	c.DefaultRequeueDelay = opts.RequeueDelay
	if opts.MsgTimeout > 0 {
		c.MsgTimeout = opts.MsgTimeout
	}
	if !opts.Buffered {
		// -1 tells nsqd to write each message straight to the socket. (A
		// timeout of -1 alone is not enough: with the buffer kept and its
		// flush ticker disabled, nsqd flushes only when the consumer's RDY
		// count is used up or a heartbeat is due.)
		c.OutputBufferSize = -1
		c.OutputBufferTimeout = -1
	}
	consumer, err := nsq.NewConsumer(topic, channel, c)
	if err != nil {
		return nil, fmt.Errorf("mq: consumer for %s/%s: %w", topic, channel, err)
	}
	log := b.log.With("topic", topic, "channel", channel)
	s := &Subscription{bus: b, consumer: consumer, topic: topic, channel: channel, maxInFlight: opts.MaxInFlight,
		done: make(chan struct{})}
	consumer.SetLogger(slogWriter{log: log, quiet: &s.stopping}, goNSQLevel(*b.cfg.LogLevel))
	consumer.AddConcurrentHandlers(&handlerAdapter{bus: b, h: h, opts: opts, sub: s}, opts.Concurrency)

	if len(b.cfg.Lookupd) > 0 {
		b.waitForLookupd(ctx, topic)
		err = consumer.ConnectToNSQLookupds(b.cfg.Lookupd)
	} else {
		err = consumer.ConnectToNSQDs(b.cfg.NSQD)
	}
	if err != nil {
		consumer.Stop()
		<-consumer.StopChan
		return nil, fmt.Errorf("mq: connect consumer for %s/%s: %w", topic, channel, err)
	}
	go s.rebalance()
	b.subsMu.Lock()
	b.subs[s] = struct{}{}
	b.subsMu.Unlock()
	return s, nil
}

// Topic returns the subscribed topic.
func (s *Subscription) Topic() string { return s.topic }

// Channel returns the subscribed channel.
func (s *Subscription) Channel() string { return s.channel }

// Stop stops receiving: nsqd is told to send nothing more, messages already
// being handled finish, and messages delivered but not yet handled go back
// to nsqd. It waits for that (at most 30s, go-nsq's limit).
func (s *Subscription) Stop() {
	if !s.stopping.Swap(true) {
		close(s.done)
	}
	s.consumer.Stop()
	<-s.consumer.StopChan
	s.bus.subsMu.Lock()
	delete(s.bus.subs, s)
	s.bus.subsMu.Unlock()
}

// rebalance works around go-nsq starving a connection: the first nsqd
// connection takes all of MaxInFlight as RDY, and when more connect, go-nsq
// updates each connection's RDY in map order; a new connection updated
// before the first computes an allowance of 0 and retries only after 5s, so
// one nsqd's messages can stall that long. Changing MaxInFlight once the
// connections are in place (and whenever their number changes, as
// nsqlookupd finds more) spreads RDY evenly.
func (s *Subscription) rebalance() {
	conns := -1
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if n := s.consumer.Stats().Connections; n != conns {
			conns = n
			if n > 1 {
				// go-nsq ignores a call with the current value, so step
				// down and back; each call updates every connection's RDY.
				s.consumer.ChangeMaxInFlight(s.maxInFlight - 1)
				s.consumer.ChangeMaxInFlight(s.maxInFlight)
			}
		}
		select {
		case <-s.done:
			return
		case <-t.C:
		}
	}
}

type handlerAdapter struct {
	bus  *Bus
	h    Handler
	opts SubscribeOptions
	sub  *Subscription

	replays replayWindow // for Unique
}

func (a *handlerAdapter) HandleMessage(m *nsq.Message) error {
	body, seal, err := a.bus.sign.verify(a.sub.topic, m.Body)
	var now time.Time
	if a.opts.MaxAge > 0 || a.opts.Unique {
		now = time.Now()
	}
	if err == nil && a.opts.MaxAge > 0 && now.Sub(seal.Published) > a.opts.MaxAge {
		err = &rejectError{RejectExpired, fmt.Sprintf("published %v ago; this subscription takes messages up to %v old",
			now.Sub(seal.Published).Round(time.Millisecond), a.opts.MaxAge)}
	}
	if err == nil && a.opts.Unique && !a.replays.claim(seal.Publisher, seal.Counter, now, a.opts.MaxAge) {
		err = &rejectError{RejectReplayed, fmt.Sprintf("publisher %016x's message %d was handled already", seal.Publisher, seal.Counter)}
	}
	if err != nil {
		a.bus.reject(a.sub.topic, a.sub.channel, m, err)
		return nil // finished: never requeued
	}
	msg := &Message{Body: body, ID: string(m.ID[:]), Attempts: m.Attempts, Timestamp: time.Unix(0, m.Timestamp),
		Published: seal.Published, m: m}
	parts, perr := [][]byte(nil), error(nil)
	if a.opts.Unpack && isPacked(body) {
		parts, perr = splitPack(body)
	}
	if len(parts) > 0 && perr == nil {
		var errs []error
		ps := make([]Message, len(parts)) // one allocation per pack
		for i, part := range parts {
			a.bus.received.Add(1)
			p := &ps[i]
			*p = *msg
			p.Body, p.part = part, true
			if e := a.h(p); e != nil {
				errs = append(errs, e)
			}
		}
		err = errors.Join(errs...)
	} else {
		// Not packed, or damaged framing: the handler sees the whole body
		// (and can report it as bad input).
		a.bus.received.Add(1)
		err = a.h(msg)
	}
	if err != nil && a.opts.Unique {
		a.replays.unclaim(seal.Publisher, seal.Counter) // its redelivery is welcome
	}
	if err != nil && !m.HasResponded() && !m.IsAutoResponseDisabled() {
		a.bus.requeued.Add(1)
		delay := a.opts.RequeueDelay * time.Duration(m.Attempts)
		a.bus.log.Warn("mq handler failed; message requeued", "topic", a.sub.topic, "channel", a.sub.channel,
			"msg_id", msg.ID, "attempts", m.Attempts, "delay", delay, "err", err)
		m.RequeueWithoutBackoff(delay)
	}
	return nil
}

// LogFailedMessage is called by go-nsq when a message exceeds MaxAttempts;
// the message is then finished without being handled.
func (a *handlerAdapter) LogFailedMessage(m *nsq.Message) {
	a.bus.givenUp.Add(1)
	a.bus.log.Error("mq message given up after max attempts", "topic", a.sub.topic, "channel", a.sub.channel,
		"msg_id", string(m.ID[:]), "attempts", m.Attempts, "max_attempts", a.opts.MaxAttempts, "bytes", len(m.Body))
}

// EnsureChannel creates topic and channel on every nsqd the Bus knows
// (NSQDHTTP and the nsqd registered with Lookupd), so that messages published
// before a consumer connects are kept for it. Ephemeral channels are not
// created ahead (nsqd would keep them only while a consumer is connected);
// their topic is.
func (b *Bus) EnsureChannel(ctx context.Context, topic, channel string) error {
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	if err := ValidateChannel(channel); err != nil {
		return err
	}
	addrs, err := b.nsqdHTTPAddrs(ctx)
	for err != nil && len(b.cfg.NSQDHTTP) == 0 && ctx.Err() == nil {
		// Known only through nsqlookupd, which may not have heard from any
		// nsqd yet (they register asynchronously): retry until ctx ends.
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
		addrs, err = b.nsqdHTTPAddrs(ctx)
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, addr := range addrs {
		err := httpPost(ctx, "http://"+addr+"/topic/create?"+url.Values{"topic": {topic}}.Encode())
		if err == nil && !strings.HasSuffix(channel, ephemeralSuffix) {
			q := url.Values{"topic": {topic}, "channel": {channel}}
			err = httpPost(ctx, "http://"+addr+"/channel/create?"+q.Encode())
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("nsqd %s: %w", addr, err))
		}
	}
	if len(errs) > 0 && len(errs) == len(addrs) {
		return fmt.Errorf("mq: create %s/%s: %w", topic, channel, errors.Join(errs...))
	}
	for _, err := range errs {
		b.log.Warn("mq: could not create channel on one nsqd", "topic", topic, "channel", channel, "err", err)
	}
	return nil
}

// nsqdHTTPAddrs lists configured nsqd HTTP addresses plus those registered
// with nsqlookupd.
func (b *Bus) nsqdHTTPAddrs(ctx context.Context) ([]string, error) {
	seen := make(map[string]bool)
	var addrs []string
	for _, a := range b.cfg.NSQDHTTP {
		if !seen[a] {
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	var lookupErrs []error
	for _, l := range b.cfg.Lookupd {
		var resp struct {
			Producers []struct {
				BroadcastAddress string `json:"broadcast_address"`
				HTTPPort         int    `json:"http_port"`
			} `json:"producers"`
		}
		if err := httpGetJSON(ctx, "http://"+l+"/nodes", &resp); err != nil {
			lookupErrs = append(lookupErrs, fmt.Errorf("nsqlookupd %s: %w", l, err))
			continue
		}
		for _, p := range resp.Producers {
			a := net.JoinHostPort(p.BroadcastAddress, strconv.Itoa(p.HTTPPort))
			if !seen[a] {
				seen[a] = true
				addrs = append(addrs, a)
			}
		}
	}
	if len(addrs) == 0 {
		if len(lookupErrs) > 0 {
			return nil, fmt.Errorf("mq: no nsqd HTTP address known: %w", errors.Join(lookupErrs...))
		}
		return nil, errors.New("mq: no nsqd HTTP address known (set BusConfig.NSQDHTTP or BusConfig.Lookupd)")
	}
	return addrs, nil
}

// waitForLookupd waits until some nsqlookupd lists a producer of topic, so a
// new consumer finds it on its first query instead of after a poll interval.
func (b *Bus) waitForLookupd(ctx context.Context, topic string) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, l := range b.cfg.Lookupd {
			var resp struct {
				Producers []json.RawMessage `json:"producers"`
			}
			if httpGetJSON(ctx, "http://"+l+"/lookup?topic="+url.QueryEscape(topic), &resp) == nil && len(resp.Producers) > 0 {
				return
			}
		}
		select {
		case <-ctx.Done():
			b.log.Warn("mq: nsqlookupd does not list the topic yet; the consumer will find it on a later poll",
				"topic", topic, "poll_interval", b.cfg.LookupdPollInterval)
			return
		case <-tick.C:
		}
	}
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func httpPost(ctx context.Context, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

func httpGetJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/vnd.nsq; version=1.0")
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	// nsqlookupd and nsqd answers are small; a bound keeps a confused or
	// hostile peer from making us buffer without end.
	return json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(v)
}

// ChannelClients counts the consumers connected to topic/channel on every
// nsqd this bus knows over HTTP (a process that subscribed and is still
// alive, even if frozen, keeps its connection). An nsqd that cannot be
// asked is an error: the count would be a guess.
func (b *Bus) ChannelClients(ctx context.Context, topic, channel string) (int, error) {
	addrs, err := b.nsqdHTTPAddrs(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, addr := range addrs {
		var resp struct {
			Topics []struct {
				Name     string `json:"topic_name"`
				Channels []struct {
					Name    string `json:"channel_name"`
					Clients int    `json:"client_count"`
				} `json:"channels"`
			} `json:"topics"`
		}
		q := url.Values{"format": {"json"}, "topic": {topic}, "channel": {channel}, "include_clients": {"false"}}
		if err := httpGetJSON(ctx, "http://"+addr+"/stats?"+q.Encode(), &resp); err != nil {
			return 0, fmt.Errorf("mq: nsqd %s stats: %w", addr, err)
		}
		for _, t := range resp.Topics {
			for _, c := range t.Channels {
				if t.Name == topic && c.Name == channel {
					n += c.Clients
				}
			}
		}
	}
	return n, nil
}
