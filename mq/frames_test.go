package mq

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"reflect"
	"testing"
)

// countingConn counts the writes that reach a real TCP socket.
type countingConn struct {
	net.Conn
	writes int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes++
	return c.Conn.Write(p)
}

// tcpPair returns a frameConn over the server end of a loopback TCP
// connection, its write counter, and the client end.
func tcpPair(t *testing.T) (*frameConn, *countingConn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	cc := &countingConn{Conn: server}
	return &frameConn{Conn: cc}, cc, client
}

// frame is an nsqd frame: size, type, data.
func frame(typ uint32, data string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(4+len(data)))
	b = binary.BigEndian.AppendUint32(b, typ)
	return append(b, data...)
}

func writeAll(t *testing.T, c *frameConn, parts ...[]byte) {
	t.Helper()
	for _, p := range parts {
		if n, err := c.Write(p); err != nil || n != len(p) {
			t.Fatalf("Write(%d bytes) = %d, %v", len(p), n, err)
		}
	}
}

func readN(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFrameConnSendsEachFrameInOneWrite(t *testing.T) {
	fc, cc, peer := tcpPair(t)
	msg := frame(2, "a message body")
	// nsqd's unbuffered writer: size, type and data as three calls.
	writeAll(t, fc, msg[:4], msg[4:8], msg[8:])
	if cc.writes != 1 {
		t.Errorf("three-part frame took %d socket writes, want 1", cc.writes)
	}
	if got := readN(t, peer, len(msg)); !bytes.Equal(got, msg) {
		t.Errorf("peer read %q, want %q", got, msg)
	}

	// A buffered writer's flush: whole frames pass straight through.
	two := append(frame(0, "OK"), frame(2, "second")...)
	writeAll(t, fc, two)
	if cc.writes != 2 {
		t.Errorf("two whole frames took %d more socket writes, want 1", cc.writes-1)
	}
	readN(t, peer, len(two))

	// A flush that ends inside a frame: the tail waits for the rest.
	third := frame(2, "third message")
	writeAll(t, fc, append(frame(0, "OK"), third[:10]...))
	if cc.writes != 2 {
		t.Errorf("a partial frame was written early (%d writes)", cc.writes)
	}
	writeAll(t, fc, third[10:])
	if cc.writes != 3 {
		t.Errorf("completed frames took %d more socket writes, want 1", cc.writes-2)
	}
	if got := readN(t, peer, 4+6+len(third)); !bytes.Equal(got[10:], third) {
		t.Errorf("peer read %q, want ...%q", got, third)
	}
}

func TestFrameConnWritesForeignBytesThrough(t *testing.T) {
	fc, cc, peer := tcpPair(t)
	// A TLS record header after an upgrade: its "size" is absurd.
	tls := []byte{0x16, 0x03, 0x03, 0x00, 0x2a, 1, 2, 3}
	writeAll(t, fc, tls)
	if cc.writes != 1 {
		t.Fatalf("foreign bytes were held back (%d writes)", cc.writes)
	}
	readN(t, peer, len(tls))
	// From then on every write goes through as it comes, even if it looks
	// like the start of a frame.
	msg := frame(2, "x")
	writeAll(t, fc, msg[:4], msg[4:])
	if cc.writes != 3 {
		t.Errorf("after foreign bytes: %d writes, want each passed through (3)", cc.writes)
	}
	readN(t, peer, len(msg))

	// An unknown frame type is foreign too.
	fc2, cc2, peer2 := tcpPair(t)
	bad := frame(9, "??")
	writeAll(t, fc2, bad[:8])
	if cc2.writes != 1 {
		t.Errorf("frame type 9 was held back (%d writes)", cc2.writes)
	}
	readN(t, peer2, 8)
}

// The embedded broker must really serve through frameConn: the swap relies
// on nsqd v1.3.0's unexported tcpListener field.
func TestEmbeddedNSQDJoinsFrames(t *testing.T) {
	b := startTestBroker(t, BrokerConfig{NoLookupd: true})
	f := reflect.ValueOf(b.nsqd).Elem().FieldByName("tcpListener")
	if !f.IsValid() || f.IsNil() {
		t.Fatal("nsqd has no tcpListener field")
	}
	if got := f.Elem().Type(); got != reflect.TypeOf(frameListener{}) {
		t.Fatalf("nsqd listener is %v, want frameListener", got)
	}
	// And messages still flow through it, small and large.
	bus := newTestBus(t, b.BusConfig())
	ch := collect(t, bus, "frames", "c", SubscribeOptions{})
	large := string(bytes.Repeat([]byte("z"), 200<<10))
	for _, body := range []string{"s", large, "after"} {
		if err := bus.Publish("frames", []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	expect(t, ch, "s", large, "after")
}
