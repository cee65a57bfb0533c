package services

import (
	"fmt"

	"github.com/citadel-go/citadel/framework"
	"github.com/vmihailenco/msgpack/v5"
)

// ClientRequest and ToClient carry every client message between gate and
// game, so they get hand-written msgpack codecs (arrays, no reflection);
// the encoding is what msgpack's as_array struct tag would produce.

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *ClientRequest) EncodeMsgpack(enc *msgpack.Encoder) error {
	return encodeFrameMsg(enc, m.SessionID, m.Seq, m.MsgID, m.Payload)
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (m *ClientRequest) DecodeMsgpack(dec *msgpack.Decoder) (err error) {
	m.SessionID, m.Seq, m.MsgID, m.Payload, err = decodeFrameMsg(dec)
	return err
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *ToClient) EncodeMsgpack(enc *msgpack.Encoder) error {
	return encodeFrameMsg(enc, m.SessionID, m.Seq, m.MsgID, m.Payload)
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (m *ToClient) DecodeMsgpack(dec *msgpack.Decoder) (err error) {
	m.SessionID, m.Seq, m.MsgID, m.Payload, err = decodeFrameMsg(dec)
	return err
}

func encodeFrameMsg(enc *msgpack.Encoder, session uint64, seq uint32, id framework.MsgID, payload []byte) error {
	err := enc.EncodeArrayLen(4)
	if err == nil {
		err = enc.EncodeUint64(session)
	}
	if err == nil {
		err = enc.EncodeUint32(seq)
	}
	if err == nil {
		err = enc.EncodeUint16(uint16(id))
	}
	if err == nil {
		err = enc.EncodeBytes(payload)
	}
	return err
}

func decodeFrameMsg(dec *msgpack.Decoder) (session uint64, seq uint32, id framework.MsgID, payload []byte, err error) {
	n, err := dec.DecodeArrayLen()
	if err == nil && n != 4 {
		err = fmt.Errorf("services: frame message has %d fields, want 4", n)
	}
	if err == nil {
		session, err = dec.DecodeUint64()
	}
	if err == nil {
		seq, err = dec.DecodeUint32()
	}
	var v uint16
	if err == nil {
		v, err = dec.DecodeUint16()
		id = framework.MsgID(v)
	}
	if err == nil {
		payload, err = dec.DecodeBytes()
	}
	return
}
