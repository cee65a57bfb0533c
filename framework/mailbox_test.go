package framework

import (
	"testing"
	"time"
)

func TestMailboxIsFIFOBoundedAndGivesBurstMemoryBack(t *testing.T) {
	m := newMailbox(1000)
	for i := 0; i < 1000; i++ {
		if m.push(envelope{msg: i}, false) != pushed {
			t.Fatalf("push %d refused below the bound", i)
		}
	}
	if m.push(envelope{msg: -1}, false) != pushFull {
		t.Fatal("push beyond the bound accepted")
	}
	if m.push(envelope{sys: sysStop}, true) != pushed {
		t.Fatal("forced push refused")
	}
	var buf [16]envelope
	next := 0
	for next < 1001 {
		k := m.pop(buf[:])
		for _, env := range buf[:k] {
			if next == 1000 && env.sys != sysStop || next < 1000 && env.msg != next {
				t.Fatalf("envelope %d is %+v", next, env)
			}
			next++
		}
	}

	ringLen := func() int {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.ring)
	}
	if ringLen() < 1000 {
		t.Fatalf("ring %d after a burst of 1001", ringLen())
	}
	// Small traffic after the burst: once the consumer waits again, the
	// big ring is dropped.
	got := make(chan int)
	go func() {
		for {
			k := m.pop(buf[:])
			got <- k
			if buf[0].sys == sysStop {
				return
			}
		}
	}()
	for i := 0; i < 3; i++ { // the consumer waits between these
		m.push(envelope{msg: 1}, false)
		<-got
	}
	for i := 0; ringLen() > idleRing; i++ {
		if i > 1000 {
			t.Fatalf("ring still %d after the consumer went idle", ringLen())
		}
		time.Sleep(time.Millisecond)
	}
	m.push(envelope{sys: sysStop}, true)
	<-got

	// Drop-oldest keeps the newest.
	d := newMailbox(2)
	d.push(envelope{msg: 1}, false)
	d.push(envelope{msg: 2}, false)
	if old, ok := d.pushDropOldest(envelope{msg: 3}); !ok || old.msg != 1 {
		t.Fatalf("dropped %v %v, want 1", old.msg, ok)
	}
	if rest := d.drain(); len(rest) != 2 || rest[0].msg != 2 || rest[1].msg != 3 {
		t.Fatalf("left %+v", rest)
	}
}
