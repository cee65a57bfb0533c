package game

import (
	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/services"
)

// Messages of the game runtime (local but for releaseRequest; registered
// like every message; IDs 300–349).
type (
	// attachReq hands a session to a player actor; it answers via resp.
	attachReq struct {
		session services.SessionRef
		resp    *framework.Responder
		gen     uint64
		moved   bool // the session's player moved here (Attach.Moved)
	}
	// graceOver fires when a detached player's grace period ends.
	graceOver struct{ gen uint64 }
	// retire asks the manager to stop a saved, detached player.
	retire struct {
		id  uint64
		gen uint64
	}
	// saveTick makes a player snapshot itself if it is dirty.
	saveTick struct{}
	// gateEnded says every incarnation of a gate node before Incarnation
	// has ended (the node restarted): their sessions are gone.
	gateEnded struct {
		Node        string
		Incarnation uint64
	}
	// gameEnded says incarnation Incarnation of a game node (and every
	// earlier one) has left: exchanges it started will not finish.
	gameEnded struct {
		Node        string
		Incarnation uint64
	}
	// leaseLost says this node lost its lease: every player stops at once.
	leaseLost struct{}
	// releaseRequest asks the node that owns a player in the store to let
	// it go (save and release) because another node must serve it: the
	// gates now route the player there. It crosses nodes.
	releaseRequest struct {
		PlayerID    uint64
		Incarnation uint64 // of the owner the asking node found in the store
		// Session is the session the player is attached to on the asking
		// node: if it is this node's session too, it moved with its
		// client connection open and is not told it logged in elsewhere.
		Session services.SessionRef
	}
	// moveReq asks a player actor to move to another game node (drain,
	// rebalance): Target, or the node the ring picks if "".
	moveReq struct {
		id     uint64
		target string
	}
	// moveExpired ends a move whose Held never came (its gate is gone).
	moveExpired struct{ gen uint64 }
	// listPlayers asks the manager for the IDs of its players.
	listPlayers struct{}
	// playerList answers listPlayers.
	playerList struct{ ids []uint64 }
	// mail (in mail.go) takes a ToPlayer from the manager to the player.
)

func registerLocal(r *framework.Registry) error {
	for id, m := range map[framework.MsgID]any{300: (*attachReq)(nil), 301: (*graceOver)(nil), 302: (*retire)(nil),
		303: (*saveTick)(nil), 304: (*gateEnded)(nil), 305: (*gameEnded)(nil), 306: (*leaseLost)(nil), 307: (*releaseRequest)(nil),
		308: (*moveReq)(nil), 309: (*moveExpired)(nil), 320: (*listPlayers)(nil), 321: (*playerList)(nil), 322: (*mail)(nil)} {
		if err := r.Register(id, m); err != nil {
			return err
		}
	}
	return nil
}
