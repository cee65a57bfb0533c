package framework

import "sync"

// mailbox is an actor's bounded FIFO queue. Unlike a buffered channel it
// holds only what is queued: its ring grows on demand up to the bound and
// is released when the actor catches up, so ten thousand idle actors with a
// bound of 1024 cost a few hundred bytes each, not 80 KiB of envelopes the
// garbage collector must scan on every cycle.
type mailbox struct {
	mu      sync.Mutex
	ring    []envelope // len is a power of two (or 0)
	head, n int
	peak    int // the most queued since the consumer last waited
	limit   int
	parked  bool          // the consumer waits on wake
	wake    chan struct{} // capacity 1
	space   chan struct{} // closed when a slot frees up; nil if nobody waits
}

// idleRing is the smallest ring. A larger one is dropped when the actor
// goes idle (waits for a message) after using at most a quarter of it since
// it last waited, so a burst's memory goes back once the bursts stop.
const idleRing = 8

func newMailbox(limit int) *mailbox {
	return &mailbox{limit: limit, wake: make(chan struct{}, 1)}
}

// pushResult says what push did.
type pushResult int

const (
	pushed pushResult = iota
	pushFull
)

// push appends env unless the queue holds limit envelopes (force ignores
// the limit: for the stop signal).
func (m *mailbox) push(env envelope, force bool) pushResult {
	m.mu.Lock()
	if m.n >= m.limit && !force {
		m.mu.Unlock()
		return pushFull
	}
	m.appendLocked(env)
	m.wakeLocked()
	return pushed
}

// pushDropOldest appends env, removing the oldest envelope first if the
// queue is full; it returns the removed one.
func (m *mailbox) pushDropOldest(env envelope) (dropped envelope, ok bool) {
	m.mu.Lock()
	if m.n >= m.limit && m.n > 0 {
		dropped, ok = m.popLocked(), true
	}
	m.appendLocked(env)
	m.wakeLocked()
	return dropped, ok
}

// pushWait appends env, waiting for room until done is closed; false means
// done was closed first.
func (m *mailbox) pushWait(env envelope, done <-chan struct{}) bool {
	for {
		m.mu.Lock()
		if m.n < m.limit {
			m.appendLocked(env)
			m.wakeLocked()
			return true
		}
		if m.space == nil {
			m.space = make(chan struct{})
		}
		space := m.space
		m.mu.Unlock()
		select {
		case <-space:
		case <-done:
			return false
		}
	}
}

// pop waits for envelopes and moves the oldest ones, up to len(dst), into
// dst; it returns how many. Taking several per lock keeps a busy actor's
// cost per message low.
func (m *mailbox) pop(dst []envelope) int {
	m.mu.Lock()
	for m.n == 0 {
		if len(m.ring) > idleRing && 4*m.peak <= len(m.ring) {
			m.ring, m.head = nil, 0 // bursts are over: give their memory back
		}
		m.peak = 0
		m.parked = true
		m.mu.Unlock()
		<-m.wake
		m.mu.Lock()
	}
	k := 0
	for k < len(dst) && m.n > 0 {
		dst[k] = m.popLocked()
		k++
	}
	m.mu.Unlock()
	return k
}

// drain removes and returns everything queued.
func (m *mailbox) drain() []envelope {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]envelope, 0, m.n)
	for m.n > 0 {
		out = append(out, m.popLocked())
	}
	return out
}

func (m *mailbox) appendLocked(env envelope) {
	if m.n == len(m.ring) {
		size := max(idleRing, 2*len(m.ring))
		ring := make([]envelope, size)
		for i := 0; i < m.n; i++ {
			ring[i] = m.ring[(m.head+i)&(len(m.ring)-1)]
		}
		m.ring, m.head = ring, 0
	}
	m.ring[(m.head+m.n)&(len(m.ring)-1)] = env
	m.n++
	m.peak = max(m.peak, m.n)
}

func (m *mailbox) popLocked() envelope {
	env := m.ring[m.head]
	m.ring[m.head] = envelope{}
	m.head = (m.head + 1) & (len(m.ring) - 1)
	m.n--
	if m.space != nil {
		close(m.space)
		m.space = nil
	}
	return env
}

// wakeLocked releases m.mu and wakes the consumer if it is parked.
func (m *mailbox) wakeLocked() {
	parked := m.parked
	m.parked = false
	m.mu.Unlock()
	if parked {
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
}
