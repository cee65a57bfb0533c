package framework

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
)

// The wire envelope is encoded and parsed by hand: it is msgpack (an array
// of wireFields values, see wireEnvelope), but every remote message pays for
// its codec, so this avoids reflection, the decoder's reader, and a fresh
// string for every address: address strings are interned, and the payload
// of a parsed envelope points into the received bytes.

const wireFields = 13

var errEnvelope = errors.New("malformed envelope")

// appendEnvelope appends w's msgpack encoding to dst.
func appendEnvelope(dst []byte, w *wireEnvelope) []byte {
	dst = append(dst, 0x90|wireFields)
	dst = appendUint(dst, uint64(w.Kind))
	dst = appendAddr(dst, w.From)
	dst = appendAddr(dst, w.To)
	dst = appendUint(dst, w.Epoch)
	dst = appendUint(dst, w.Seq)
	dst = appendUint(dst, w.CorrID)
	dst = appendInt(dst, w.Deadline)
	dst = appendInt(dst, w.Sent)
	dst = appendUint(dst, uint64(w.MsgID))
	dst = appendBin(dst, w.Payload)
	dst = appendStr(dst, w.ErrCode)
	dst = appendStr(dst, w.ErrMsg)
	return appendUint(dst, w.ToEpoch)
}

// envelopeSize bounds appendEnvelope's output, for allocating once.
func envelopeSize(w *wireEnvelope) int {
	return 1 + 9*6 + 3 + 2*(1+3*5) + len(w.From.Service) + len(w.From.Node) + len(w.From.Actor) +
		len(w.To.Service) + len(w.To.Node) + len(w.To.Actor) + 5 + len(w.Payload) + 10 + len(w.ErrCode) + len(w.ErrMsg) + 9
}

func appendAddr(dst []byte, a Addr) []byte {
	dst = append(dst, 0x93)
	dst = appendStr(dst, a.Service)
	dst = appendStr(dst, a.Node)
	return appendStr(dst, a.Actor)
}

func appendUint(dst []byte, v uint64) []byte {
	switch {
	case v <= 0x7f:
		return append(dst, byte(v))
	case v <= math.MaxUint8:
		return append(dst, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, 0xcd), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, 0xce), uint32(v))
	default:
		return binary.BigEndian.AppendUint64(append(dst, 0xcf), v)
	}
}

func appendInt(dst []byte, v int64) []byte {
	if v >= 0 {
		return appendUint(dst, uint64(v))
	}
	if v >= -32 {
		return append(dst, byte(int8(v)))
	}
	return binary.BigEndian.AppendUint64(append(dst, 0xd3), uint64(v))
}

func appendStr(dst []byte, s string) []byte {
	switch n := len(s); {
	case n <= 31:
		dst = append(dst, 0xa0|byte(n))
	case n <= math.MaxUint8:
		dst = append(dst, 0xd9, byte(n))
	case n <= math.MaxUint16:
		dst = binary.BigEndian.AppendUint16(append(dst, 0xda), uint16(n))
	default:
		dst = binary.BigEndian.AppendUint32(append(dst, 0xdb), uint32(n))
	}
	return append(dst, s...)
}

func appendBin(dst []byte, b []byte) []byte {
	switch n := len(b); {
	case n <= math.MaxUint8:
		dst = append(dst, 0xc4, byte(n))
	case n <= math.MaxUint16:
		dst = binary.BigEndian.AppendUint16(append(dst, 0xc5), uint16(n))
	default:
		dst = binary.BigEndian.AppendUint32(append(dst, 0xc6), uint32(n))
	}
	return append(dst, b...)
}

// reader parses msgpack values from a byte slice without copying.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: bad %s", errEnvelope, what)
	}
}

func (r *reader) take(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b) {
		r.fail("length")
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) byte1() byte {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (r *reader) arrayLen() int {
	switch c := r.byte1(); {
	case c&0xf0 == 0x90:
		return int(c & 0x0f)
	case c == 0xdc:
		if p := r.take(2); p != nil {
			return int(binary.BigEndian.Uint16(p))
		}
	}
	r.fail("array")
	return 0
}

// uint reads any non-negative msgpack integer.
func (r *reader) uint() uint64 {
	c := r.byte1()
	switch {
	case c <= 0x7f:
		return uint64(c)
	case c == 0xcc || c == 0xd0:
		if p := r.take(1); p != nil && (c == 0xcc || int8(p[0]) >= 0) {
			return uint64(p[0])
		}
	case c == 0xcd || c == 0xd1:
		if p := r.take(2); p != nil && (c == 0xcd || int16(binary.BigEndian.Uint16(p)) >= 0) {
			return uint64(binary.BigEndian.Uint16(p))
		}
	case c == 0xce || c == 0xd2:
		if p := r.take(4); p != nil && (c == 0xce || int32(binary.BigEndian.Uint32(p)) >= 0) {
			return uint64(binary.BigEndian.Uint32(p))
		}
	case c == 0xcf || c == 0xd3:
		if p := r.take(8); p != nil && (c == 0xcf || int64(binary.BigEndian.Uint64(p)) >= 0) {
			return binary.BigEndian.Uint64(p)
		}
	}
	r.fail("unsigned integer")
	return 0
}

// int reads any msgpack integer that fits int64.
func (r *reader) int() int64 {
	if len(r.b) > 0 {
		switch c := r.b[0]; {
		case c >= 0xe0:
			r.b = r.b[1:]
			return int64(int8(c))
		case c == 0xd0:
			if p := r.take(2); p != nil {
				return int64(int8(p[1]))
			}
		case c == 0xd1:
			if p := r.take(3); p != nil {
				return int64(int16(binary.BigEndian.Uint16(p[1:])))
			}
		case c == 0xd2:
			if p := r.take(5); p != nil {
				return int64(int32(binary.BigEndian.Uint32(p[1:])))
			}
		case c == 0xd3:
			if p := r.take(9); p != nil {
				return int64(binary.BigEndian.Uint64(p[1:]))
			}
		}
	}
	v := r.uint()
	if v > math.MaxInt64 {
		r.fail("integer")
	}
	return int64(v)
}

// str reads a msgpack str (or bin) and returns a view of its bytes.
func (r *reader) str() []byte {
	c := r.byte1()
	var n int
	switch {
	case c&0xe0 == 0xa0:
		n = int(c & 0x1f)
	case c == 0xd9 || c == 0xc4:
		if p := r.take(1); p != nil {
			n = int(p[0])
		}
	case c == 0xda || c == 0xc5:
		if p := r.take(2); p != nil {
			n = int(binary.BigEndian.Uint16(p))
		}
	case c == 0xdb || c == 0xc6:
		if p := r.take(4); p != nil {
			n = int(binary.BigEndian.Uint32(p))
		}
	case c == 0xc0: // nil
		return nil
	default:
		r.fail("string")
		return nil
	}
	return r.take(n)
}

// interner returns one shared string per distinct address part, so the
// few service, node and actor names a node hears from are not allocated
// again for every envelope. It is bounded; past the bound it just copies.
type interner struct {
	mu sync.Mutex
	m  map[string]string
}

const maxInterned = 8192

func (in *interner) get(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if s, ok := in.m[string(b)]; ok { // no allocation for the lookup
		return s
	}
	s := string(b)
	if in.m == nil {
		in.m = make(map[string]string)
	}
	if len(in.m) < maxInterned {
		in.m[s] = s
	}
	return s
}

func (r *reader) addr(in *interner) Addr {
	if r.arrayLen() != 3 {
		r.fail("address")
		return Addr{}
	}
	return Addr{Service: in.get(r.str()), Node: in.get(r.str()), Actor: in.get(r.str())}
}

// parseEnvelope parses b into w; w.Payload points into b.
func parseEnvelope(b []byte, w *wireEnvelope, in *interner) error {
	r := reader{b: b}
	if r.arrayLen() != wireFields {
		return fmt.Errorf("%w: want an array of %d fields", errEnvelope, wireFields)
	}
	kind := r.uint()
	w.From = r.addr(in)
	w.To = r.addr(in)
	w.Epoch = r.uint()
	w.Seq = r.uint()
	w.CorrID = r.uint()
	w.Deadline = r.int()
	w.Sent = r.int()
	id := r.uint()
	w.Payload = r.str()
	w.ErrCode = string(r.str())
	w.ErrMsg = string(r.str())
	w.ToEpoch = r.uint()
	switch {
	case r.err != nil:
		return r.err
	case len(r.b) != 0:
		return fmt.Errorf("%w: %d trailing bytes", errEnvelope, len(r.b))
	case kind > math.MaxUint8 || id > math.MaxUint16:
		return fmt.Errorf("%w: kind or message ID out of range", errEnvelope)
	}
	w.Kind, w.MsgID = uint8(kind), MsgID(id)
	return nil
}
