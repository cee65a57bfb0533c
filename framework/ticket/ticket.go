// Package ticket issues and checks the short-lived login tickets a client
// presents to a gate: HMAC-SHA256 signed, expiring, bound to one player and
// one gate node, with a random nonce so each can be used only once.
package ticket

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Errors from Verify and Guard.Use; test with errors.Is.
var (
	ErrMalformed = errors.New("ticket: malformed")
	ErrForged    = errors.New("ticket: bad signature")
	ErrExpired   = errors.New("ticket: expired")
	ErrWrongGate = errors.New("ticket: issued for another gate")
	ErrReused    = errors.New("ticket: already used")
)

// MinKeyLen is the shortest accepted signing key.
const MinKeyLen = 32

const (
	version   = 1
	nonceLen  = 16
	macLen    = sha256.Size
	fixedLen  = 1 + 8 + 8 + nonceLen + 1 // version, player, expiry ms, nonce, gate length
	maxGate   = 255
	maxTicket = 1024 // longer input is refused before decoding
)

// Ticket is what login vouches for.
type Ticket struct {
	PlayerID uint64
	Gate     string // the gate node the client must connect to
	Expires  time.Time
	Nonce    [nonceLen]byte
}

// Signer signs and verifies tickets with a shared secret key.
type Signer struct {
	key []byte
}

// NewSigner returns a Signer for key (at least MinKeyLen bytes).
func NewSigner(key []byte) (*Signer, error) {
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("ticket: signing key is %d bytes; need at least %d", len(key), MinKeyLen)
	}
	return &Signer{key: append([]byte(nil), key...)}, nil
}

// NewKey returns a random signing key.
func NewKey() []byte {
	k := make([]byte, MinKeyLen)
	if _, err := rand.Read(k); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return k
}

// Issue returns a signed ticket for player at gate, valid for ttl.
func (s *Signer) Issue(player uint64, gate string, ttl time.Duration) (string, Ticket, error) {
	if len(gate) == 0 || len(gate) > maxGate {
		return "", Ticket{}, fmt.Errorf("ticket: gate name must be 1-%d bytes", maxGate)
	}
	t := Ticket{PlayerID: player, Gate: gate, Expires: time.Now().Add(ttl).Truncate(time.Millisecond)}
	if _, err := rand.Read(t.Nonce[:]); err != nil {
		return "", Ticket{}, err
	}
	return s.Sign(t), t, nil
}

// Sign encodes and signs t.
func (s *Signer) Sign(t Ticket) string {
	b := make([]byte, fixedLen, fixedLen+len(t.Gate)+macLen)
	b[0] = version
	binary.BigEndian.PutUint64(b[1:9], t.PlayerID)
	binary.BigEndian.PutUint64(b[9:17], uint64(t.Expires.UnixMilli()))
	copy(b[17:17+nonceLen], t.Nonce[:])
	b[fixedLen-1] = byte(len(t.Gate))
	b = append(b, t.Gate...)
	b = append(b, s.mac(b)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *Signer) mac(b []byte) []byte {
	h := hmac.New(sha256.New, s.key)
	h.Write(b)
	return h.Sum(nil)
}

// Verify checks the signature, expiry and gate of a ticket string.
func (s *Signer) Verify(token, gate string, now time.Time) (Ticket, error) {
	if len(token) > maxTicket {
		return Ticket{}, fmt.Errorf("%w: %d characters", ErrMalformed, len(token))
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return Ticket{}, fmt.Errorf("%w: not base64url", ErrMalformed)
	}
	if len(b) < fixedLen+macLen {
		return Ticket{}, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	body, sig := b[:len(b)-macLen], b[len(b)-macLen:]
	if !hmac.Equal(sig, s.mac(body)) {
		return Ticket{}, ErrForged
	}
	if body[0] != version {
		return Ticket{}, fmt.Errorf("%w: version %d", ErrMalformed, body[0])
	}
	gl := int(body[fixedLen-1])
	if len(body) != fixedLen+gl {
		return Ticket{}, fmt.Errorf("%w: length", ErrMalformed)
	}
	t := Ticket{
		PlayerID: binary.BigEndian.Uint64(body[1:9]),
		Expires:  time.UnixMilli(int64(binary.BigEndian.Uint64(body[9:17]))),
		Gate:     string(body[fixedLen:]),
	}
	copy(t.Nonce[:], body[17:17+nonceLen])
	if !now.Before(t.Expires) {
		return t, fmt.Errorf("%w at %s", ErrExpired, t.Expires.UTC().Format(time.RFC3339Nano))
	}
	if t.Gate != gate {
		return t, fmt.Errorf("%w (%q, this is %q)", ErrWrongGate, t.Gate, gate)
	}
	return t, nil
}

// Guard remembers the nonces of tickets used at one gate until they expire,
// so a ticket (bound to that gate) works once.
type Guard struct {
	mu   sync.Mutex
	used map[[nonceLen]byte]time.Time
	last time.Time
}

// NewGuard returns an empty Guard.
func NewGuard() *Guard { return &Guard{used: make(map[[nonceLen]byte]time.Time)} }

// Use records t's nonce; ErrReused if it was used before.
func (g *Guard) Use(t Ticket, now time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Sub(g.last) > time.Second {
		for n, exp := range g.used {
			if !now.Before(exp) {
				delete(g.used, n)
			}
		}
		g.last = now
	}
	if _, ok := g.used[t.Nonce]; ok {
		return ErrReused
	}
	g.used[t.Nonce] = t.Expires
	return nil
}

// Len reports how many nonces are remembered.
func (g *Guard) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.used)
}
