package framework

import (
	"errors"
	"fmt"
	"slices"
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
	// kindResend asks the sender of a stream to publish again the
	// envelopes it numbered CorrID to Deadline (inclusive) for the
	// requester's incarnation (Epoch): they did not arrive (another
	// consumer took them, an nsqd lost its memory queue). It is outside
	// every stream (Seq 0) and carries no message.
	kindResend uint8 = 4
)

// wireEnvelope is what crosses the mq: a msgpack array of the fields
// below, in order. Every envelope from one node incarnation (Epoch) to one
// incarnation of a destination node (ToEpoch) carries the next Seq of that
// pair's stream, starting at 1, so the receiver can put NSQ's unordered,
// at-least-once delivery back in order and drop duplicates.
type wireEnvelope struct {
	Kind     uint8
	From     Addr
	To       Addr
	Epoch    uint64
	Seq      uint64
	CorrID   uint64
	Deadline int64 // unix nanoseconds; requests only
	Sent     int64 // unix nanoseconds, for latency metrics
	MsgID    MsgID
	Payload  []byte
	ErrCode  string
	ErrMsg   string
	// ToEpoch is the destination node's incarnation: from membership, or
	// for a reply from the request it answers. A node sends only to
	// incarnations it knows, and drops envelopes addressed to another
	// incarnation of itself: a message for its previous process, or a
	// captured one replayed after a restart, reaches no actor.
	ToEpoch uint64
}

type nodeKey struct{ service, node string }

// outKey names the stream to one incarnation of a node.
type outKey struct {
	service, node string
	epoch         uint64
}

// outStream numbers envelopes to one incarnation of a destination node: a
// new incarnation gets a new stream from 1, so a restarted node never
// meets a stream half way through.
type outStream struct {
	mu    sync.Mutex
	topic string
	seq   uint64
	// kept holds the stream's newest envelopes, by seq % retainCount, to
	// publish again when the receiver says they did not arrive. The
	// buffers are reused, so a send allocates nothing for it.
	kept []keptEnvelope
}

// keptEnvelope is a sent envelope kept for a resend.
type keptEnvelope struct {
	seq    uint64
	at     time.Time
	resent time.Time // last resend: at most one per resendEvery
	body   []byte
}

const (
	// retainCount envelopes per stream are kept for resends, each at most
	// retainMax bytes (larger ones are not resent), for at most retainFor.
	retainCount = 512
	retainMax   = 4 << 10
	retainFor   = 10 * time.Second
	// maxResendGaps bounds the resend requests for one stream's gaps.
	maxResendGaps = 16
	// resendEvery bounds how often one envelope is resent, however many
	// requests ask for it (a request replayed off nsqd must not multiply
	// traffic); a receiver asks again no sooner than this.
	resendEvery = 50 * time.Millisecond
)

func (n *Node) outStream(to Addr, epoch uint64) *outStream {
	k := outKey{to.Service, to.Node, epoch}
	if v, ok := n.out.Load(k); ok {
		return v.(*outStream)
	}
	v, _ := n.out.LoadOrStore(k, &outStream{topic: NodeTopic(to.Service, to.Node)})
	return v.(*outStream)
}

// forgetOutStreams drops the streams to incarnations that are no longer
// members (a node that left or was replaced).
func (n *Node) forgetOutStreams() {
	n.out.Range(func(k, _ any) bool {
		key := k.(outKey)
		if n.members.epochOf(key.service, key.node) != key.epoch {
			n.out.Delete(k)
		}
		return true
	})
}

// sendRemote publishes one envelope. Size and name problems are returned
// before a sequence number is used, so they never leave a gap.
func (n *Node) sendRemote(kind uint8, from, to Addr, msg any, req *request, rerr *RemoteError) error {
	var toEpoch uint64
	if kind == kindReply {
		toEpoch = req.replyEpoch
	} else if toEpoch = n.members.epochOf(to.Service, to.Node); toEpoch == 0 {
		return fmt.Errorf("framework: send %T to %s: %w", msg, to, ErrNodeUnknown)
	}
	return n.sendRemoteTo(kind, from, to, toEpoch, msg, req, rerr)
}

// sendRemoteTo publishes one envelope to incarnation toEpoch of to's node.
func (n *Node) sendRemoteTo(kind uint8, from, to Addr, toEpoch uint64, msg any, req *request, rerr *RemoteError) error {
	if n.bus == nil {
		return fmt.Errorf("framework: node %s has no mq configured; cannot reach %s", n.addr.Node, to)
	}
	if err := validateNodeName("service", to.Service); err != nil {
		return err
	}
	if err := validateNodeName("node", to.Node); err != nil {
		return err
	}
	w := wireEnvelope{Kind: kind, From: from, To: to, Epoch: n.epoch, ToEpoch: toEpoch, Sent: time.Now().UnixNano()}
	if req != nil {
		w.CorrID = req.corrID
		w.Deadline = req.deadline.UnixNano()
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
	os := n.outStream(to, w.ToEpoch)
	os.mu.Lock()
	defer os.mu.Unlock()
	w.Seq = os.seq + 1
	body := appendEnvelope(mq.PackBuffer(envelopeSize(&w)), &w)
	keep := len(body) <= retainMax
	if keep {
		if os.kept == nil {
			os.kept = make([]keptEnvelope, retainCount)
		}
		k := &os.kept[w.Seq%retainCount]
		k.seq, k.at, k.resent, k.body = w.Seq, time.Unix(0, w.Sent), time.Time{}, append(k.body[:0], body...)
	}
	// Envelopes queued together travel in one NSQ message (see mq.PackAsync).
	if err := n.bus.PackAsync(os.topic, body); err != nil {
		if keep {
			os.kept[w.Seq%retainCount].seq = 0
		}
		return fmt.Errorf("framework: send %T to %s: %w", msg, to, err)
	}
	os.seq++
	n.stats.remoteSent.Add(1)
	return nil
}

// resend publishes again the kept envelopes numbered first to last of the
// stream to incarnation toEpoch of node to: its receiver says they did not
// arrive. Envelopes no longer kept are not resent (the receiver gives them
// up after its gap timeout).
func (n *Node) resend(to Addr, toEpoch, first, last uint64) {
	v, ok := n.out.Load(outKey{to.Service, to.Node, toEpoch})
	if !ok || last < first {
		return
	}
	os := v.(*outStream)
	os.mu.Lock()
	defer os.mu.Unlock()
	last = min(last, os.seq, first+retainCount-1)
	now := time.Now()
	cutoff := now.Add(-retainFor)
	for seq := first; seq <= last && os.kept != nil; seq++ {
		k := &os.kept[seq%retainCount]
		if k.seq != seq || k.at.Before(cutoff) || now.Sub(k.resent) < resendEvery {
			continue
		}
		k.resent = now
		if err := n.bus.PackAsync(os.topic, append(mq.PackBuffer(len(k.body)), k.body...)); err != nil {
			return
		}
		n.stats.resent.Add(1)
	}
}

// requestResendLocked asks a stream's sender to publish again what is
// missing below the newest held-back envelope: one request per gap, the
// first maxResendGaps gaps (the rest in one more).
func (n *Node) requestResendLocked(st *inStream) {
	if n.bus == nil || len(st.pending) == 0 {
		return
	}
	held := make([]uint64, 0, len(st.pending))
	for k := range st.pending {
		held = append(held, k)
	}
	slices.Sort(held)
	ask := func(first, last uint64) {
		w := wireEnvelope{Kind: kindResend, From: n.addr, To: Addr{Service: st.key.service, Node: st.key.node},
			Epoch: n.epoch, ToEpoch: st.key.epoch, CorrID: first, Deadline: int64(last), Sent: time.Now().UnixNano()}
		if n.bus.PackAsync(NodeTopic(st.key.service, st.key.node), appendEnvelope(mq.PackBuffer(envelopeSize(&w)), &w)) == nil {
			n.stats.resendRequests.Add(1)
		}
	}
	next, gaps := st.next, 0
	for _, k := range held {
		if k > next {
			if gaps++; gaps > maxResendGaps {
				ask(next, held[len(held)-1]-1)
				break
			}
			ask(next, k-1)
		}
		next = k + 1
	}
	if st.key.service == n.addr.Service && st.key.node == n.addr.Node {
		n.selfLoss.Store(time.Now().UnixNano())
	}
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
	next     uint64 // next sequence number to deliver
	pending  map[uint64]*inItem
	skipped  map[uint64]struct{} // given up after a gap; delivered late if they come
	timer    *time.Timer         // the gap timer, while envelopes are held back
	gapSince time.Time           // when the stream began waiting (the gap timer's start)
	asks     int                 // resend requests made for the gaps since then
	lastSeen time.Time
}

const (
	// maxPending bounds envelopes held back per stream; beyond it the gap is
	// skipped at once.
	maxPending = 65536
	// maxRemembered bounds the skipped set per stream.
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
	if w.ToEpoch != n.epoch {
		n.misaddressed(w, fmt.Sprintf("addressed to incarnation %d of this node, which is %d", w.ToEpoch, n.epoch))
		return nil
	}
	if w.Kind == kindResend {
		if time.Since(time.Unix(0, w.Sent)) < retainFor { // an older one is stale, or replayed
			n.resend(w.From, w.Epoch, w.CorrID, uint64(w.Deadline))
		}
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
	if w.Kind < kindSend || w.Kind > kindResend {
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
	if (w.Seq == 0) != (w.Kind == kindResend) || w.Epoch == 0 {
		return fmt.Errorf("envelope from %s has no sequence (epoch %d, seq %d)", w.From, w.Epoch, w.Seq)
	}
	return nil
}

// misaddressed drops an envelope for another incarnation of this node, or
// from an incarnation of its sender older than one already heard from:
// normal for a moment after a restart, so counted and logged at debug.
func (n *Node) misaddressed(w *wireEnvelope, why string) {
	n.stats.wrongIncarnation.Add(1)
	if suppressed, ok := n.badLog.Allow(); ok {
		n.log.Debug("envelope for another incarnation dropped", "from", w.From.String(), "sender_incarnation", w.Epoch,
			"why", why, "suppressed_since_last", suppressed)
	}
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
	sender := nodeKey{it.w.From.Service, it.w.From.Node}
	switch newest := n.senders[sender]; {
	case it.w.Epoch < newest:
		// An earlier process of a node that has restarted since: what it
		// still had in flight is for the world before the restart.
		n.misaddressed(&it.w, fmt.Sprintf("from incarnation %d of its sender, which has restarted as %d", it.w.Epoch, newest))
		return
	case it.w.Epoch > newest:
		n.senders[sender] = it.w.Epoch
		if newest != 0 {
			n.retireStreamLocked(streamKey{sender.service, sender.node, newest})
		}
		if n.members.epochOf(sender.service, sender.node) < it.w.Epoch {
			n.members.heardFrom(sender, it.w.Epoch)
		}
	}
	key := streamKey{it.w.From.Service, it.w.From.Node, it.w.Epoch}
	st := n.streams[key]
	if st == nil {
		// A stream starts at 1: it is addressed to this incarnation, which
		// was consuming before any sender knew it. One that went idle
		// carries on where it was, so its next message waits for nothing
		// and an old one (a replay) is a duplicate.
		st = &inStream{key: key, next: 1, pending: make(map[uint64]*inItem)}
		if r, ok := n.retired[key]; ok {
			delete(n.retired, key)
			st.next = r.next
		}
		n.streams[key] = st
	}
	st.lastSeen = time.Now()
	switch {
	case seq < st.next:
		if _, ok := st.skipped[seq]; ok {
			delete(st.skipped, seq)
			n.stats.late.Add(1)
			n.dispatchLocked(it)
			return
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
			n.skipGapsLocked(st)
		} else if st.timer == nil {
			// Ask the sender to resend what is missing (after a moment: it
			// may only be late), again at growing intervals, then give it
			// up GapTimeout after the wait began.
			st.gapSince, st.asks = time.Now(), 0
			st.timer = time.AfterFunc(n.resendDelay(), func() { n.onStreamTimer(st) })
		}
	}
}

// retireStreamLocked ends a stream whose sender has restarted: what it
// held back is delivered (its sender will send nothing more to fill the
// gaps) and it is forgotten.
func (n *Node) retireStreamLocked(key streamKey) {
	if st := n.streams[key]; st != nil {
		n.skipGapsLocked(st)
		delete(n.streams, key)
	}
	delete(n.retired, key)
}

// drainLocked delivers consecutive held-back envelopes. The gap timer keeps
// running while envelopes are still held back, and stops when none is.
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
	if len(st.pending) == 0 && st.timer != nil {
		st.timer.Stop()
		st.timer = nil
	}
}

func (n *Node) onStreamTimer(st *inStream) {
	n.inMu.Lock()
	defer n.inMu.Unlock()
	st.timer = nil
	if n.streams[st.key] != st || len(st.pending) == 0 {
		return
	}
	if left := n.cfg.GapTimeout - time.Since(st.gapSince); left > 0 {
		n.requestResendLocked(st)
		st.asks++
		st.timer = time.AfterFunc(min(n.resendDelay()<<st.asks, left), func() { n.onStreamTimer(st) })
		return
	}
	n.stats.gapWaits.Add(1)
	n.skipGapsLocked(st)
}

// resendDelay is how long a gap waits before its envelopes are asked for
// again: longer than NSQ's usual reordering, well inside GapTimeout.
func (n *Node) resendDelay() time.Duration { return min(100*time.Millisecond, n.cfg.GapTimeout/4) }

// skipGapsLocked gives up every missing sequence number below the newest
// held-back envelope at once and delivers everything held back, in order:
// a stream waits at most one gap timeout, however many envelopes went
// missing. The numbers given up are remembered, so an envelope that does
// arrive later is delivered (late) rather than mistaken for a duplicate.
func (n *Node) skipGapsLocked(st *inStream) {
	if st.timer != nil {
		st.timer.Stop()
		st.timer = nil
	}
	if len(st.pending) == 0 {
		return
	}
	keys := make([]uint64, 0, len(st.pending))
	for k := range st.pending {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if st.skipped == nil {
		st.skipped = make(map[uint64]struct{})
	}
	from, missing := st.next, uint64(0)
	for next, i := st.next, 0; i < len(keys); i++ {
		for s := next; s < keys[i]; s++ {
			if len(st.skipped) < maxRemembered {
				st.skipped[s] = struct{}{}
			}
			missing++
		}
		next = keys[i] + 1
	}
	n.stats.gapsSkipped.Add(missing) // before anything is delivered: whoever sees it sees the count
	for _, k := range keys {
		n.dispatchLocked(st.pending[k])
		delete(st.pending, k)
		st.next = k + 1
	}
	n.log.Warn("inbound stream gap skipped", "from", st.key.service+"/"+st.key.node,
		"missing", missing, "first_missing", from, "delivered_up_to", st.next-1)
}

// flushStreamsLocked delivers everything held back, in order, regardless
// of gaps (used when the node stops consuming).
func (n *Node) flushStreamsLocked() {
	for _, st := range n.streams {
		n.skipGapsLocked(st)
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
	if p, ok := it.msg.(*probe); ok && w.From == n.addr {
		if p.Sent > n.probeGot.Load() {
			n.probeGot.Store(p.Sent)
		}
		return
	}
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
			(*fn)(w.From, w.Epoch, w.To, it.msg, err)
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
