package services

import (
	"bytes"
	"testing"

	"github.com/citadel-go/citadel/framework"
)

func TestFrameMessagesRoundTrip(t *testing.T) {
	r := framework.NewRegistry()
	if err := RegisterInternal(r); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*ToClient{
		{SessionID: 1 << 41, Seq: 7, MsgID: 1014, Payload: []byte{0x91, 1}},
		{SessionID: 3, Payload: []byte{}},
		{},
	} {
		id, b, err := r.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		v, err := r.Unmarshal(id, b)
		if err != nil {
			t.Fatal(err)
		}
		got := v.(*ToClient)
		if got.SessionID != m.SessionID || got.Seq != m.Seq || got.MsgID != m.MsgID || !bytes.Equal(got.Payload, m.Payload) {
			t.Fatalf("round trip: got %+v, want %+v", got, m)
		}
	}
	req := &ClientRequest{SessionID: 9, Seq: 1, MsgID: 1001, Payload: []byte{1, 2}}
	id, b, _ := r.Marshal(req)
	if v, err := r.Unmarshal(id, b); err != nil || v.(*ClientRequest).SessionID != 9 || !bytes.Equal(v.(*ClientRequest).Payload, req.Payload) {
		t.Fatalf("ClientRequest: %+v %v", v, err)
	}
	if _, err := r.Unmarshal(IDToClient, []byte{0x92, 1, 2}); err == nil {
		t.Fatal("a 2-field array decoded as ToClient")
	}
}
