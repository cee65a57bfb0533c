package tables

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"
)

// The exporter writes bools as one byte and floats as little-endian IEEE
// 754 (tables/export/encode.go); the sample tables have no such column, so
// the reader's side of that format is checked here.
func TestReaderBoolsAndFloats(t *testing.T) {
	var b []byte
	b = append(b, 1, 0)
	b = binary.LittleEndian.AppendUint32(b, math.Float32bits(-2.5))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(1e-300))
	r := &Reader{s: string(b)}
	if got := r.Bool(); !got {
		t.Error("bool 1 read as false")
	}
	if got := r.Bool(); got {
		t.Error("bool 0 read as true")
	}
	if got := r.F32(); got != -2.5 {
		t.Errorf("f32: got %v, want -2.5", got)
	}
	if got := r.F64(); got != 1e-300 {
		t.Errorf("f64: got %v, want 1e-300", got)
	}
	if r.err != nil || r.off != len(b) {
		t.Fatalf("after a whole read: err %v, offset %d of %d", r.err, r.off, len(b))
	}
	for _, c := range []struct {
		name, data string // data is too short for one value
		read       func(*Reader)
	}{
		{"bool", "", func(r *Reader) { r.Bool() }},
		{"f32", "\x01\x02\x03", func(r *Reader) { r.F32() }},
		{"f64", "\x01\x02\x03\x04\x05\x06\x07", func(r *Reader) { r.F64() }},
	} {
		short := &Reader{s: c.data}
		c.read(short)
		if !errors.Is(short.err, errShort) {
			t.Errorf("%s on truncated data: err %v, want errShort", c.name, short.err)
		}
	}
}
