package mq

import (
	"encoding/binary"
	"net"
	"reflect"
	"sync"
	"unsafe"

	"github.com/nsqio/nsq/nsqd"
)

// maxFrame bounds a plausible nsqd frame size; a larger size field means
// the bytes are not plain frames (a TLS or compressed stream took over).
const maxFrame = 64 << 20

// frameListener hands nsqd connections that send each frame in one write.
type frameListener struct{ net.Listener }

func (l frameListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &frameConn{Conn: c}, nil
}

// frameConn joins nsqd's writes into whole frames. With a consumer's output
// buffer off (OutputBufferSize -1, which subscriptions use for latency),
// nsqd writes every frame as three calls (size, type, body): three
// syscalls, and up to three wake-ups of the consumer for one message.
// Held back until the frame is complete, they leave as one write. nsqd
// writes a frame's parts back to back, so nothing waits for a later frame.
// Bytes that do not parse as frames (TLS or compression negotiated by a
// client) switch the connection to writing straight through.
type frameConn struct {
	net.Conn
	mu   sync.Mutex
	held []byte
	raw  bool
}

func (c *frameConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.raw {
		return c.Conn.Write(p)
	}
	if len(c.held) == 0 {
		switch scanFrames(p) {
		case framesWhole:
			return c.Conn.Write(p)
		case framesForeign:
			c.raw = true
			return c.Conn.Write(p)
		}
	}
	c.held = append(c.held, p...)
	switch scanFrames(c.held) {
	case framesPartial:
		return len(p), nil
	case framesForeign:
		c.raw = true
	}
	_, err := c.Conn.Write(c.held)
	if cap(c.held) > 64<<10 {
		c.held = nil // do not keep a large message's buffer per connection
	} else {
		c.held = c.held[:0]
	}
	return len(p), err
}

// What a run of bytes holds, from its start.
const (
	framesWhole   = iota // one or more complete frames
	framesPartial        // complete frames, then the start of one more
	framesForeign        // something that is not nsqd frames
)

// scanFrames walks b as nsqd frames: u32 big-endian size (of what
// follows), u32 frame type (0 response, 1 error, 2 message), data.
func scanFrames(b []byte) int {
	for len(b) > 0 {
		if len(b) < 4 {
			return framesPartial
		}
		size := binary.BigEndian.Uint32(b)
		if size < 4 || size > maxFrame {
			return framesForeign
		}
		if len(b) >= 8 && binary.BigEndian.Uint32(b[4:]) > 2 {
			return framesForeign
		}
		if uint64(len(b)) < 4+uint64(size) {
			return framesPartial
		}
		b = b[4+size:]
	}
	return framesWhole
}

// joinFrames swaps nsqd's TCP listener (opened by nsqd.New, served by
// Main) for one whose connections send whole frames. nsqd v1.3.0 has no
// option for it, so the unexported field is set by name; if a later nsqd
// renames or retypes it, nothing is changed and joinFrames reports false
// (TestEmbeddedNSQDJoinsFrames catches that on a dependency update).
func joinFrames(n *nsqd.NSQD) bool {
	f := reflect.ValueOf(n).Elem().FieldByName("tcpListener")
	listenerType := reflect.TypeOf((*net.Listener)(nil)).Elem()
	if !f.IsValid() || f.Type() != listenerType {
		return false
	}
	f = reflect.NewAt(listenerType, unsafe.Pointer(f.UnsafeAddr())).Elem()
	l, _ := f.Interface().(net.Listener)
	if l == nil {
		return false
	}
	f.Set(reflect.ValueOf(net.Listener(frameListener{l})))
	return true
}
