package mq

import (
	"bytes"
	"encoding/binary"
	"errors"
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
