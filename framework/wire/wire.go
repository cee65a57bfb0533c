// Package wire frames client traffic (docs/protocol.md):
//
//	TCP:        u32 length | u16 msgID | payload     (length counts msgID and payload)
//	WebSocket:  one binary message = u16 msgID | payload
//	payload:    msgpack array [seq, body]            (seq: u32; body: the message)
//
// Integers are big-endian. A request carries a client-chosen seq > 0 and its
// reply carries the same seq; pushes and fire-and-forget messages use seq 0.
// Sizes are checked on both sending and receiving: nothing is truncated.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/citadel-go/citadel/framework"
)

const (
	// LenSize is the TCP length prefix.
	LenSize = 4
	// IDSize is the message ID field.
	IDSize = 2
	// DefaultMaxFrame bounds msgID + payload unless configured otherwise.
	DefaultMaxFrame = 256 << 10
)

// Errors; test with errors.Is.
var (
	ErrTooLarge  = errors.New("wire: frame too large")
	ErrShort     = errors.New("wire: frame too short")
	ErrBadHeader = errors.New("wire: payload is not a msgpack [seq, body] array")
)

// Frame is one decoded frame.
type Frame struct {
	ID      framework.MsgID
	Payload []byte // msgpack [seq, body]
}

// ReadTCP reads one TCP frame. buf is reused when big enough; the returned
// payload aliases it until the next call.
func ReadTCP(r io.Reader, max int, buf []byte) (Frame, []byte, error) {
	var hdr [LenSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Frame{}, buf, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < IDSize {
		return Frame{}, buf, fmt.Errorf("%w: length %d is below the %d-byte message ID", ErrShort, n, IDSize)
	}
	if int64(n) > int64(max) {
		return Frame{}, buf, fmt.Errorf("%w: %d bytes announced, limit %d", ErrTooLarge, n, max)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, buf, err
	}
	return Frame{ID: framework.MsgID(binary.BigEndian.Uint16(buf)), Payload: buf[IDSize:]}, buf, nil
}

// AppendTCP appends a TCP frame to dst.
func AppendTCP(dst []byte, id framework.MsgID, payload []byte, max int) ([]byte, error) {
	n := IDSize + len(payload)
	if n > max {
		return dst, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, max)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	dst = binary.BigEndian.AppendUint16(dst, uint16(id))
	return append(dst, payload...), nil
}

// DecodeWS splits one WebSocket binary message.
func DecodeWS(msg []byte, max int) (Frame, error) {
	if len(msg) < IDSize {
		return Frame{}, fmt.Errorf("%w: %d bytes", ErrShort, len(msg))
	}
	if len(msg) > max {
		return Frame{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(msg), max)
	}
	return Frame{ID: framework.MsgID(binary.BigEndian.Uint16(msg)), Payload: msg[IDSize:]}, nil
}

// AppendWS appends a WebSocket message (ID then payload) to dst.
func AppendWS(dst []byte, id framework.MsgID, payload []byte, max int) ([]byte, error) {
	if n := IDSize + len(payload); n > max {
		return dst, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, max)
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(id))
	return append(dst, payload...), nil
}

// AppendPayload appends the msgpack array [seq, body] where body is already
// msgpack-encoded.
func AppendPayload(dst []byte, seq uint32, body []byte) []byte {
	dst = append(dst, 0x92) // fixarray of 2
	dst = appendUint32(dst, seq)
	return append(dst, body...)
}

func appendUint32(dst []byte, v uint32) []byte {
	switch {
	case v <= 0x7f:
		return append(dst, byte(v))
	case v <= 0xff:
		return append(dst, 0xcc, byte(v))
	case v <= 0xffff:
		return binary.BigEndian.AppendUint16(append(dst, 0xcd), uint16(v))
	default:
		return binary.BigEndian.AppendUint32(append(dst, 0xce), v)
	}
}

// SplitPayload parses the [seq, body] header and returns body's bytes
// (aliasing payload). It does not decode body.
func SplitPayload(payload []byte) (seq uint32, body []byte, err error) {
	if len(payload) < 3 || payload[0] != 0x92 {
		return 0, nil, ErrBadHeader
	}
	p := payload[1:]
	switch c := p[0]; {
	case c <= 0x7f:
		seq, p = uint32(c), p[1:]
	case c == 0xcc && len(p) >= 2:
		seq, p = uint32(p[1]), p[2:]
	case c == 0xcd && len(p) >= 3:
		seq, p = uint32(binary.BigEndian.Uint16(p[1:])), p[3:]
	case c == 0xce && len(p) >= 5:
		seq, p = binary.BigEndian.Uint32(p[1:]), p[5:]
	default:
		return 0, nil, ErrBadHeader
	}
	if len(p) == 0 {
		return 0, nil, ErrBadHeader
	}
	return seq, p, nil
}

// Decode parses a payload and decodes its body as the type registered for
// id. The body must be exactly one msgpack value that fits the type and
// bounded's limits: anything else (bad header, wrong shape, a length that
// claims more than the frame holds, trailing bytes) is an error, found
// before anything is allocated for the claim.
func Decode(reg *framework.Registry, id framework.MsgID, payload []byte) (seq uint32, msg any, body []byte, err error) {
	seq, body, err = SplitPayload(payload)
	if err != nil {
		return 0, nil, nil, err
	}
	if msg, err = reg.Unmarshal(id, body); err != nil {
		return seq, nil, body, fmt.Errorf("wire: %w", err)
	}
	return seq, msg, body, nil
}

// Encode returns msg's ID and a payload [seq, msgpack(msg)].
func Encode(reg *framework.Registry, seq uint32, msg any) (framework.MsgID, []byte, error) {
	id, body, err := reg.Marshal(msg)
	if err != nil {
		return 0, nil, err
	}
	return id, AppendPayload(make([]byte, 0, len(body)+6), seq, body), nil
}
