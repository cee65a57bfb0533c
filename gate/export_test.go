package gate

import "github.com/citadel-go/citadel/framework"

// MemberEvent hands the gate a membership event as its watch would.
func (g *Gate) MemberEvent(ev framework.MemberEvent) { g.onMember(ev) }
