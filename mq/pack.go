package mq

import (
	"bytes"
	"encoding/binary"
	"errors"
	"sync"
)

// A packed NSQ message (PackAsync) is packMagic followed by its parts, each
// a uvarint length and the part's bytes.
var packMagic = []byte{0x00, 'C', 'P', 'K'}

// packOverhead is the most a single part adds to a pack: magic and length.
const packOverhead = 4 + binary.MaxVarintLen64

var errBadPack = errors.New("mq: malformed packed message")

func packedLen(part []byte) int {
	return uvarintLen(uint64(len(part))) + len(part)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func appendPacked(dst, part []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(part)))
	return append(dst, part...)
}

// isPacked reports whether body was built by PackAsync.
func isPacked(body []byte) bool { return bytes.HasPrefix(body, packMagic) }

// splitPack returns the parts of a packed body (aliasing it), or an error
// if the framing is damaged.
func splitPack(body []byte) ([][]byte, error) {
	p := body[len(packMagic):]
	if len(p) == 0 {
		return nil, errBadPack
	}
	var parts [][]byte
	for len(p) > 0 {
		n, k := binary.Uvarint(p)
		if k <= 0 || n > uint64(len(p)-k) {
			return nil, errBadPack
		}
		parts = append(parts, p[k:k+int(n)])
		p = p[k+int(n):]
	}
	return parts, nil
}

// maxReusedPack is the largest pack buffer a batcher keeps for the next
// pack of its topic.
const maxReusedPack = 64 << 10

// maxPooledPart is the largest body buffer kept for reuse: bigger ones are
// rare and would pin memory.
const maxPooledPart = 4 << 10

// partPool recycles the bodies handed to PackAsync once they are copied
// into their pack, so a busy node does not allocate one per message.
// holders keeps the emptied *[]byte boxes, so recycling allocates nothing.
var partPool, holders sync.Pool

// PackBuffer returns an empty buffer with room for at least n bytes, for a
// body that will be handed to PackAsync. Buffers come back to the pool once
// their bytes are packed, so a steady stream of sends allocates none.
func PackBuffer(n int) []byte {
	if bp, ok := partPool.Get().(*[]byte); ok {
		b := *bp
		*bp = nil
		holders.Put(bp)
		if cap(b) >= n {
			return b[:0]
		}
	}
	return make([]byte, 0, max(n, 256))
}

// recyclePart returns a packed body's buffer to the pool.
func recyclePart(b []byte) {
	if cap(b) == 0 || cap(b) > maxPooledPart {
		return
	}
	bp, ok := holders.Get().(*[]byte)
	if !ok {
		bp = new([]byte)
	}
	*bp = b[:0]
	partPool.Put(bp)
}
