package wire

import (
	"bytes"
	"errors"
	"io"
	"math"
	"testing"

	"github.com/citadel-go/citadel/framework"
	"github.com/vmihailenco/msgpack/v5"
)

type hello struct {
	Name string
	N    int32
}

func registry(t testing.TB) *framework.Registry {
	r := framework.NewRegistry()
	if err := r.Register(7, (*hello)(nil)); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestTCPRoundTripAndLimits(t *testing.T) {
	reg := registry(t)
	var stream []byte
	for _, seq := range []uint32{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32} {
		id, payload, err := Encode(reg, seq, &hello{Name: "ada", N: int32(seq)})
		if err != nil {
			t.Fatal(err)
		}
		stream, err = AppendTCP(stream, id, payload, DefaultMaxFrame)
		if err != nil {
			t.Fatal(err)
		}
	}
	r := bytes.NewReader(stream)
	var buf []byte
	for _, want := range []uint32{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32} {
		var f Frame
		var err error
		f, buf, err = ReadTCP(r, DefaultMaxFrame, buf)
		if err != nil {
			t.Fatal(err)
		}
		seq, msg, _, err := Decode(reg, f.ID, f.Payload)
		if err != nil || seq != want || msg.(*hello).N != int32(want) {
			t.Fatalf("seq %d: got %d %+v %v", want, seq, msg, err)
		}
	}
	if _, _, err := ReadTCP(r, DefaultMaxFrame, buf); err != io.EOF {
		t.Fatalf("end of stream: %v", err)
	}

	// Sizes are checked both ways; nothing is truncated.
	big := make([]byte, 70000) // past cellnet's 65,533-byte tcp.ltv limit
	if _, err := AppendTCP(nil, 7, big, 65536); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("send over max: %v", err)
	}
	frame, err := AppendTCP(nil, 7, big, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadTCP(bytes.NewReader(frame), 65536, nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("receive over max: %v", err)
	}
	f, _, err := ReadTCP(bytes.NewReader(frame), 1<<20, nil)
	if err != nil || len(f.Payload) != len(big) {
		t.Fatalf("large frame: %d bytes, %v", len(f.Payload), err)
	}
	if _, _, err := ReadTCP(bytes.NewReader([]byte{0, 0, 0, 1, 9}), 100, nil); !errors.Is(err, ErrShort) {
		t.Fatalf("length 1: %v", err)
	}
	if _, _, err := ReadTCP(bytes.NewReader([]byte{0, 0, 0, 9, 0, 7, 1}), 100, nil); err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated: %v", err)
	}
}

func TestWSAndPayloadErrors(t *testing.T) {
	reg := registry(t)
	id, payload, _ := Encode(reg, 5, &hello{Name: "x"})
	msg, err := AppendWS(nil, id, payload, 100)
	if err != nil {
		t.Fatal(err)
	}
	f, err := DecodeWS(msg, 100)
	if err != nil || f.ID != 7 {
		t.Fatalf("ws: %+v %v", f, err)
	}
	if _, err := DecodeWS([]byte{1}, 100); !errors.Is(err, ErrShort) {
		t.Fatalf("ws short: %v", err)
	}
	if _, err := DecodeWS(make([]byte, 101), 100); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ws large: %v", err)
	}
	if _, err := AppendWS(nil, 7, make([]byte, 200), 100); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ws send large: %v", err)
	}

	str, _ := msgpack.Marshal("not a hello")
	trailing := append(AppendPayload(nil, 1, mustMarshal(t, &hello{})), 0x01)
	for name, p := range map[string][]byte{
		"empty":         {},
		"not an array":  {0x01, 0x02, 0x03},
		"array of 3":    {0x93, 0x01, 0x01, 0x01},
		"no body":       {0x92, 0x01},
		"bad seq":       {0x92, 0xa1, 'x', 0x80},
		"wrong shape":   AppendPayload(nil, 1, str),
		"trailing data": trailing,
	} {
		if _, _, _, err := Decode(reg, 7, p); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	if _, _, _, err := Decode(reg, 99, AppendPayload(nil, 1, mustMarshal(t, &hello{}))); !errors.Is(err, framework.ErrUnregistered) {
		t.Errorf("unknown id: %v", err)
	}
}

func mustMarshal(t testing.TB, v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzReadTCP: whatever the bytes, the decoder returns a frame or an error,
// never panics, and never accepts a frame over the limit.
func FuzzReadTCP(f *testing.F) {
	reg := registry(f)
	id, payload, _ := Encode(reg, 3, &hello{Name: "seed", N: 1})
	good, _ := AppendTCP(nil, id, payload, DefaultMaxFrame)
	f.Add(good)
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 7})
	f.Add([]byte{0, 0, 0, 4, 0, 7, 0x92, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		var buf []byte
		for i := 0; i < 8; i++ {
			var fr Frame
			var err error
			fr, buf, err = ReadTCP(r, 1024, buf)
			if err != nil {
				return
			}
			if len(fr.Payload)+IDSize > 1024 {
				t.Fatalf("accepted a %d-byte frame over the 1024 limit", len(fr.Payload)+IDSize)
			}
			Decode(reg, fr.ID, fr.Payload)
		}
	})
}
