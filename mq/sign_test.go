package mq

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/citadel-go/citadel/mq/mqtest"
)

func waitRejected(t testing.TB, bus *Bus, reason string, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for bus.Stats().Rejected[reason] < n {
		if time.Now().After(deadline) {
			t.Fatalf("rejected %v, want %d %s", bus.Stats().Rejected, n, reason)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func nothing(t testing.TB, ch chan string) {
	t.Helper()
	select {
	case got := <-ch:
		t.Fatalf("a handler got %q", got)
	case <-time.After(200 * time.Millisecond):
	}
}

// Only messages sealed with a cluster key reach a handler: unsigned ones
// (a POST to nsqd), ones sealed with another key or moved to another topic
// are dropped and counted, and never requeued.
func TestUnsealedMessagesReachNoHandler(t *testing.T) {
	b := startTestBroker(t, BrokerConfig{NoLookupd: true})
	bus := newTestBus(t, b.BusConfig())
	got := collect(t, bus, "sealed", "c", SubscribeOptions{})
	raw := mqtest.Spy(t, b.TCPAddr(), b.HTTPAddr(), "sealed")

	bus.Publish("sealed", []byte("honest"))
	expect(t, got, "honest")
	honest := <-raw
	if len(honest) != SealSize+len("honest") {
		t.Fatalf("sealed body of %d bytes", len(honest))
	}

	mqtest.Publish(t, b.HTTPAddr(), "sealed", []byte("forged"))
	waitRejected(t, bus, RejectUnsigned, 1)

	tampered := bytes.Clone(honest)
	tampered[len(tampered)-1] ^= 1
	mqtest.Publish(t, b.HTTPAddr(), "sealed", tampered)
	waitRejected(t, bus, RejectBadSignature, 1)

	other, err := ParseKeyring(GenerateKeyring()) // same key ID, another secret
	if err != nil {
		t.Fatal(err)
	}
	mqtest.Publish(t, b.HTTPAddr(), "sealed", newSigner(other).seal("sealed", []byte("outsider")))
	waitRejected(t, bus, RejectBadSignature, 2)

	mqtest.Publish(t, b.HTTPAddr(), "elsewhere", honest) // a signed message moved to another topic
	elsewhere := collect(t, bus, "elsewhere", "c", SubscribeOptions{})
	waitRejected(t, bus, RejectBadSignature, 3)
	nothing(t, elsewhere)
	nothing(t, got)
	if st, _ := b.ChannelStats("sealed", "c"); st.Requeues != 0 {
		t.Fatalf("rejected messages were requeued: %+v", st)
	}
}

// During a key rotation a cluster accepts two keys: a process that signs
// with the new key is understood by one that still signs with the old
// one, and a process without the new key rejects it by key ID.
func TestKeyRotation(t *testing.T) {
	old, err := ParseKeyring(GenerateKeyring())
	if err != nil {
		t.Fatal(err)
	}
	newKey := Key{ID: 2, Secret: bytes.Repeat([]byte{7}, MinKeyLen)}
	rotated, err := NewKeyring(newKey, Key{ID: old.SigningKeyID(), Secret: old.accept[old.SigningKeyID()]})
	if err != nil {
		t.Fatal(err)
	}
	b := startTestBroker(t, BrokerConfig{NoLookupd: true})
	cfg := func(k *Keyring) BusConfig { c := b.BusConfig(); c.Keys = k; return c }
	oldBus, newBus := newTestBus(t, cfg(old)), newTestBus(t, cfg(rotated))
	fromOld := collect(t, newBus, "rot", "new", SubscribeOptions{})
	fromNew := collect(t, oldBus, "rot", "old", SubscribeOptions{})
	oldBus.Publish("rot", []byte("signed with 1"))
	expect(t, fromOld, "signed with 1")
	expect(t, fromNew, "signed with 1")
	newBus.Publish("rot", []byte("signed with 2"))
	expect(t, fromOld, "signed with 2") // the rotated bus reads its own
	waitRejected(t, oldBus, RejectUnknownKey, 1)
	nothing(t, fromNew)
}

// A subscription with Unique drops a replayed message; with MaxAge it
// drops one published too long ago. A handler's failure un-claims its
// message so NSQ's redelivery still gets through.
func TestReplayAndAgeLimits(t *testing.T) {
	b := startTestBroker(t, BrokerConfig{NoLookupd: true})
	bus := newTestBus(t, b.BusConfig())
	got := collect(t, bus, "fan", "c", SubscribeOptions{Unique: true, MaxAge: time.Minute})
	raw := mqtest.Spy(t, b.TCPAddr(), b.HTTPAddr(), "fan")
	bus.Publish("fan", []byte("once"))
	expect(t, got, "once")
	captured := <-raw
	mqtest.Publish(t, b.HTTPAddr(), "fan", captured)
	waitRejected(t, bus, RejectReplayed, 1)
	nothing(t, got)

	stale := make([]byte, SealSize, SealSize+5)
	stale = append(stale, "stale"...)
	bus.sign.sealAt("fan", stale, time.Now().Add(-2*time.Minute))
	mqtest.Publish(t, b.HTTPAddr(), "fan", stale)
	waitRejected(t, bus, RejectExpired, 1)
	nothing(t, got)

	tries := make(chan int, 10)
	n := 0
	if _, err := bus.Subscribe("flaky", "c", func(m *Message) error {
		n++
		tries <- n
		if n == 1 {
			return context.DeadlineExceeded // fails once: requeued
		}
		return nil
	}, SubscribeOptions{Unique: true, MaxAge: time.Minute, RequeueDelay: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	bus.Publish("flaky", []byte("x"))
	for want := 1; want <= 2; want++ {
		select {
		case got := <-tries:
			if got != want {
				t.Fatalf("attempt %d, want %d", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("attempt %d never came (the redelivery was taken for a replay?)", want)
		}
	}
}

func TestReplayWindow(t *testing.T) {
	var r replayWindow
	now := time.Now()
	for _, c := range []uint64{5, 3, 4, 1, 2, 6000} {
		if !r.claim(9, c, now, time.Minute) {
			t.Fatalf("first sight of %d refused", c)
		}
	}
	for _, c := range []uint64{5, 6000, 1} { // 1 is now out of the window
		if r.claim(9, c, now, time.Minute) {
			t.Fatalf("%d accepted twice", c)
		}
	}
	if !r.claim(9, 5999, now, time.Minute) || !r.claim(10, 5, now, time.Minute) {
		t.Fatal("an unseen counter or another publisher refused")
	}
	r.unclaim(9, 5999)
	if !r.claim(9, 5999, now, time.Minute) {
		t.Fatal("an unclaimed counter refused")
	}
}

// FuzzVerify: whatever the bytes, verify returns a body or an error,
// never panics, and accepts only what was sealed with the key.
func FuzzVerify(f *testing.F) {
	s := newSigner(testKeys)
	f.Add(s.seal("t", []byte("hello")))
	f.Add([]byte{0xc1, 'S', 1, 1})
	f.Add(append([]byte{0x00, 'C', 'P', 'K'}, 5, 'h', 'e', 'l', 'l', 'o'))
	f.Fuzz(func(t *testing.T, msg []byte) {
		body, _, err := s.verify("t", msg)
		if err != nil {
			return
		}
		s.mac(msg[3], "t", msg[:sealMACAt], body, func(sum []byte) {
			if !bytes.Equal(sum, msg[sealMACAt:SealSize]) {
				t.Fatal("accepted a message whose MAC does not match")
			}
		})
	})
}

// FuzzSplitPack: no panic, the parts are no more, and hold no more bytes,
// than the body has, and splitting allocates in proportion to the body.
func FuzzSplitPack(f *testing.F) {
	f.Add(appendPacked(appendPacked(append([]byte(nil), packMagic...), []byte("a")), []byte("bc")))
	f.Add(append(append([]byte(nil), packMagic...), 0xff, 0xff, 0xff, 0xff, 0x0f))
	f.Fuzz(func(t *testing.T, body []byte) {
		if !isPacked(body) {
			return
		}
		var parts [][]byte
		var err error
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		parts, err = splitPack(body)
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > uint64(32*len(body))+4096 {
			t.Fatalf("splitting %d bytes allocated %d", len(body), n)
		}
		if err != nil {
			return
		}
		total := 0
		for _, p := range parts {
			total += 1 + len(p) // each part has a length byte at least
		}
		if total > len(body)-len(packMagic) {
			t.Fatalf("%d parts holding %d bytes from a %d-byte body", len(parts), total, len(body))
		}
	})
}

// BenchmarkSeal measures what signing costs per NSQ message: sealing on
// the publishing side and verifying on the receiving side, for an envelope
// alone (~100 bytes), a pack of ~10 envelopes and a large message. The
// baseline in the same run is copying the body once (what publishing does
// with every body anyway).
func BenchmarkSeal(b *testing.B) {
	s := newSigner(testKeys)
	for _, size := range []int{100, 1 << 10, 16 << 10} {
		body := bytes.Repeat([]byte{7}, size)
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			var sealNs, verifyNs, copyNs float64
			msg := s.seal("citadel.game.game-1", body)
			start := time.Now()
			for range b.N {
				s.sealInPlace("citadel.game.game-1", msg)
			}
			sealNs = float64(time.Since(start).Nanoseconds()) / float64(b.N)
			start = time.Now()
			for range b.N {
				if _, _, err := s.verify("citadel.game.game-1", msg); err != nil {
					b.Fatal(err)
				}
			}
			verifyNs = float64(time.Since(start).Nanoseconds()) / float64(b.N)
			dst := make([]byte, size)
			start = time.Now()
			for range b.N {
				copy(dst, body)
			}
			copyNs = float64(time.Since(start).Nanoseconds()) / float64(b.N)
			b.ReportMetric(sealNs, "seal-ns/msg")
			b.ReportMetric(verifyNs, "verify-ns/msg")
			b.ReportMetric(copyNs, "copy-ns/msg")
			b.ReportMetric((sealNs+verifyNs)/max(copyNs, 1), "ratio-vs-copy")
		})
	}
}
