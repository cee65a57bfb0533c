package gate_test

import (
	"context"
	"testing"
	"time"

	"github.com/citadel-go/citadel/client"
	"github.com/citadel-go/citadel/gate"
	"github.com/citadel-go/citadel/services"
)

// A session that got a broadcast (written by its send goroutine, which
// sets a write deadline) and then stayed quiet for longer than
// WriteTimeout still gets its next reply: the reply, written at once
// from the caller's goroutine, must not trip over the send goroutine's
// old deadline and close the connection without a word. (Found by the
// 30,000-connection run: idle clients near playing bots lost their
// connections a heartbeat after the first broadcast reached them.)
func TestReplyAfterAnOldWriteDeadline(t *testing.T) {
	const writeTimeout = 200 * time.Millisecond
	r := newRig(t, func(c *gate.Config) { c.WriteTimeout = writeTimeout })
	// Consecutive players start in the same map cell: b's moves are
	// broadcast to a.
	a, b := r.witness(), r.witness()
	info := waitPush[*services.PlayerInfo](t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := b.Call(ctx, &services.Move{X: info.X + 1, Y: info.Y}); err != nil {
		t.Fatalf("move: %v", err)
	}
	waitPush[*services.PlayerMoved](t, a)
	time.Sleep(3 * writeTimeout) // a's write deadline is now in the past
	if _, err := a.Call(ctx, &services.Echo{Data: []byte("still there?")}); err != nil {
		t.Fatalf("the reply after a quiet spell: %v", err)
	}
}

// waitPush reads c's pushes until one of type T.
func waitPush[T any](t *testing.T, c *client.Conn) T {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-c.Pushes():
			if v, ok := m.(T); ok {
				return v
			}
		case <-deadline:
			var zero T
			t.Fatalf("no %T within 10s", zero)
			return zero
		}
	}
}
