package mqtest

import (
	"bytes"
	"io"
	"log"
	"net/http"
	"net/url"
	"testing"

	"github.com/nsqio/go-nsq"
)

// Spy consumes topic on a channel of its own ("spy") with a plain go-nsq
// consumer, as anyone who can reach nsqd can, and returns the message
// bodies exactly as nsqd holds them. The channel is created before the
// consumer connects (go-nsq's SUB does not wait for nsqd), so nothing
// published after Spy returns is missed.
func Spy(t testing.TB, nsqdTCP, nsqdHTTP, topic string) chan []byte {
	t.Helper()
	post(t, "http://"+nsqdHTTP+"/channel/create?"+url.Values{"topic": {topic}, "channel": {"spy"}}.Encode(), nil)
	ch := make(chan []byte, 1000)
	c, err := nsq.NewConsumer(topic, "spy", nsq.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	c.SetLogger(log.New(io.Discard, "", 0), nsq.LogLevelError)
	c.AddHandler(nsq.HandlerFunc(func(m *nsq.Message) error {
		ch <- bytes.Clone(m.Body)
		return nil
	}))
	if err := c.ConnectToNSQD(nsqdTCP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return ch
}

// Publish posts body to topic as is, through nsqd's HTTP /pub: a message
// that did not come from a Bus (unsigned), or one recorded and sent again.
func Publish(t testing.TB, nsqdHTTP, topic string, body []byte) {
	t.Helper()
	post(t, "http://"+nsqdHTTP+"/pub?"+url.Values{"topic": {topic}}.Encode(), body)
}

func post(t testing.TB, u string, body []byte) {
	t.Helper()
	resp, err := http.Post(u, "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: HTTP %d", u, resp.StatusCode)
	}
}
