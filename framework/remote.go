package framework

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citadel-go/citadel/mq"
)

// NodeTopic is the NSQ topic a node consumes: "citadel.<service>.<node>".
func NodeTopic(service, node string) string { return "citadel." + service + "." + node }

// nodeChannel is the one durable channel on a node topic.
const nodeChannel = "actors"

const (
	kindSend    uint8 = 1
	kindRequest uint8 = 2
	kindReply   uint8 = 3
)

// wireEnvelope is what crosses the mq: a msgpack array of the fields
// below, in order. Every envelope from one node incarnation (Epoch) to one
// destination node carries the next Seq, so the receiver can put NSQ's
// unordered, at-least-once delivery back in order and drop duplicates.
type wireEnvelope struct {
	Kind     uint8
	From     Addr
	To       Addr
	Epoch    uint64
	Seq      uint64
	CorrID   uint64
	Deadline int64 // unix nanoseconds; requests only
	Sent     int64 // unix nanoseconds, for latency metrics
	// StreamStart is when the sender began numbering envelopes for this
	// destination (unix nanoseconds). A receiver that was already consuming
	// then knows sequence number 1 is meant for it and waits for it; one
	// that started later (it restarted mid-stream) must resync.
	StreamStart int64
	MsgID       MsgID
	Payload     []byte
	ErrCode     string
	ErrMsg      string
	// ToEpoch is the destination node's incarnation as the sender knows it
	// (membership, or the request a reply answers); 0 when it knows none.
	// A node drops envelopes addressed to another incarnation of itself:
	// a message for its previous process, or a captured one replayed after
	// a restart, reaches no actor.
	ToEpoch uint64
}

type nodeKey struct{ service, node string }

// outStream numbers envelopes to one destination node.
type outStream struct {
	mu    sync.Mutex
	topic string
	start int64
	seq   uint64
}

func (n *Node) outStream(to Addr) *outStream {
	k := nodeKey{to.Service, to.Node}
	if v, ok := n.out.Load(k); ok {
		return v.(*outStream)
	}
	v, _ := n.out.LoadOrStore(k, &outStream{topic: NodeTopic(to.Service, to.Node), start: time.Now().UnixNano()})
	return v.(*outStream)
}

// sendRemote publishes one envelope. Size and name problems are returned
// before a sequence number is used, so they never leave a gap.
func (n *Node) sendRemote(kind uint8, from, to Addr, msg any, req *request, rerr *RemoteError) error {
	if n.bus == nil {
		return fmt.Errorf("framework: node %s has no mq configured; cannot reach %s", n.addr.Node, to)
	}
	if err := validateNodeName("service", to.Service); err != nil {
		return err
	}
	if err := validateNodeName("node", to.Node); err != nil {
		return err
	}
	w := wireEnvelope{Kind: kind, From: from, To: to, Epoch: n.epoch, Sent: time.Now().UnixNano()}
	if req != nil {
		w.CorrID = req.corrID
		w.Deadline = req.deadline.UnixNano()
	}
	if kind == kindReply {
		w.ToEpoch = req.replyEpoch
	} else {
		w.ToEpoch = n.members.epochOf(to.Service, to.Node)
	}
	if rerr != nil {
		w.ErrCode, w.ErrMsg = rerr.Code, rerr.Message
	} else {
		id, e, err := n.reg.encode(msg)
		if err != nil {
			return err
		}
		defer e.release() // after appendEnvelope has copied the payload
		w.MsgID, w.Payload = id, e.buf.Bytes()
	}
	os := n.outStream(to)
	os.mu.Lock()
	defer os.mu.Unlock()
	w.Seq, w.StreamStart = os.seq+1, os.start
	body := appendEnvelope(mq.PackBuffer(envelopeSize(&w)), &w)
	// Envelopes queued together travel in one NSQ message (see mq.PackAsync).
	if err := n.bus.PackAsync(os.topic, body); err != nil {
		return fmt.Errorf("framework: send %T to %s: %w", msg, to, err)
	}
	os.seq++
	n.stats.remoteSent.Add(1)
	return nil
}

// errHookDrop is returned by a test's inbound hook to lose a message.
var errHookDrop = errors.New("dropped by test hook")

// inItem is a received envelope with its decoded message.
type inItem struct {
	w         wireEnvelope
	msg       any
	decodeErr error
}

// held copies an envelope that must wait for its turn: the one being
// accepted lives on onRemote's stack.
func (it *inItem) held() *inItem {
	c := *it
	return &c
}

type streamKey struct {
	service, node string
	epoch         uint64
}

// inStream restores order and drops duplicates for one sender incarnation.
type inStream struct {
	key      streamKey
	next     uint64 // next sequence number to deliver; 0 while resyncing
	floor    uint64 // first sequence number after a resync (no record below)
	pending  map[uint64]*inItem
	skipped  map[uint64]struct{} // given up after a gap; delivered late if they come
	lateSeen map[uint64]struct{} // below floor and already delivered
	timer    *time.Timer         // resync or gap timer
	lastSeen time.Time
}

const (
	// maxPending bounds envelopes held back per stream; beyond it the gap is
	// skipped at once.
	maxPending = 65536
	// maxRemembered bounds the skipped and lateSeen sets per stream.
	maxRemembered = 65536
	// streamIdle is how long a stream with nothing pending is remembered.
	streamIdle = 10 * time.Minute
)

// onRemote handles one message from the node's topic. It always finishes
// the message: a bad payload is logged and counted, never requeued forever.
func (n *Node) onRemote(m *mq.Message) error {
	if n.inboundHook != nil {
		// Tests only: an error makes NSQ redeliver the message (the whole
		// pack); errHookDrop loses it.
		if err := n.inboundHook(m); err == errHookDrop {
			return nil
		} else if err != nil {
			return err
		}
	}
	n.stats.remoteReceived.Add(1)
	var item inItem // on the stack: copied only if it must wait (see held)
	it := &item
	if err := parseEnvelope(m.Body, &it.w, &n.intern); err != nil {
		n.badEnvelope(m, fmt.Errorf("undecodable envelope: %w", err))
		return nil
	}
	w := &it.w
	if err := n.checkEnvelope(w); err != nil {
		n.badEnvelope(m, err)
		return nil
	}
	if w.Sent > 0 {
		n.latency.Observe(time.Since(time.Unix(0, w.Sent)).Seconds())
	}
	if w.ErrCode == "" && (w.Kind != kindReply || w.MsgID != 0) {
		it.msg, it.decodeErr = n.reg.Unmarshal(w.MsgID, w.Payload)
		if it.decodeErr != nil {
			// The envelope still takes its place in the sequence so the stream
			// does not stall; a waiting caller is told.
			n.badEnvelope(m, it.decodeErr)
		}
	}
	w.Payload = nil // do not keep the NSQ message alive
	n.inMu.Lock()
	n.acceptLocked(it)
	n.inMu.Unlock()
	return nil
}

func (n *Node) checkEnvelope(w *wireEnvelope) error {
	if w.Kind < kindSend || w.Kind > kindReply {
		return fmt.Errorf("envelope kind %d is unknown", w.Kind)
	}
	if w.To.Service != n.addr.Service || w.To.Node != n.addr.Node {
		return fmt.Errorf("envelope for %s arrived at %s", w.To, n.addr)
	}
	if err := validateNodeName("service", w.From.Service); err != nil {
		return fmt.Errorf("envelope sender: %w", err)
	}
	if err := validateNodeName("node", w.From.Node); err != nil {
		return fmt.Errorf("envelope sender: %w", err)
	}
	if w.Seq == 0 || w.Epoch == 0 {
		return fmt.Errorf("envelope from %s has no sequence (epoch %d, seq %d)", w.From, w.Epoch, w.Seq)
	}
	if w.ToEpoch != 0 && w.ToEpoch != n.epoch {
		n.stats.wrongIncarnation.Add(1)
		return fmt.Errorf("envelope from %s for incarnation %016x of this node, which is %016x", w.From, w.ToEpoch, n.epoch)
	}
	return nil
}

func (n *Node) badEnvelope(m *mq.Message, err error) {
	n.stats.badEnvelopes.Add(1)
	if suppressed, ok := n.badLog.Allow(); ok {
		n.log.Warn("dropped bad mq payload", "topic", NodeTopic(n.addr.Service, n.addr.Node), "msg_id", m.ID,
			"attempts", m.Attempts, "bytes", len(m.Body), "err", err, "suppressed_since_last", suppressed)
	}
}

// acceptLocked puts one envelope into its stream and delivers whatever is
// now in order.
func (n *Node) acceptLocked(it *inItem) {
	seq := it.w.Seq
	key := streamKey{it.w.From.Service, it.w.From.Node, it.w.Epoch}
	st := n.streams[key]
	if st == nil {
		st = &inStream{key: key, pending: make(map[uint64]*inItem)}
		n.streams[key] = st
		if next, ok := n.retired[key]; ok {
			// A stream that went idle: it carries on where it was, so its
			// next message waits for nothing and an old one (a replay) is a
			// duplicate.
			delete(n.retired, key)
			st.next = next.next
		} else if seq == 1 || it.w.StreamStart >= n.consumingSince {
			// The stream began while we were consuming: 1 is ours to wait for.
			st.next = 1
		} else {
			// We meet this sender mid-stream (we restarted): collect for a
			// moment, then start from the lowest sequence number seen.
			st.timer = time.AfterFunc(n.cfg.ResyncWindow, func() { n.onStreamTimer(st) })
		}
	}
	st.lastSeen = time.Now()
	if st.next == 0 {
		if _, dup := st.pending[seq]; dup {
			n.stats.duplicates.Add(1)
			return
		}
		st.pending[seq] = it.held()
		return
	}
	switch {
	case seq < st.next:
		if _, ok := st.skipped[seq]; ok {
			delete(st.skipped, seq)
			n.stats.late.Add(1)
			n.dispatchLocked(it)
			return
		}
		if seq < st.floor {
			if _, seen := st.lateSeen[seq]; !seen {
				if st.lateSeen == nil {
					st.lateSeen = make(map[uint64]struct{})
				}
				if len(st.lateSeen) < maxRemembered {
					st.lateSeen[seq] = struct{}{}
				}
				n.stats.late.Add(1)
				n.dispatchLocked(it)
				return
			}
		}
		n.stats.duplicates.Add(1)
	case seq == st.next:
		n.dispatchLocked(it)
		st.next++
		n.drainLocked(st)
	default:
		if _, dup := st.pending[seq]; dup {
			n.stats.duplicates.Add(1)
			return
		}
		st.pending[seq] = it.held()
		n.stats.reordered.Add(1)
		if len(st.pending) > maxPending {
			n.skipGapLocked(st)
		} else if st.timer == nil {
			st.timer = time.AfterFunc(n.cfg.GapTimeout, func() { n.onStreamTimer(st) })
		}
	}
}

// drainLocked delivers consecutive held-back envelopes and re-arms the gap
// timer if some are still waiting.
func (n *Node) drainLocked(st *inStream) {
	for {
		it, ok := st.pending[st.next]
		if !ok {
			break
		}
		delete(st.pending, st.next)
		n.dispatchLocked(it)
		st.next++
	}
	if st.timer != nil {
		st.timer.Stop()
		st.timer = nil
	}
	if len(st.pending) > 0 {
		st.timer = time.AfterFunc(n.cfg.GapTimeout, func() { n.onStreamTimer(st) })
	}
}

func (n *Node) onStreamTimer(st *inStream) {
	n.inMu.Lock()
	defer n.inMu.Unlock()
	st.timer = nil
	if n.streams[st.key] != st {
		return
	}
	if st.next == 0 {
		low := lowestPending(st)
		st.next, st.floor = low, low
		n.log.Info("inbound stream resynced", "from", st.key.service+"/"+st.key.node, "first_seq", low)
		n.drainLocked(st)
		return
	}
	n.skipGapLocked(st)
}

// skipGapLocked gives up the missing sequence numbers before the lowest
// held-back one. They are remembered, so if they do arrive they are
// delivered (late) rather than mistaken for duplicates.
func (n *Node) skipGapLocked(st *inStream) {
	if len(st.pending) == 0 {
		return
	}
	low := lowestPending(st)
	if st.skipped == nil {
		st.skipped = make(map[uint64]struct{})
	}
	for s := st.next; s < low; s++ {
		if len(st.skipped) < maxRemembered {
			st.skipped[s] = struct{}{}
		}
	}
	n.stats.gapsSkipped.Add(low - st.next)
	n.log.Warn("inbound stream gap skipped", "from", st.key.service+"/"+st.key.node,
		"missing_from", st.next, "missing_to", low-1, "held_back", len(st.pending))
	st.next = low
	n.drainLocked(st)
}

func lowestPending(st *inStream) uint64 {
	keys := make([]uint64, 0, len(st.pending))
	for k := range st.pending {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys[0]
}

// flushStreamsLocked delivers everything held back, in order, regardless
// of gaps (used when the node stops consuming).
func (n *Node) flushStreamsLocked() {
	for _, st := range n.streams {
		for len(st.pending) > 0 {
			if st.next == 0 {
				st.next = lowestPending(st)
			}
			n.skipGapLocked(st)
		}
	}
}

// retiredStream is what a node keeps of an idle stream: where it was.
type retiredStream struct {
	next uint64
	at   time.Time
}

// forgetIdleStreamsLocked shrinks streams idle for streamIdle to where they
// were, and forgets those idle for longer than MaxMessageAge: any envelope
// of theirs that could still come is older than the node accepts.
func (n *Node) forgetIdleStreamsLocked(now time.Time) {
	for k, st := range n.streams {
		if len(st.pending) == 0 && st.next > 0 && now.Sub(st.lastSeen) > streamIdle {
			delete(n.streams, k)
			n.retired[k] = retiredStream{next: st.next, at: st.lastSeen}
		}
	}
	for k, r := range n.retired {
		if now.Sub(r.at) > n.cfg.MaxMessageAge {
			delete(n.retired, k)
		}
	}
}

// dispatchLocked hands one in-order envelope to its actor or waiting call.
func (n *Node) dispatchLocked(it *inItem) {
	w := &it.w
	if w.Kind == kindReply {
		var rerr *RemoteError
		switch {
		case w.ErrCode != "":
			rerr = &RemoteError{Code: w.ErrCode, Message: w.ErrMsg}
		case it.decodeErr != nil:
			rerr = &RemoteError{Code: CodeUndecodable, Message: it.decodeErr.Error()}
		}
		n.resolveCall(w.CorrID, it.msg, rerr)
		return
	}
	var req *request
	if w.Kind == kindRequest {
		req = &request{corrID: w.CorrID, replyTo: w.From.NodeAddr(), replyEpoch: w.Epoch, deadline: time.Unix(0, w.Deadline)}
		if time.Now().After(req.deadline) {
			n.stats.expiredReq.Add(1)
			return
		}
	}
	if it.decodeErr != nil {
		if req != nil {
			_ = n.reply(req, w.To, nil, &RemoteError{Code: CodeUndecodable, Message: it.decodeErr.Error()})
		}
		return
	}
	if err := n.deliverLocal(w.To, envelope{from: w.From, msg: it.msg, req: req}); err != nil {
		if req != nil {
			_ = n.reply(req, w.To, nil, toRemoteError(err))
		} else if fn := n.deadLetter.Load(); fn != nil && *fn != nil {
			(*fn)(w.From, w.To, it.msg, err)
		}
	}
}

// LogLimiter lets one log line through per 100ms and counts the rest, so
// a flood of bad input cannot flood the logs. The zero value is ready.
type LogLimiter struct {
	last       atomic.Int64
	suppressed atomic.Uint64
}

// Allow reports whether to log now and how many lines were held back
// since the last one that was.
func (l *LogLimiter) Allow() (suppressed uint64, ok bool) {
	now := time.Now().UnixNano()
	last := l.last.Load()
	if now-last < int64(100*time.Millisecond) || !l.last.CompareAndSwap(last, now) {
		l.suppressed.Add(1)
		return 0, false
	}
	return l.suppressed.Swap(0), true
}
