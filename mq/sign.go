package mq

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"sync"
	"time"
)

// Every NSQ message body a Bus publishes is sealed: a fixed header, then
// the body as given. The header carries the key's ID, who published it
// (a random ID per Bus, so per process start), a counter per publisher and
// topic, the publish time and an HMAC-SHA256 over the topic, the header's
// other fields and the body. A message published by anyone without the
// cluster key — a POST to nsqd's /pub, a forged consumer — fails the check
// and is dropped and counted before any handler sees it; the topic in the
// MAC stops a signed message from being moved to another topic; publisher,
// counter and time let subscribers refuse replays (SubscribeOptions).
//
//	offset  size
//	0       2     magic 0xC1 'S' (0xC1 is a byte msgpack never uses)
//	2       1     format version (1)
//	3       1     key ID
//	4       8     publisher ID
//	12      8     counter
//	20      8     publish time, unix nanoseconds
//	28      32    HMAC-SHA256(key, topic || bytes 0–27 || body)
//	60            body
const (
	sealVersion = 1
	sealMACAt   = 28
	// SealSize is what sealing adds to every message body.
	SealSize = sealMACAt + sha256.Size
)

var sealMagic = [2]byte{0xC1, 'S'}

// unsealed is the room a pack reserves for its seal.
var unsealed [SealSize]byte

// Reasons a received message is rejected (BusStats.Rejected and the
// citadel_mq_rejected_total metric).
const (
	RejectUnsigned     = "unsigned"
	RejectUnknownKey   = "unknown_key"
	RejectBadSignature = "bad_signature"
	RejectExpired      = "expired"
	RejectReplayed     = "replayed"
)

// rejectError says why a received message was dropped.
type rejectError struct {
	reason string
	detail string
}

func (e *rejectError) Error() string { return "mq: message rejected (" + e.reason + "): " + e.detail }

// Seal is what the header of a verified message says.
type Seal struct {
	KeyID     uint8
	Publisher uint64
	Counter   uint64
	Published time.Time
}

// signer seals and verifies with a keyring. HMAC states are pooled per key:
// building one costs more than the MAC of a small message.
type signer struct {
	keys      *Keyring
	publisher uint64
	macs      map[uint8]*sync.Pool

	countersMu sync.Mutex
	counters   map[string]*uint64
	topics     sync.Map // topic -> []byte, so a MAC does not allocate the topic's bytes
}

func newSigner(keys *Keyring) *signer {
	s := &signer{keys: keys, macs: make(map[uint8]*sync.Pool), counters: make(map[string]*uint64)}
	var id [8]byte
	rand.Read(id[:])
	s.publisher = binary.BigEndian.Uint64(id[:]) | 1
	for kid, secret := range keys.accept {
		s.macs[kid] = &sync.Pool{New: func() any { return &macState{h: hmac.New(sha256.New, secret)} }}
	}
	return s
}

// next returns the topic's next counter value.
func (s *signer) next(topic string) uint64 {
	s.countersMu.Lock()
	defer s.countersMu.Unlock()
	c := s.counters[topic]
	if c == nil {
		c = new(uint64)
		s.counters[topic] = c
	}
	*c++
	return *c
}

// seal returns body with a seal in front (a new slice).
func (s *signer) seal(topic string, body []byte) []byte {
	out := make([]byte, SealSize, SealSize+len(body))
	out = append(out, body...)
	s.sealInPlace(topic, out)
	return out
}

// sealInPlace fills in the seal of msg, whose first SealSize bytes are
// reserved for it.
func (s *signer) sealInPlace(topic string, msg []byte) { s.sealAt(topic, msg, time.Now()) }

func (s *signer) sealAt(topic string, msg []byte, now time.Time) {
	copy(msg, sealMagic[:])
	msg[2] = sealVersion
	msg[3] = s.keys.sign.ID
	binary.BigEndian.PutUint64(msg[4:], s.publisher)
	binary.BigEndian.PutUint64(msg[12:], s.next(topic))
	binary.BigEndian.PutUint64(msg[20:], uint64(now.UnixNano()))
	s.mac(s.keys.sign.ID, topic, msg[:sealMACAt], msg[SealSize:], func(sum []byte) { copy(msg[sealMACAt:], sum) })
}

// macState is a pooled HMAC and room for its sum.
type macState struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

// mac computes the MAC of topic, head and body under key kid and calls use
// with it (valid during the call only).
func (s *signer) mac(kid uint8, topic string, head, body []byte, use func(sum []byte)) {
	pool := s.macs[kid]
	m := pool.Get().(*macState)
	m.h.Reset()
	m.h.Write(s.topicBytes(topic))
	m.h.Write(head)
	m.h.Write(body)
	use(m.h.Sum(m.sum[:0]))
	pool.Put(m)
}

// topicBytes returns topic's bytes from a cache: a process seals for and
// verifies on a few topics (one per node it talks to), and converting the
// string for every MAC allocated.
func (s *signer) topicBytes(topic string) []byte {
	if b, ok := s.topics.Load(topic); ok {
		return b.([]byte)
	}
	b, _ := s.topics.LoadOrStore(topic, []byte(topic))
	return b.([]byte)
}

// verify checks msg's seal for topic and returns the body under it.
func (s *signer) verify(topic string, msg []byte) ([]byte, Seal, error) {
	if len(msg) < SealSize || msg[0] != sealMagic[0] || msg[1] != sealMagic[1] || msg[2] != sealVersion {
		return nil, Seal{}, &rejectError{RejectUnsigned, fmt.Sprintf("%d bytes without a Citadel seal", len(msg))}
	}
	kid := msg[3]
	if _, ok := s.macs[kid]; !ok {
		return nil, Seal{}, &rejectError{RejectUnknownKey, fmt.Sprintf("signed with key %d, which this process does not hold (keys: check every process has the same cluster key file)", kid)}
	}
	var ok bool
	s.mac(kid, topic, msg[:sealMACAt], msg[SealSize:], func(sum []byte) { ok = hmac.Equal(sum, msg[sealMACAt:SealSize]) })
	if !ok {
		return nil, Seal{}, &rejectError{RejectBadSignature, fmt.Sprintf("signature of key %d does not match", kid)}
	}
	return msg[SealSize:], Seal{
		KeyID:     kid,
		Publisher: binary.BigEndian.Uint64(msg[4:]),
		Counter:   binary.BigEndian.Uint64(msg[12:]),
		Published: time.Unix(0, int64(binary.BigEndian.Uint64(msg[20:]))),
	}, nil
}

// replayWindow remembers, per publisher, which counters of one topic a
// subscription has handled: the highest and a bitmap of the replayWindowSize
// below it, as IPsec's anti-replay window does. Older counters count as
// replays: NSQ rarely delivers a message that late, and a subscription that
// asks for this (fan-out topics: heartbeats, broadcasts) accepts losing one.
type replayWindow struct {
	mu   sync.Mutex
	pubs map[uint64]*window
}

const replayWindowSize = 4096

type window struct {
	top  uint64
	bits [replayWindowSize / 64]uint64
	last time.Time
}

// claim records counter c of pub as handled, or reports false if it was
// already (or is too old to tell).
func (r *replayWindow) claim(pub, c uint64, now time.Time, maxIdle time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w := r.pubs[pub]; w != nil && c <= w.top {
		if w.top-c >= replayWindowSize {
			return false
		}
		if i := c % replayWindowSize; w.bits[i/64]&(1<<(i%64)) != 0 {
			return false
		}
	}
	r.mark(pub, c, now, maxIdle)
	return true
}

// unclaim forgets counter c of pub (its handler failed; NSQ redelivers it).
func (r *replayWindow) unclaim(pub, c uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w := r.pubs[pub]; w != nil && c <= w.top && w.top-c < replayWindowSize {
		i := c % replayWindowSize
		w.bits[i/64] &^= 1 << (i % 64)
	}
}

// mark records counter c of pub as handled (r.mu held). Publishers
// silent for maxIdle are forgotten once many are remembered (their
// messages are older than the subscription accepts anyway).
func (r *replayWindow) mark(pub, c uint64, now time.Time, maxIdle time.Duration) {
	if r.pubs == nil {
		r.pubs = make(map[uint64]*window)
	}
	w := r.pubs[pub]
	if w == nil {
		if len(r.pubs) >= 1024 {
			for p, old := range r.pubs {
				if now.Sub(old.last) > maxIdle {
					delete(r.pubs, p)
				}
			}
		}
		w = &window{}
		r.pubs[pub] = w
	}
	w.last = now
	if c > w.top {
		if c-w.top >= replayWindowSize {
			w.bits = [replayWindowSize / 64]uint64{}
		} else {
			for x := w.top + 1; x < c; x++ {
				i := x % replayWindowSize
				w.bits[i/64] &^= 1 << (i % 64)
			}
		}
		w.top = c
	}
	if w.top-c < replayWindowSize {
		i := c % replayWindowSize
		w.bits[i/64] |= 1 << (i % 64)
	}
}
