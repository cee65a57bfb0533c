package gate

import (
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/services"
)

// MemberEvent hands the gate a membership event as its watch would, and
// returns once the gate has acted on it: events are handled on their own
// goroutine, and a test that sends a request right after a Suspect must
// not race it. A no-op event queued behind this one is taken only after
// this one was handled.
func (g *Gate) MemberEvent(ev framework.MemberEvent) {
	g.onMember(ev)
	g.gameEvents <- framework.MemberEvent{Kind: framework.MemberChanged, Member: framework.Member{Service: services.Game}}
	for len(g.gameEvents) > 0 {
		time.Sleep(time.Millisecond)
	}
}
