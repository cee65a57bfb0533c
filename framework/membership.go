package framework

import (
	"fmt"
	"github.com/citadel-go/citadel/framework/bounded"
	"maps"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citadel-go/citadel/mq"
	"github.com/vmihailenco/msgpack/v5"
)

// MembersTopic carries every node's heartbeats.
const MembersTopic = "citadel.members"

// Member is a live node as seen through its heartbeats.
type Member struct {
	Service string
	Node    string
	// Epoch changes every time the node process starts.
	Epoch uint64
	// Meta is what the node advertises (NodeConfig.Meta, SetMeta).
	Meta map[string]string
	// Load is the node's self-reported load (SetLoad), e.g. sessions.
	Load int64
	// LastSeen is when its last heartbeat arrived.
	LastSeen time.Time
	// Suspect: no heartbeat for MemberTTL. A suspect node stays a member
	// (messages still reach it, nobody acts as if it were dead) but Pick
	// avoids it. A node with a store lease (Leased) stays suspect until
	// its lease is found ended (Bury), a newer incarnation appears or it
	// says goodbye; a node without one is dropped DeadAfter later.
	Suspect bool
	// Draining: the node is handing its work to others before it stops
	// (SetDraining); Pick and Alive avoid it.
	Draining bool
	// Leased: the node holds a store lease, so only the store can say it
	// is dead (NodeConfig.Incarnation was issued by the store).
	Leased bool
}

// Addr returns the member's node address.
func (m Member) Addr() Addr { return Addr{Service: m.Service, Node: m.Node} }

// MemberEventKind says what happened to a member.
type MemberEventKind int

const (
	// MemberJoined: a node (or a new incarnation of it) appeared.
	MemberJoined MemberEventKind = iota + 1
	// MemberLeft: a node said goodbye, was buried (its store lease ended,
	// see Bury), was replaced by a new incarnation, or (without a lease)
	// stayed silent for DeadAfter.
	MemberLeft
	// MemberSuspect: a node's heartbeats stopped for MemberTTL. It may be
	// only slow: hold its work, do not hand it to others.
	MemberSuspect
	// MemberRecovered: a suspect node's heartbeats arrive again.
	MemberRecovered
	// MemberChanged: a node started or stopped draining.
	MemberChanged
)

func (k MemberEventKind) String() string {
	switch k {
	case MemberJoined:
		return "joined"
	case MemberLeft:
		return "left"
	case MemberSuspect:
		return "suspect"
	case MemberRecovered:
		return "recovered"
	case MemberChanged:
		return "changed"
	}
	return fmt.Sprintf("member_event(%d)", int(k))
}

// MemberEvent is passed to Watch callbacks.
type MemberEvent struct {
	Kind   MemberEventKind
	Member Member
}

type heartbeat struct {
	_msgpack struct{} `msgpack:",as_array"`
	Service  string
	Node     string
	Epoch    uint64
	Meta     map[string]string
	Load     int64
	TTLms    int64
	Leaving  bool
	Draining bool
	Leased   bool
	// Obituary: another node says this incarnation is dead (its store
	// lease ended); sent with Leaving.
	Obituary bool
}

type memberEntry struct {
	m       Member
	expires time.Time
}

// Membership tracks which nodes of which service are alive: every node
// publishes a heartbeat each HeartbeatInterval and is dropped MemberTTL
// after its last one (or at once when it leaves cleanly).
type Membership struct {
	n *Node

	mu       sync.Mutex
	members  map[nodeKey]*memberEntry
	rings    map[string]*Ring
	watchers map[int]func(MemberEvent)
	nextW    int
	meta     map[string]string
	load     int64
	draining bool
	// dead holds, per node, the newest incarnation known to be over: its
	// late heartbeats never bring it back.
	dead map[nodeKey]uint64
	// behind is set while this node's own heartbeats do not come back
	// within MemberTTL: its view of the others is stale, so it suspects
	// nobody.
	behind bool
	// epochs maps every live node to its incarnation, for addressing
	// envelopes without taking mu on every send.
	epochs atomic.Pointer[map[nodeKey]uint64]
	// heard holds incarnations learnt from envelopes of nodes whose
	// heartbeat has not arrived yet (a node that just started can answer
	// the nodes that talk to it at once); each lasts MemberTTL.
	heard map[nodeKey]heardEpoch

	sub            *mq.Subscription
	stopHB         chan struct{}
	hbDone         chan struct{}
	publishFailing atomic.Bool // the last heartbeat could not be published
	// soon asks the heartbeat loop for an early heartbeat: when a node we
	// did not know appears, answering at once lets it learn about us in one
	// round trip instead of a heartbeat interval.
	soon chan struct{}
}

func newMembership(n *Node) *Membership {
	return &Membership{
		n:        n,
		members:  make(map[nodeKey]*memberEntry),
		rings:    make(map[string]*Ring),
		watchers: make(map[int]func(MemberEvent)),
		meta:     maps.Clone(n.cfg.Meta),
		dead:     make(map[nodeKey]uint64),
		soon:     make(chan struct{}, 1),
	}
}

func (m *Membership) start() error {
	channel := m.n.cfg.Service + "." + m.n.cfg.ID + "#ephemeral"
	// A heartbeat is fresh or useless: one replayed (or older than a
	// minute of clock skew) is dropped by the mq layer.
	sub, err := m.n.bus.Subscribe(MembersTopic, channel, m.onHeartbeat,
		mq.SubscribeOptions{MaxInFlight: 64, Unique: true, MaxAge: time.Minute})
	if err != nil {
		return fmt.Errorf("framework: join membership: %w", err)
	}
	m.sub = sub
	return nil
}

// announce adds this node, publishes its first heartbeat and keeps
// publishing.
func (m *Membership) announce() error {
	hb := m.heartbeat(false)
	m.apply(hb, time.Now())
	if err := m.publish(hb); err != nil {
		return err
	}
	m.stopHB = make(chan struct{})
	m.hbDone = make(chan struct{})
	go m.loop()
	return nil
}

func (m *Membership) loop() {
	defer close(m.hbDone)
	t := time.NewTicker(m.n.cfg.HeartbeatInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-m.stopHB:
			return
		case <-m.soon:
			if err := m.publish(m.heartbeat(false)); err != nil && !failing {
				m.n.log.Warn("heartbeat publish failed", "err", err)
			}
		case now := <-t.C:
			if err := m.publish(m.heartbeat(false)); err != nil {
				if !failing {
					m.n.log.Warn("heartbeat publish failed", "err", err)
				}
				failing = true
			} else if failing {
				m.n.log.Info("heartbeat publish recovered")
				failing = false
			}
			m.publishFailing.Store(failing)
			m.n.sendProbe()
			m.expire(now)
		}
	}
}

// leave stops heartbeats and tells the others this node is going.
func (m *Membership) leave() {
	if m.stopHB == nil {
		return
	}
	close(m.stopHB)
	<-m.hbDone
	m.stopHB = nil
	if err := m.publish(m.heartbeat(true)); err != nil {
		m.n.log.Warn("leave announcement failed; others will expire this node after its TTL", "err", err)
	}
}

func (m *Membership) stop() {
	if m.sub != nil {
		m.sub.Stop()
	}
}

func (m *Membership) heartbeat(leaving bool) heartbeat {
	m.mu.Lock()
	defer m.mu.Unlock()
	return heartbeat{Service: m.n.cfg.Service, Node: m.n.cfg.ID, Epoch: m.n.epoch, Meta: maps.Clone(m.meta),
		Load: m.load, TTLms: m.n.cfg.MemberTTL.Milliseconds(), Leaving: leaving, Draining: m.draining, Leased: m.n.leased}
}

func (m *Membership) publish(hb heartbeat) error {
	body, err := msgpack.Marshal(&hb)
	if err != nil {
		return err
	}
	return m.n.bus.Publish(MembersTopic, body)
}

func (m *Membership) onHeartbeat(msg *mq.Message) error {
	var hb heartbeat
	if err := bounded.Unmarshal(msg.Body, &hb); err != nil {
		m.n.badEnvelope(msg, fmt.Errorf("undecodable heartbeat: %w", err))
		return nil
	}
	if validateNodeName("service", hb.Service) != nil || validateNodeName("node", hb.Node) != nil || hb.Epoch == 0 {
		m.n.badEnvelope(msg, fmt.Errorf("heartbeat with bad identity %q/%q epoch %d", hb.Service, hb.Node, hb.Epoch))
		return nil
	}
	m.apply(hb, time.Now())
	return nil
}

// apply records a heartbeat and notifies watchers of any change.
func (m *Membership) apply(hb heartbeat, now time.Time) {
	k := nodeKey{hb.Service, hb.Node}
	self := hb.Service == m.n.cfg.Service && hb.Node == m.n.cfg.ID
	var events []MemberEvent
	m.mu.Lock()
	cur, ok := m.members[k]
	switch {
	case hb.Epoch <= m.dead[k]:
		// An incarnation that is over (said goodbye, buried, replaced):
		// a late heartbeat of it never brings it back.
	case ok && hb.Epoch < cur.m.Epoch:
		// From an earlier incarnation (delayed, or its goodbye arriving
		// after the new one's hello): the newer one stays.
	case hb.Obituary && self:
		// Another node found this node's lease over: the lease keeper
		// fences it; until then it is still itself.
	case hb.Leaving:
		if !hb.Obituary {
			// Gone for good. A buried node is not: if the store was wrong
			// about it (it was only slow), its next heartbeat brings it
			// back, and it can be asked for its players again.
			m.dead[k] = hb.Epoch
		}
		if ok && cur.m.Epoch == hb.Epoch {
			delete(m.members, k)
			events = append(events, MemberEvent{MemberLeft, cur.m})
		}
	case ok && cur.m.Epoch == hb.Epoch:
		cur.m.Meta, cur.m.Load, cur.m.LastSeen, cur.m.Leased = hb.Meta, hb.Load, now, hb.Leased
		cur.expires = now.Add(time.Duration(hb.TTLms) * time.Millisecond)
		if cur.m.Suspect {
			cur.m.Suspect = false
			events = append(events, MemberEvent{MemberRecovered, cur.m})
		}
		if cur.m.Draining != hb.Draining {
			cur.m.Draining = hb.Draining
			events = append(events, MemberEvent{MemberChanged, cur.m})
		}
	default:
		if ok {
			m.dead[k] = cur.m.Epoch
			events = append(events, MemberEvent{MemberLeft, cur.m})
		}
		e := &memberEntry{
			m: Member{Service: hb.Service, Node: hb.Node, Epoch: hb.Epoch, Meta: hb.Meta, Load: hb.Load, LastSeen: now,
				Draining: hb.Draining, Leased: hb.Leased},
			expires: now.Add(time.Duration(hb.TTLms) * time.Millisecond),
		}
		m.members[k] = e
		events = append(events, MemberEvent{MemberJoined, e.m})
		if !self {
			select {
			case m.soon <- struct{}{}:
			default:
			}
		}
	}
	if len(events) > 0 {
		delete(m.rings, hb.Service)
		m.snapshotEpochs()
	}
	watchers := m.watcherList()
	m.mu.Unlock()
	m.notify(watchers, events)
}

// Bury announces that a suspect member is dead because its store lease is
// over (ended, expired, or superseded): every node drops it (MemberLeft).
// Only the store may say so: a node without a lease is dropped after
// DeadAfter instead. A buried node that beats again joins again (a node
// whose lease really ended stops on its own).
func (m *Membership) Bury(member Member) error {
	hb := heartbeat{Service: member.Service, Node: member.Node, Epoch: member.Epoch, Leaving: true, Obituary: true, Leased: true}
	m.apply(hb, time.Now())
	return m.publish(hb)
}

// SetDraining marks this node as draining (or not) from the next heartbeat
// on, which goes out at once: Pick on every node stops (or starts again)
// choosing it for new work.
func (m *Membership) SetDraining(draining bool) {
	m.mu.Lock()
	m.draining = draining
	m.mu.Unlock()
	self := m.heartbeat(false)
	m.apply(self, time.Now())
	select {
	case m.soon <- struct{}{}:
	default:
	}
}

// snapshotEpochs publishes the members' incarnations (m.mu held).
func (m *Membership) snapshotEpochs() {
	e := make(map[nodeKey]uint64, len(m.members)+len(m.heard))
	for k, h := range m.heard {
		e[k] = h.epoch
	}
	for k, v := range m.members {
		e[k] = v.m.Epoch
	}
	m.epochs.Store(&e)
}

type heardEpoch struct {
	epoch   uint64
	expires time.Time
}

// heardFrom records the incarnation of a node an authentic envelope came
// from, for a node membership does not know (yet): replies and pushes to
// it can be addressed before its first heartbeat arrives.
func (m *Membership) heardFrom(k nodeKey, epoch uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.members[k]; ok && e.m.Epoch >= epoch {
		return
	}
	if m.heard == nil {
		m.heard = make(map[nodeKey]heardEpoch)
	}
	m.heard[k] = heardEpoch{epoch: epoch, expires: time.Now().Add(m.n.cfg.MemberTTL)}
	m.snapshotEpochs()
}

// epochOf is the incarnation of a live node, or 0 if it is not known.
func (m *Membership) epochOf(service, node string) uint64 {
	if e := m.epochs.Load(); e != nil {
		return (*e)[nodeKey{service, node}]
	}
	return 0
}

func (m *Membership) expire(now time.Time) {
	var events []MemberEvent
	m.mu.Lock()
	ttl := m.n.cfg.MemberTTL
	selfKey := nodeKey{m.n.cfg.Service, m.n.cfg.ID}
	// A node whose own heartbeats are late coming back (its consumer or
	// its CPU is behind) would suspect everyone else for its own delay.
	if self, ok := m.members[selfKey]; ok {
		behind := now.Sub(self.m.LastSeen) > ttl
		if behind != m.behind {
			m.behind = behind
			if behind {
				m.n.log.Warn("this node's own heartbeats are late; suspecting no other node until they arrive", "last_seen", self.m.LastSeen)
			}
		}
	}
	for k, e := range m.members {
		if k == selfKey || !now.After(e.expires) {
			continue
		}
		switch {
		case !e.m.Suspect && !m.behind:
			e.m.Suspect = true
			delete(m.rings, k.service)
			events = append(events, MemberEvent{MemberSuspect, e.m})
			m.n.log.Warn("member suspect: no heartbeat", "member", k.service+"/"+k.node, "last_seen", e.m.LastSeen)
		case e.m.Suspect && !e.m.Leased && now.After(e.expires.Add(m.n.cfg.DeadAfter)):
			delete(m.members, k)
			delete(m.rings, k.service)
			m.dead[k] = e.m.Epoch
			events = append(events, MemberEvent{MemberLeft, e.m})
			m.n.log.Warn("member dropped: no heartbeat", "member", k.service+"/"+k.node, "last_seen", e.m.LastSeen)
		}
	}
	expired := false
	for k, h := range m.heard {
		if _, member := m.members[k]; member || now.After(h.expires) {
			delete(m.heard, k)
			expired = true
		}
	}
	if len(events) > 0 || expired {
		m.snapshotEpochs()
	}
	watchers := m.watcherList()
	m.mu.Unlock()
	m.notify(watchers, events)
}

func (m *Membership) watcherList() []func(MemberEvent) {
	out := make([]func(MemberEvent), 0, len(m.watchers))
	for _, w := range m.watchers {
		out = append(out, w)
	}
	return out
}

func (m *Membership) notify(watchers []func(MemberEvent), events []MemberEvent) {
	for _, ev := range events {
		if ev.Kind == MemberLeft {
			m.n.failCallsTo(ev.Member)
		}
		m.n.log.Info("membership changed", "event", ev.Kind.String(), "member", ev.Member.Service+"/"+ev.Member.Node)
		for _, w := range watchers {
			w(ev)
		}
	}
}

// Watch calls fn for every join and leave from now on, on the membership
// goroutine: fn must not block. The returned function stops the calls.
func (m *Membership) Watch(fn func(MemberEvent)) (cancel func()) {
	m.mu.Lock()
	id := m.nextW
	m.nextW++
	m.watchers[id] = fn
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		delete(m.watchers, id)
		m.mu.Unlock()
	}
}

// Alive lists the nodes of service that take new work (neither suspect
// nor draining), sorted by node name.
func (m *Membership) Alive(service string) []Member {
	return m.list(service, false)
}

// All lists every member of service, suspect and draining ones included,
// sorted by node name.
func (m *Membership) All(service string) []Member {
	return m.list(service, true)
}

func (m *Membership) list(service string, all bool) []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Member
	for k, e := range m.members {
		if k.service == service && (all || !(e.m.Suspect || e.m.Draining)) {
			out = append(out, e.m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// Get returns one member (suspect or draining ones too).
func (m *Membership) Get(service, node string) (Member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.members[nodeKey{service, node}]
	if !ok {
		return Member{}, false
	}
	return e.m, true
}

// Pick maps key (a player ID) to a node of service that takes new work
// (neither suspect nor draining; a suspect one if that is all there is)
// with a consistent hash, so that a change in the service's nodes moves as
// few keys as possible. ok is false when no such node exists.
func (m *Membership) Pick(service, key string) (Member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rings[service]
	if !ok {
		var nodes, suspect []string
		for k, e := range m.members {
			switch {
			case k.service != service || e.m.Draining:
			case e.m.Suspect:
				suspect = append(suspect, k.node)
			default:
				nodes = append(nodes, k.node)
			}
		}
		if len(nodes) == 0 {
			// Every node is suspect (or this one is too slow to hear them):
			// one that may be only slow is better than none.
			nodes = suspect
		}
		r = NewRing(nodes, DefaultReplicas)
		m.rings[service] = r
	}
	node, ok := r.Get(key)
	if !ok {
		return Member{}, false
	}
	return m.members[nodeKey{service, node}].m, true
}

// HeartbeatInterval is how often nodes announce themselves.
func (m *Membership) HeartbeatInterval() time.Duration { return m.n.cfg.HeartbeatInterval }

// SetLoad sets the load this node reports from its next heartbeat on.
func (m *Membership) SetLoad(load int64) {
	m.mu.Lock()
	m.load = load
	m.mu.Unlock()
}

// SetMeta sets one advertised key and announces it with an early
// heartbeat: a node that starts its listeners after joining (a gate's
// client addresses) is not seen without them for a heartbeat interval.
func (m *Membership) SetMeta(key, value string) {
	m.mu.Lock()
	if m.meta == nil {
		m.meta = make(map[string]string)
	}
	m.meta[key] = value
	m.mu.Unlock()
	select {
	case m.soon <- struct{}{}:
	default: // an early heartbeat is due already
	}
}
