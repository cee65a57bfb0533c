package framework

import "testing"

func TestMailboxIsFIFOBoundedAndStartsOneConsumerAtATime(t *testing.T) {
	m := newMailbox(1000)
	for i := 0; i < 1000; i++ {
		res, start := m.push(envelope{msg: i}, false)
		if res != pushed {
			t.Fatalf("push %d refused below the bound", i)
		}
		// Only the first push finds no consumer running.
		if start != (i == 0) {
			t.Fatalf("push %d: start %v", i, start)
		}
	}
	if res, _ := m.push(envelope{msg: -1}, false); res != pushFull {
		t.Fatal("push beyond the bound accepted")
	}
	if res, _ := m.push(envelope{sys: sysStop}, true); res != pushed {
		t.Fatal("forced push refused")
	}
	var buf [16]envelope
	next := 0
	for next < 1001 {
		k := m.pop(buf[:], true)
		if k == 0 {
			t.Fatalf("pop found the mailbox empty after %d of 1001", next)
		}
		for _, env := range buf[:k] {
			if next == 1000 && env.sys != sysStop || next < 1000 && env.msg != next {
				t.Fatalf("envelope %d is %+v", next, env)
			}
			next++
		}
	}

	// Empty: a look without stop keeps the consumer; with stop it is told
	// to go, and the burst's ring goes too.
	if k := m.pop(buf[:], false); k != 0 {
		t.Fatalf("pop on an empty mailbox returned %d", k)
	}
	if _, start := m.push(envelope{msg: 0}, false); start {
		t.Fatal("a consumer that only looked was replaced")
	}
	if k := m.pop(buf[:], true); k != 1 {
		t.Fatalf("pop returned %d, want the 1 queued", k)
	}
	if k := m.pop(buf[:], true); k != 0 {
		t.Fatalf("pop on an empty mailbox returned %d", k)
	}
	m.mu.Lock()
	ring, running := len(m.ring), m.running
	m.mu.Unlock()
	if ring != 0 || running {
		t.Fatalf("idle mailbox keeps a ring of %d (running %v)", ring, running)
	}
	// The next message needs a consumer again, once.
	if _, start := m.push(envelope{msg: 1}, false); !start {
		t.Fatal("push to an idle mailbox did not ask for a consumer")
	}
	if _, start := m.push(envelope{msg: 2}, false); start {
		t.Fatal("second push asked for another consumer while one runs")
	}

	// Closed: what was queued comes back, nothing more is taken.
	if rest := m.close(); len(rest) != 2 || rest[0].msg != 1 || rest[1].msg != 2 {
		t.Fatalf("close returned %+v", rest)
	}
	if res, start := m.push(envelope{msg: 3}, true); res != pushClosed || start {
		t.Fatalf("push after close: %v, start %v", res, start)
	}

	// Drop-oldest keeps the newest.
	d := newMailbox(2)
	d.push(envelope{msg: 1}, false)
	d.push(envelope{msg: 2}, false)
	if old, ok, _, _ := d.pushDropOldest(envelope{msg: 3}); !ok || old.msg != 1 {
		t.Fatalf("dropped %v %v, want 1", old.msg, ok)
	}
	if rest := d.close(); len(rest) != 2 || rest[0].msg != 2 || rest[1].msg != 3 {
		t.Fatalf("left %+v", rest)
	}
}
