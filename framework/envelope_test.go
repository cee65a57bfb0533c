package framework

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"runtime"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestEnvelopeCodecRoundTripsAndIsMsgpack(t *testing.T) {
	for _, w := range []wireEnvelope{
		{},
		{Kind: kindRequest, From: Addr{"gate", "gate-1", ""}, To: Addr{"game", "game-7", "player-42"}, Epoch: math.MaxUint64,
			Seq: 1 << 40, CorrID: 300, Deadline: -1, Sent: math.MinInt64, ToEpoch: math.MaxUint64, MsgID: math.MaxUint16,
			Payload: bytes.Repeat([]byte{7}, 70000), ErrCode: "code", ErrMsg: string(bytes.Repeat([]byte("m"), 300))},
		{Kind: kindReply, Deadline: -33, Sent: 127, Payload: []byte{}},
	} {
		b := appendEnvelope(nil, &w)
		if len(b) > envelopeSize(&w) {
			t.Fatalf("encoded %d bytes, size bound %d", len(b), envelopeSize(&w))
		}
		var got wireEnvelope
		if err := parseEnvelope(b, &got, &interner{}); err != nil {
			t.Fatal(err)
		}
		if got.Kind != w.Kind || got.From != w.From || got.To != w.To || got.Epoch != w.Epoch || got.Seq != w.Seq ||
			got.CorrID != w.CorrID || got.Deadline != w.Deadline || got.Sent != w.Sent || got.ToEpoch != w.ToEpoch ||
			got.MsgID != w.MsgID || !bytes.Equal(got.Payload, w.Payload) || got.ErrCode != w.ErrCode || got.ErrMsg != w.ErrMsg {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, w)
		}
		// It is plain msgpack: a generic decoder reads the same values.
		var generic []any
		if err := msgpack.Unmarshal(b, &generic); err != nil || len(generic) != wireFields {
			t.Fatalf("not msgpack: %v (%d fields)", err, len(generic))
		}
	}
	for _, bad := range [][]byte{nil, {0x90}, {0x9e, 0x01}, append(appendEnvelope(nil, &wireEnvelope{}), 0)} {
		if err := parseEnvelope(bad, &wireEnvelope{}, &interner{}); !errors.Is(err, errEnvelope) {
			t.Errorf("%x: %v", bad, err)
		}
	}
	in := &interner{}
	a, b := in.get([]byte("game-1")), in.get([]byte("game-1"))
	if a != b || len(in.m) != 1 {
		t.Fatal("interner did not share")
	}
}

// FuzzParseEnvelope: whatever the bytes, parsing returns an envelope or an
// error, never panics, allocates no more than the strings it copies out,
// and what it accepts encodes and parses again to the same.
func FuzzParseEnvelope(f *testing.F) {
	f.Add(appendEnvelope(nil, &wireEnvelope{Kind: 1, From: Addr{"a", "b", "c"}, Seq: 1, Epoch: 1, Payload: []byte{1}}))
	f.Add(appendEnvelope(nil, &wireEnvelope{Kind: 3, From: Addr{"game", "game-1", ""}, To: Addr{"gate", "gate-1", "sessions"},
		Seq: 1 << 40, Epoch: 1<<64 - 1, CorrID: 7, Deadline: -1, ErrCode: "timeout", ErrMsg: "late", ToEpoch: 3}))
	f.Add([]byte{0x9e})
	f.Add([]byte{0x9e, 0x01, 0x93, 0xdb, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		in := &interner{}
		var w wireEnvelope
		var err error
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err = parseEnvelope(b, &w, in)
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > uint64(2*len(b))+16<<10 {
			t.Fatalf("parsing %d bytes allocated %d", len(b), n)
		}
		if err == nil {
			var again wireEnvelope
			if err := parseEnvelope(appendEnvelope(nil, &w), &again, &interner{}); err != nil || !reflect.DeepEqual(w, again) {
				t.Fatalf("re-encoded envelope: %v\n%+v\n%+v", err, w, again)
			}
		}
	})
}
