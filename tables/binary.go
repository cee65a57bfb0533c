package tables

import (
	"encoding/binary"
	"errors"
	"math"
)

// reader reads the data file's primitives (see tables/export for the
// format). It reads from a string so that every string field is a slice of
// one allocation. After a short read it returns zero values and remembers
// the error.
type reader struct {
	s   string
	off int
	err error
}

var errShort = errors.New("tables: data file is truncated or damaged")

func (r *reader) fail() {
	if r.err == nil {
		r.err = errShort
	}
	r.off = len(r.s)
}

func (r *reader) uvarint() uint64 {
	var x uint64
	var shift uint
	for i := 0; r.off < len(r.s); i++ {
		b := r.s[r.off]
		r.off++
		if b < 0x80 {
			if i == binary.MaxVarintLen64-1 && b > 1 {
				r.fail()
				return 0
			}
			return x | uint64(b)<<shift
		}
		x |= uint64(b&0x7f) << shift
		shift += 7
		if i == binary.MaxVarintLen64-1 {
			break
		}
	}
	r.fail()
	return 0
}

func (r *reader) varint() int64 {
	u := r.uvarint()
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

// count reads a length. Every element takes at least a byte, so a length
// beyond what is left is damage (and must not size an allocation).
func (r *reader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.s)-r.off) {
		r.fail()
		return 0
	}
	return int(n)
}

func (r *reader) str() string {
	n := r.count()
	s := r.s[r.off : r.off+n]
	r.off += n
	return s
}

func (r *reader) bool() bool {
	if r.off >= len(r.s) {
		r.fail()
		return false
	}
	b := r.s[r.off]
	r.off++
	return b != 0
}

func (r *reader) f32() float32 {
	if len(r.s)-r.off < 4 {
		r.fail()
		return 0
	}
	v := uint32(r.s[r.off]) | uint32(r.s[r.off+1])<<8 | uint32(r.s[r.off+2])<<16 | uint32(r.s[r.off+3])<<24
	r.off += 4
	return math.Float32frombits(v)
}

func (r *reader) f64() float64 {
	if len(r.s)-r.off < 8 {
		r.fail()
		return 0
	}
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(r.s[r.off+i])
	}
	r.off += 8
	return math.Float64frombits(v)
}
