package framework

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/citadel-go/citadel/mq"
	"github.com/prometheus/client_golang/prometheus"
)

// kindStats counts per actor kind. The hot path only touches atomics; the
// Prometheus collector reads them at scrape time.
type kindStats struct {
	handled, overflow, panics atomic.Uint64
	actors                    atomic.Int64
}

type nodeStats struct {
	deadLetters                                  atomic.Uint64
	remoteSent, remoteReceived                   atomic.Uint64
	badEnvelopes, duplicates, reordered          atomic.Uint64
	wrongIncarnation                             atomic.Uint64
	gapsSkipped, late, gapWaits                  atomic.Uint64
	resendRequests, resent                       atomic.Uint64
	calls, callTimeouts, lateReplies, expiredReq atomic.Uint64

	kindsMu sync.Mutex
	kinds   map[string]*kindStats
}

func (s *nodeStats) kind(name string) *kindStats {
	s.kindsMu.Lock()
	defer s.kindsMu.Unlock()
	k, ok := s.kinds[name]
	if !ok {
		k = &kindStats{}
		s.kinds[name] = k
	}
	return k
}

// KindStats are the counters of one actor kind.
type KindStats struct {
	Actors       int64  // running actors
	MailboxDepth int64  // messages queued or being handled, summed
	Handled      uint64 // messages handled
	Overflow     uint64 // messages rejected or dropped by a full mailbox
	Panics       uint64 // handler panics recovered
}

// Stats is a snapshot of a node's counters (also exported as Prometheus
// metrics named citadel_*).
type Stats struct {
	DeadLetters    uint64 // messages for actors that do not exist or stopped
	RemoteSent     uint64 // envelopes published to other nodes
	RemoteReceived uint64 // envelopes received from the mq
	BadEnvelopes   uint64 // undecodable mq payloads, logged and finished
	// WrongIncarnation counts envelopes for another incarnation of this
	// node (its previous process), dropped.
	WrongIncarnation uint64
	Duplicates       uint64 // redeliveries dropped
	Reordered        uint64 // envelopes that arrived early and were held back
	GapsSkipped      uint64 // missing sequence numbers given up after GapTimeout
	GapWaits         uint64 // gap timeouts that ran out (each gives up every number missing then)
	LateDelivered    uint64 // envelopes delivered after their gap was skipped
	ResendRequests   uint64 // gaps this node asked a sender to fill by publishing again
	Resent           uint64 // envelopes this node published again because a receiver missed them
	Calls            uint64 // Calls made
	CallTimeouts     uint64 // Calls that timed out
	LateReplies      uint64 // replies dropped because their deadline had passed
	ExpiredRequests  uint64 // requests dropped unhandled because their deadline had passed
	Kinds            map[string]KindStats
	MQ               mq.BusStats
}

// Stats returns a snapshot of the node's counters.
func (n *Node) Stats() Stats {
	s := &n.stats
	out := Stats{
		DeadLetters: s.deadLetters.Load(), RemoteSent: s.remoteSent.Load(), RemoteReceived: s.remoteReceived.Load(),
		BadEnvelopes: s.badEnvelopes.Load(), Duplicates: s.duplicates.Load(), Reordered: s.reordered.Load(),
		WrongIncarnation: s.wrongIncarnation.Load(),
		GapsSkipped:      s.gapsSkipped.Load(), LateDelivered: s.late.Load(), GapWaits: s.gapWaits.Load(),
		ResendRequests: s.resendRequests.Load(), Resent: s.resent.Load(),
		Calls: s.calls.Load(), CallTimeouts: s.callTimeouts.Load(), LateReplies: s.lateReplies.Load(),
		ExpiredRequests: s.expiredReq.Load(),
		Kinds:           make(map[string]KindStats),
	}
	depth := make(map[*kindStats]int64)
	n.procs.Range(func(_, v any) bool {
		p := v.(*process)
		depth[p.kind] += p.pending.Load()
		return true
	})
	s.kindsMu.Lock()
	for name, k := range s.kinds {
		out.Kinds[name] = KindStats{Actors: k.actors.Load(), MailboxDepth: depth[k], Handled: k.handled.Load(),
			Overflow: k.overflow.Load(), Panics: k.panics.Load()}
	}
	s.kindsMu.Unlock()
	if n.bus != nil {
		out.MQ = n.bus.Stats()
	}
	return out
}

// collector exports Stats to Prometheus.
type collector struct {
	node *Node
	desc map[string]*prometheus.Desc
}

var counterHelp = map[string]string{
	"citadel_node_dead_letters_total":      "Messages for actors that do not exist or stopped.",
	"citadel_node_remote_sent_total":       "Envelopes published to other nodes.",
	"citadel_node_remote_received_total":   "Envelopes received from the mq.",
	"citadel_node_bad_envelopes_total":     "Undecodable mq payloads, logged and finished.",
	"citadel_node_duplicates_total":        "Redelivered envelopes dropped.",
	"citadel_node_wrong_incarnation_total": "Envelopes for another incarnation of this node (its previous process) dropped.",
	"citadel_mq_rejected_total":            "Messages dropped before any handler: unsigned, unknown key, bad signature, expired or replayed.",
	"citadel_node_reordered_total":         "Envelopes that arrived ahead of sequence and were held back.",
	"citadel_node_gaps_skipped_total":      "Missing sequence numbers given up after the gap timeout.",
	"citadel_node_gap_waits_total":         "Gap timeouts that ran out; each gives up every sequence number missing then.",
	"citadel_node_late_delivered_total":    "Envelopes delivered after their gap was skipped.",
	"citadel_node_resend_requests_total":   "Gaps this node asked a sender to fill by publishing the missing envelopes again.",
	"citadel_node_resent_total":            "Envelopes published again because their receiver missed them.",
	"citadel_node_calls_total":             "Calls made.",
	"citadel_node_call_timeouts_total":     "Calls that timed out.",
	"citadel_node_late_replies_total":      "Replies dropped after the caller's deadline.",
	"citadel_node_expired_requests_total":  "Requests dropped unhandled after their deadline.",
	"citadel_mq_published_total":           "Messages acknowledged by nsqd.",
	"citadel_mq_publish_batches_total":     "Publish commands (PUB/MPUB) acknowledged by nsqd.",
	"citadel_mq_publish_errors_total":      "Failed publish attempts.",
	"citadel_mq_dropped_total":             "Async messages dropped after retries.",
	"citadel_mq_received_total":            "Messages delivered to subscription handlers.",
	"citadel_mq_requeued_total":            "Messages requeued by handlers.",
	"citadel_mq_given_up_total":            "Messages finished unprocessed after max attempts.",
	"citadel_actor_messages_total":         "Messages handled, by actor kind.",
	"citadel_actor_mailbox_overflow_total": "Messages rejected or dropped by a full mailbox, by actor kind.",
	"citadel_actor_panics_total":           "Handler panics recovered, by actor kind.",
}

var gaugeHelp = map[string]string{
	"citadel_mq_publish_queue":    "Async messages waiting to be published.",
	"citadel_actors":              "Running actors, by kind.",
	"citadel_actor_mailbox_depth": "Messages queued or being handled, by actor kind.",
}

func newCollector(n *Node) *collector {
	c := &collector{node: n, desc: make(map[string]*prometheus.Desc)}
	labels := prometheus.Labels{"service": n.cfg.Service, "node": n.cfg.ID}
	for name, help := range counterHelp {
		var vars []string
		if strings.HasPrefix(name, "citadel_actor_") {
			vars = []string{"kind"}
		}
		if name == "citadel_mq_rejected_total" {
			vars = []string{"reason"}
		}
		c.desc[name] = prometheus.NewDesc(name, help, vars, labels)
	}
	for name, help := range gaugeHelp {
		var vars []string
		if name != "citadel_mq_publish_queue" {
			vars = []string{"kind"}
		}
		c.desc[name] = prometheus.NewDesc(name, help, vars, labels)
	}
	return c
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.desc {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.node.Stats()
	counter := func(name string, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.desc[name], prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.desc[name], prometheus.GaugeValue, v, labels...)
	}
	counter("citadel_node_dead_letters_total", s.DeadLetters)
	counter("citadel_node_remote_sent_total", s.RemoteSent)
	counter("citadel_node_remote_received_total", s.RemoteReceived)
	counter("citadel_node_bad_envelopes_total", s.BadEnvelopes)
	counter("citadel_node_duplicates_total", s.Duplicates)
	counter("citadel_node_wrong_incarnation_total", s.WrongIncarnation)
	for reason, v := range s.MQ.Rejected {
		counter("citadel_mq_rejected_total", v, reason)
	}
	counter("citadel_node_reordered_total", s.Reordered)
	counter("citadel_node_gaps_skipped_total", s.GapsSkipped)
	counter("citadel_node_gap_waits_total", s.GapWaits)
	counter("citadel_node_late_delivered_total", s.LateDelivered)
	counter("citadel_node_resend_requests_total", s.ResendRequests)
	counter("citadel_node_resent_total", s.Resent)
	counter("citadel_node_calls_total", s.Calls)
	counter("citadel_node_call_timeouts_total", s.CallTimeouts)
	counter("citadel_node_late_replies_total", s.LateReplies)
	counter("citadel_node_expired_requests_total", s.ExpiredRequests)
	counter("citadel_mq_published_total", s.MQ.Published)
	counter("citadel_mq_publish_batches_total", s.MQ.Batches)
	counter("citadel_mq_publish_errors_total", s.MQ.PublishErrors)
	counter("citadel_mq_dropped_total", s.MQ.Dropped)
	counter("citadel_mq_received_total", s.MQ.Received)
	counter("citadel_mq_requeued_total", s.MQ.Requeued)
	counter("citadel_mq_given_up_total", s.MQ.GivenUp)
	gauge("citadel_mq_publish_queue", float64(s.MQ.Queued))
	for kind, k := range s.Kinds {
		counter("citadel_actor_messages_total", k.Handled, kind)
		counter("citadel_actor_mailbox_overflow_total", k.Overflow, kind)
		counter("citadel_actor_panics_total", k.Panics, kind)
		gauge("citadel_actors", float64(k.Actors), kind)
		gauge("citadel_actor_mailbox_depth", float64(k.MailboxDepth), kind)
	}
}
