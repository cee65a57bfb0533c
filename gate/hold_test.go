package gate_test

import (
	"context"
	"testing"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/services"
)

// A game node that misses its heartbeats is only suspect: its sessions'
// requests wait at the gate (none is lost, none kicked) and go on, in
// order, when it beats again. When it is gone for good (buried, or
// replaced), its sessions are attached again with their connections open.
func TestSuspectGameNodeHoldsRequestsAndNobodyIsKicked(t *testing.T) {
	r := newRig(t, nil)
	c := r.witness()
	info := (<-c.Pushes()).(*services.PlayerInfo)
	game := framework.Member{Service: services.Game, Node: "game-1"}
	move := func() chan any {
		done := make(chan any, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := c.Call(ctx, &services.Move{X: info.X, Y: info.Y})
			if err != nil {
				done <- err
				return
			}
			done <- res
		}()
		return done
	}
	expectMoved := func(done chan any, moves int64) {
		t.Helper()
		select {
		case res := <-done:
			if m, ok := res.(*services.Moved); !ok || m.Moves != moves {
				t.Fatalf("move answered %v, want move %d", res, moves)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a held move was never answered")
		}
	}

	r.gate.MemberEvent(framework.MemberEvent{Kind: framework.MemberSuspect, Member: game})
	first := move()
	select {
	case res := <-first:
		t.Fatalf("a request for a suspect node's player was answered at once (%v): it must wait", res)
	case <-time.After(300 * time.Millisecond):
	}
	r.gate.MemberEvent(framework.MemberEvent{Kind: framework.MemberRecovered, Member: game})
	expectMoved(first, info.Moves+1)

	// Gone for good (a restart, or buried by its lease): attached again,
	// the same actor resumed, the connection open.
	r.gate.MemberEvent(framework.MemberEvent{Kind: framework.MemberLeft, Member: game})
	expectMoved(move(), info.Moves+2)
	if c.Err() != nil {
		t.Fatalf("the session closed: %v", c.Err())
	}
}
