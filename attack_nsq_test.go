package citadel

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/mq"
	"github.com/citadel-go/citadel/services"
	"github.com/nsqio/go-nsq"
	"github.com/vmihailenco/msgpack/v5"
)

// Attack 7: messages POSTed to the embedded nsqd's HTTP /pub, as anyone who
// can reach the broker could: a broadcast chat line, a Kick, a client
// request moving another player, an Attach stealing a player, a plugin swap
// to the attacker's script, and real messages captured from the node's
// topic and posted again. None may have an effect; the forgeries (unsigned)
// must be dropped and counted.
func testForgedNSQ(t *testing.T) {
	const attack = "forged NSQ messages"
	gateNode, gameNode := "gate-1", "game-1"
	gameTopic := framework.NodeTopic(services.Game, gameNode)
	tg := startTarget(t, "-plugins", t.TempDir(), "-build-plugins=false")
	if tg.nsqdHTTP == "" {
		t.Fatal("the server printed no embedded nsqd HTTP address")
	}
	// The attacker's own channel on the game node's topic gets a copy of
	// everything sent to it, the players' requests included.
	tp := tapTopic(t, tg.nsqd, gameTopic)
	gateTap := tapTopic(t, tg.nsqd, framework.NodeTopic(services.Gate, gateNode))
	players := playHonestly(t, tg, 4)
	memory := tg.memoryDuring(t, attack)
	t.Cleanup(func() {
		memory()
		tg.checkAlive(t, attack)
		players.check(t, attack)
	})
	kickVictim, moveVictim, attachVictim := players.list[0], players.list[1], players.list[2]
	sessions := tp.sessionsOf(t, kickVictim.c.PlayerID(), moveVictim.c.PlayerID())
	marker, script := markerScript(t)
	rejectedBefore, err := tg.metricSum(rejectionWords...)
	if err != nil {
		t.Fatal(err)
	}

	gate := framework.Addr{Service: services.Gate, Node: gateNode}
	game := framework.Addr{Service: services.Game, Node: gameNode}
	to := func(a framework.Addr, actor string) framework.Addr { a.Actor = actor; return a }
	chat := mustMarshal(&services.ChatMessage{Channel: "system", Text: "forged by the attack suite: the server is closing, send your password to evil.example"})
	forgeries := []struct {
		what, topic string
		body        []byte
	}{
		{"a Broadcast of a system chat line", services.BroadcastTopic,
			mustMarshal(&services.Broadcast{MsgID: services.IDChatMessage, Payload: chat})},
		{"a Kick of " + kickVictim.name, framework.NodeTopic(services.Gate, gateNode), forgedEnvelope{
			from: game, to: to(gate, services.GateSessionsActor), msgID: services.IDKick, toEpoch: gateTap.epoch(),
			payload: mustMarshal(&services.Kick{SessionID: sessions[0], Code: "forged", Reason: "kicked by the attack suite"}),
		}.bytes()},
		{"a Move for " + moveVictim.name, gameTopic, forgedEnvelope{
			from: gate, to: to(game, "player-"+strconv.FormatUint(moveVictim.c.PlayerID(), 10)), msgID: services.IDClientRequest,
			toEpoch: tp.epoch(),
			payload: mustMarshal(&services.ClientRequest{SessionID: sessions[1], MsgID: services.IDMove,
				Payload: mustMarshal(&services.Move{X: moveVictim.x0, Y: moveVictim.y0 + 3})}),
		}.bytes()},
		{"an Attach of " + attachVictim.name + " to a session of the attacker's", gameTopic, forgedEnvelope{
			request: true, from: gate, to: to(game, services.GameActorManager), msgID: services.IDAttach, toEpoch: tp.epoch(),
			payload: mustMarshal(&services.Attach{PlayerID: attachVictim.c.PlayerID(),
				Session: services.SessionRef{Gate: to(gate, services.GateSessionsActor), ID: 1 << 50}}),
		}.bytes()},
		{"a SwapPlugin to the attacker's script", gameTopic, forgedEnvelope{
			request: true, from: gate, to: to(game, services.GamePluginsActor), msgID: services.IDSwapPlugin, toEpoch: tp.epoch(),
			payload: mustMarshal(&services.SwapPlugin{Name: "combat", Path: script}),
		}.bytes()},
	}
	posted := 0
	for _, f := range forgeries {
		if err := publish(tg.nsqdHTTP, f.topic, f.body); err != nil {
			t.Logf("%s: the broker refused %s: %v", attack, f.what, err)
			continue
		}
		posted++
	}
	// Replays: real messages to the game node, posted again as captured.
	replays := tp.lastBodies(20)
	for _, b := range replays {
		if err := publish(tg.nsqdHTTP, gameTopic, b); err != nil {
			t.Logf("%s: the broker refused a replay: %v", attack, err)
		}
	}
	t.Logf("%s: posted %d forgeries and %d captured messages again", attack, posted, len(replays))

	// Wait for the outcome: an effect (the attack worked; the players'
	// checks report it) or every forgery dropped and counted; then give
	// the players time to notice anything.
	scriptRan := func() bool { _, err := os.Stat(marker); return err == nil }
	effect := func() bool {
		for _, h := range players.list {
			if _, problem := h.state(); problem != nil || h.c.Err() != nil {
				return true
			}
		}
		return scriptRan()
	}
	counted := func() float64 {
		n, _ := tg.metricSum(rejectionWords...)
		return n - rejectedBefore
	}
	deadline := time.Now().Add(ioTimeout)
	for !effect() && counted() < float64(posted) && time.Now().Before(deadline) && !tg.exited() {
		time.Sleep(50 * time.Millisecond)
	}
	players.waitProgress(t, attack, 10)
	if scriptRan() {
		t.Errorf("%s: the forged SwapPlugin ran the attacker's script (%s exists)", attack, marker)
	}
	n := counted()
	t.Logf("%s: forgeries counted as rejected in /metrics: %v", attack, n)
	if n < float64(posted) {
		t.Errorf("%s: /metrics counts %v rejected messages (counters named *unsigned*, *bad_signature* or *rejected*); %d unsigned forgeries were posted",
			attack, n, posted)
	}
}

// rejectionWords name the counters of dropped unsigned or badly signed
// mq messages.
var rejectionWords = []string{"unsigned", "bad_signature", "rejected"}

// publish posts one message body to a topic through nsqd's HTTP API.
func publish(nsqdHTTP, topic string, body []byte) error {
	resp, err := httpClient.Post("http://"+nsqdHTTP+"/pub?"+url.Values{"topic": {topic}}.Encode(), "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, answer)
	}
	return nil
}

// forgedEnvelope is a node-to-node envelope in the wire format of
// framework/envelope.go (a msgpack array of 13 fields), unsigned. Each one
// claims a fresh sender incarnation, so it starts a stream of its own and
// is delivered at once, and addresses the destination's current
// incarnation (read off the tapped traffic), so nothing but the missing
// signature stops it.
type forgedEnvelope struct {
	request  bool // a request (kind 2) rather than a one-way send (kind 1)
	from, to framework.Addr
	toEpoch  uint64 // the destination's incarnation
	msgID    framework.MsgID
	payload  []byte
}

func (f forgedEnvelope) bytes() []byte {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	kind, corrID, deadline := uint64(1), uint64(0), int64(0)
	now := time.Now()
	if f.request {
		kind, corrID, deadline = 2, rand.Uint64()>>1, now.Add(time.Minute).UnixNano()
	}
	addr := func(a framework.Addr) {
		enc.EncodeArrayLen(3)
		enc.EncodeString(a.Service)
		enc.EncodeString(a.Node)
		enc.EncodeString(a.Actor)
	}
	enc.EncodeArrayLen(13)
	enc.EncodeUint(kind)
	addr(f.from)
	addr(f.to)
	enc.EncodeUint(rand.Uint64() | 1) // sender incarnation
	enc.EncodeUint(1)                 // sequence number: the stream's first
	enc.EncodeUint(corrID)
	enc.EncodeInt(deadline)
	enc.EncodeInt(now.UnixNano()) // sent
	enc.EncodeUint(uint64(f.msgID))
	enc.EncodeBytes(f.payload)
	enc.EncodeString("")
	enc.EncodeString("")
	enc.EncodeUint(f.toEpoch)
	return buf.Bytes()
}

// tap consumes a topic on the attacker's own ephemeral channel, keeping
// every message body and the session ID of each player's requests.
type tap struct {
	mu       sync.Mutex
	bodies   [][]byte
	sessions map[string]uint64 // player actor -> session ID
	toEpoch  uint64            // the incarnation the tapped node's envelopes are addressed to
}

func tapTopic(t *testing.T, nsqdTCP, topic string) *tap {
	tp := &tap{sessions: make(map[string]uint64)}
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 256
	c, err := nsq.NewConsumer(topic, "attacker#ephemeral", cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetLogger(log.New(io.Discard, "", 0), nsq.LogLevelError)
	c.AddHandler(nsq.HandlerFunc(func(m *nsq.Message) error {
		tp.capture(bytes.Clone(m.Body))
		return nil
	}))
	if err := c.ConnectToNSQD(nsqdTCP); err != nil {
		t.Logf("the broker refused the attacker's consumer: %v", err)
		return tp
	}
	t.Cleanup(func() {
		c.Stop()
		select {
		case <-c.StopChan:
		case <-time.After(ioTimeout):
		}
	})
	return tp
}

func (tp *tap) capture(body []byte) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.bodies = append(tp.bodies, body)
	if len(body) > mq.SealSize && body[0] == 0xC1 && body[1] == 'S' {
		body = body[mq.SealSize:] // the signature is no secret: read what it covers
	}
	for _, part := range unpack(body) {
		var f []any
		if msgpack.Unmarshal(part, &f) != nil || len(f) < 13 {
			continue // not an envelope
		}
		to, _ := f[2].([]any)
		payload, _ := f[9].([]byte)
		tp.toEpoch = asUint(f[12])
		if len(to) != 3 || asUint(f[8]) != uint64(services.IDClientRequest) {
			continue
		}
		actor, _ := to[2].(string)
		var req services.ClientRequest
		if msgpack.Unmarshal(payload, &req) == nil {
			tp.sessions[actor] = req.SessionID
		}
	}
}

// sessionsOf waits until the tap has seen a request from each player and
// returns their session IDs (0 where it saw none: the forgeries then aim
// at a session that does not exist, which no fix may rely on).
func (tp *tap) sessionsOf(t *testing.T, players ...uint64) []uint64 {
	ids := make([]uint64, len(players))
	deadline := time.Now().Add(5 * time.Second)
	for {
		missing := 0
		tp.mu.Lock()
		for i, p := range players {
			ids[i] = tp.sessions["player-"+strconv.FormatUint(p, 10)]
			if ids[i] == 0 {
				missing++
			}
		}
		tp.mu.Unlock()
		if missing == 0 {
			return ids
		}
		if time.Now().After(deadline) {
			t.Logf("the tap saw no requests from %d of the victims; forging with unknown session IDs", missing)
			return ids
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// epoch is the incarnation the tapped node's traffic is addressed to.
func (tp *tap) epoch() uint64 {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.toEpoch
}

func (tp *tap) lastBodies(n int) [][]byte {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([][]byte(nil), tp.bodies[max(0, len(tp.bodies)-n):]...)
}

// unpack splits a body the mq packed several envelopes into (magic
// 00 'C' 'P' 'K', then uvarint-length-prefixed parts); any other body is
// one part.
func unpack(body []byte) [][]byte {
	rest, ok := bytes.CutPrefix(body, []byte{0x00, 'C', 'P', 'K'})
	if !ok {
		return [][]byte{body}
	}
	var parts [][]byte
	for len(rest) > 0 {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			break
		}
		parts = append(parts, rest[k:k+int(n)])
		rest = rest[k+int(n):]
	}
	return parts
}

func asUint(v any) uint64 {
	switch n := v.(type) {
	case int8:
		return uint64(n)
	case int16:
		return uint64(n)
	case int32:
		return uint64(n)
	case int64:
		return uint64(n)
	case uint8:
		return uint64(n)
	case uint16:
		return uint64(n)
	case uint32:
		return uint64(n)
	case uint64:
		return n
	}
	return 0
}
