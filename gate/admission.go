package gate

import (
	"sync/atomic"
)

// Connection caps. Every client connection holds a slot from accept to
// close: it counts against MaxConns all along and against MaxPending until
// it has authenticated. A connection over either cap is refused at once
// (counted in citadel_gate_refused_total), so a flood of connections that
// never log in cannot crowd out players or the process's open files.
type admission struct {
	maxConns, maxPending int64
	conns, pending       atomic.Int64
}

// Refusal reasons (the label of citadel_gate_refused_total).
const (
	refusedMaxConns   = "max_conns"
	refusedMaxPending = "max_pending"
)

// slot is one admitted connection's place under the caps.
type slot struct {
	a          *admission
	authorized atomic.Bool // no longer pending
	released   atomic.Bool
}

// admit takes a slot for a new connection, or returns the cap it would
// exceed.
func (a *admission) admit() (*slot, string) {
	if a.conns.Add(1) > a.maxConns {
		a.conns.Add(-1)
		return nil, refusedMaxConns
	}
	if a.pending.Add(1) > a.maxPending {
		a.pending.Add(-1)
		a.conns.Add(-1)
		return nil, refusedMaxPending
	}
	return &slot{a: a}, ""
}

// authenticated moves the slot out of the pending count (once).
func (s *slot) authenticated() {
	if s != nil && s.authorized.CompareAndSwap(false, true) { // whoever flips it leaves pending
		s.a.pending.Add(-1)
	}
}

// release gives the slot back when the connection is closed (once).
func (s *slot) release() {
	if s == nil || !s.released.CompareAndSwap(false, true) {
		return
	}
	if s.authorized.CompareAndSwap(false, true) {
		s.a.pending.Add(-1)
	}
	s.a.conns.Add(-1)
}
