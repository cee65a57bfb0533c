package mq

import (
	"time"

	"github.com/nsqio/go-nsq"
)

// Message is one NSQ message handed to a subscription handler. By default
// the Bus finishes (FIN) it when the handler returns nil and requeues (REQ)
// it when the handler returns an error; a handler that wants to answer
// later calls DisableAutoResponse and then exactly one of Finish or Requeue.
type Message struct {
	// Body is the payload as published.
	Body []byte
	// ID is nsqd's message ID (unique per nsqd).
	ID string
	// Attempts counts deliveries of this message, starting at 1.
	Attempts uint16
	// Timestamp is when nsqd received the message.
	Timestamp time.Time
	// Published is when the publisher sealed it (its clock; signed, so
	// unlike Timestamp it cannot be changed by whoever hands nsqd a copy).
	Published time.Time

	m    *nsq.Message
	part bool // one part of a packed message: answered as a whole
}

// Finish tells nsqd the message is done (FIN); it is not delivered again.
// It does nothing on a part of a packed message.
func (m *Message) Finish() {
	if !m.part {
		m.m.Finish()
	}
}

// Requeue asks nsqd to deliver the message again after delay (REQ). The
// message goes back to the channel; other messages may overtake it. It does
// nothing on a part of a packed message (return an error instead).
func (m *Message) Requeue(delay time.Duration) {
	if !m.part {
		m.m.RequeueWithoutBackoff(delay)
	}
}

// Touch resets the message's timeout (TOUCH), for handlers that need longer
// than the channel's MsgTimeout.
func (m *Message) Touch() { m.m.Touch() }

// DisableAutoResponse leaves Finish or Requeue to the handler (not
// available for parts of a packed message).
func (m *Message) DisableAutoResponse() {
	if !m.part {
		m.m.DisableAutoResponse()
	}
}

// HasResponded reports whether Finish or Requeue was called.
func (m *Message) HasResponded() bool { return m.m.HasResponded() }
