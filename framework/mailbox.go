package framework

import "sync"

// mailbox is an actor's bounded FIFO queue. It also decides when the
// actor's goroutine runs: a push that finds no goroutine handling the
// actor's messages asks the caller to start one, and that goroutine exits
// as soon as the queue is empty. So an idle actor holds no goroutine (no
// stack) and no ring: ten thousand idle player actors cost their state and
// a few hundred bytes each, not 8 KiB of stack and 640 bytes of envelopes.
type mailbox struct {
	mu      sync.Mutex
	ring    []envelope // len is a power of two (or 0)
	head, n int
	limit   int
	running bool          // a goroutine handles the actor's messages (or is being started)
	closed  bool          // the actor has exited: nothing more is taken
	space   chan struct{} // closed when a slot frees up; nil if nobody waits
}

// firstRing is the ring allocated for a burst: most bursts of a player
// actor are one message.
const firstRing = 2

func newMailbox(limit int) *mailbox {
	return &mailbox{limit: limit}
}

// pushResult says what push did.
type pushResult int

const (
	pushed pushResult = iota
	pushFull
	pushClosed
)

// push appends env unless the queue holds limit envelopes (force ignores
// the limit: for the stop signal). start reports that no goroutine was
// running: the caller must start one (it is now marked running).
func (m *mailbox) push(env envelope, force bool) (res pushResult, start bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return pushClosed, false
	case m.n >= m.limit && !force:
		return pushFull, false
	}
	m.appendLocked(env)
	return pushed, m.claimLocked()
}

// pushDropOldest appends env, removing the oldest envelope first if the
// queue is full; it returns the removed one.
func (m *mailbox) pushDropOldest(env envelope) (dropped envelope, ok, start, closed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return envelope{}, false, false, true
	}
	if m.n >= m.limit && m.n > 0 {
		dropped, ok = m.popLocked(), true
	}
	m.appendLocked(env)
	return dropped, ok, m.claimLocked(), false
}

// pushWait appends env, waiting for room until done is closed; pushed is
// false if done was closed (or the actor exited) first.
func (m *mailbox) pushWait(env envelope, done <-chan struct{}) (ok, start bool) {
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return false, false
		}
		if m.n < m.limit {
			m.appendLocked(env)
			start = m.claimLocked()
			m.mu.Unlock()
			return true, start
		}
		if m.space == nil {
			m.space = make(chan struct{})
		}
		space := m.space
		m.mu.Unlock()
		select {
		case <-space:
		case <-done:
			return false, false
		}
	}
}

// claimLocked marks the consumer running and reports whether it was not.
func (m *mailbox) claimLocked() bool {
	if m.running {
		return false
	}
	m.running = true
	return true
}

// pop moves the oldest envelopes, up to len(dst), into dst and returns how
// many. When the queue is empty it returns 0, and with stop it also marks
// the consumer stopped: the caller's goroutine must exit, the next push
// starts another. Taking several per lock keeps a busy actor's cost per
// message low.
func (m *mailbox) pop(dst []envelope, stop bool) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == 0 && !stop {
		return 0
	}
	if m.n == 0 {
		m.running = false
		m.ring, m.head = nil, 0 // idle: give the ring back
		return 0
	}
	k := 0
	for k < len(dst) && m.n > 0 {
		dst[k] = m.popLocked()
		k++
	}
	return k
}

// close takes nothing more and returns everything queued.
func (m *mailbox) close() []envelope {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	out := make([]envelope, 0, m.n)
	for m.n > 0 {
		out = append(out, m.popLocked())
	}
	m.ring = nil
	return out
}

func (m *mailbox) appendLocked(env envelope) {
	if m.n == len(m.ring) {
		size := max(firstRing, 2*len(m.ring))
		ring := make([]envelope, size)
		for i := 0; i < m.n; i++ {
			ring[i] = m.ring[(m.head+i)&(len(m.ring)-1)]
		}
		m.ring, m.head = ring, 0
	}
	m.ring[(m.head+m.n)&(len(m.ring)-1)] = env
	m.n++
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
