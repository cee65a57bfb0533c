package tables

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Reader reads the rows of a data file (the format is described in
// tables/export). A game's generated reader (load_gen.go) calls it field by
// field; nothing else needs it. It reads from a string so that every string
// field is a slice of one allocation. After a short read it returns zero
// values and remembers the error, so generated code checks once at the end.
type Reader struct {
	s   string
	off int
	err error
}

var errShort = errors.New("tables: data file is truncated or damaged")

func (r *Reader) fail() {
	if r.err == nil {
		r.err = errShort
	}
	r.off = len(r.s)
}

// finish reports a short read, or bytes left after the last table.
func (r *Reader) finish() error {
	if r.err != nil {
		return r.err
	}
	if r.off != len(r.s) {
		return fmt.Errorf("tables: %d unexpected bytes after the data", len(r.s)-r.off)
	}
	return nil
}

// Uvarint reads an unsigned integer.
func (r *Reader) Uvarint() uint64 {
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

// Varint reads a signed integer or an enum (zigzag).
func (r *Reader) Varint() int64 {
	u := r.Uvarint()
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

// Count reads a length: of a table, an array or a string. Every element
// takes at least a byte, so a length beyond what is left is damage (and
// must not size an allocation).
func (r *Reader) Count() int {
	n := r.Uvarint()
	if n > uint64(len(r.s)-r.off) {
		r.fail()
		return 0
	}
	return int(n)
}

// Str reads a string.
func (r *Reader) Str() string {
	n := r.Count()
	s := r.s[r.off : r.off+n]
	r.off += n
	return s
}

// Bool reads a bool (one byte).
func (r *Reader) Bool() bool {
	if r.off >= len(r.s) {
		r.fail()
		return false
	}
	b := r.s[r.off]
	r.off++
	return b != 0
}

// F32 reads a float32 (little-endian IEEE 754).
func (r *Reader) F32() float32 {
	if len(r.s)-r.off < 4 {
		r.fail()
		return 0
	}
	v := uint32(r.s[r.off]) | uint32(r.s[r.off+1])<<8 | uint32(r.s[r.off+2])<<16 | uint32(r.s[r.off+3])<<24
	r.off += 4
	return math.Float32frombits(v)
}

// F64 reads a float64 (little-endian IEEE 754).
func (r *Reader) F64() float64 {
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
