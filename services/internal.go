package services

import "github.com/citadel-go/citadel/framework"

// Messages between gate and game nodes (IDs 200–299). Client payloads cross
// as raw msgpack bytes: the gate checks they decode, the game decodes them
// for its handler.
type (
	// SessionRef names a client session: the gate actor that delivers to it,
	// the incarnation of the gate (a session lives in one process: after a
	// restart its number may name another client's session) and the
	// session's ID there.
	SessionRef struct {
		Gate        framework.Addr
		Incarnation uint64
		ID          uint64
	}
	// Attach asks the game node to create (or resume) the player's actor
	// for a session. The reply is Attached. Moved is set when the session
	// is not new but its player moves here from another game node that
	// saved and released it (a handoff): the client notices nothing, so
	// Config.OnAttach does not run.
	Attach struct {
		PlayerID uint64
		Session  SessionRef
		Moved    bool
	}
	// Attached answers Attach with the actor that now serves the session.
	Attached struct {
		Actor   framework.Addr
		Resumed bool
	}
	// Detach tells the player's actor its session is gone; the actor waits
	// out its grace period, then saves and stops.
	Detach struct {
		PlayerID    uint64
		Incarnation uint64 // the gate's, as in SessionRef
		SessionID   uint64
	}
	// Hold asks the gate to hold the session's client requests because
	// its player is about to move to another game node. The gate answers
	// the player's actor with Held, after every request it forwarded
	// before.
	Hold struct {
		SessionID uint64
	}
	// Held tells the player's actor that the gate holds the session's
	// requests: nothing more comes from the session until Handed.
	Held struct {
		SessionID uint64
	}
	// Handed tells the gate the player's actor saved and released the
	// player: attach the session to Target (a game node; "" lets the gate
	// pick one) and send it the held requests. Aborted: the actor could
	// not hand off and keeps the player; send the held requests back to it.
	Handed struct {
		SessionID uint64
		Target    string
		Aborted   bool
	}
	// NotHere tells the gate that a game node has no actor for a request
	// of the session (the node restarted, or the player moved): the gate
	// attaches the session again, wherever the player is now.
	NotHere struct {
		SessionID uint64
		Actor     framework.Addr
	}
	// ToPlayer carries a message from any actor to a player's actor, by
	// the player's ID: the game node that receives it delivers it to the
	// player's actor there, starts one (loading the player) if the player
	// is not online anywhere, or passes it once to the node that owns the
	// player (Hops counts that). The reply, if it was a request, is the
	// handler's.
	ToPlayer struct {
		PlayerID uint64
		Hops     uint8
		MsgID    framework.MsgID
		Payload  []byte
	}
	// Delivered answers a ToPlayer request whose handler replied nothing.
	Delivered struct{}
	// ClientRequest carries one client frame to the player's actor.
	ClientRequest struct {
		SessionID uint64
		Seq       uint32
		MsgID     framework.MsgID
		Payload   []byte
	}
	// ToClient carries one frame to a session: a reply (Seq of the
	// request) or a push (Seq 0).
	ToClient struct {
		SessionID uint64
		Seq       uint32
		MsgID     framework.MsgID
		Payload   []byte
	}
	// ToClients pushes one frame to several sessions on one gate.
	ToClients struct {
		SessionIDs []uint64
		MsgID      framework.MsgID
		Payload    []byte
	}
	// Kick closes a session with a reason (e.g. a second login).
	Kick struct {
		SessionID uint64
		Code      string
		Reason    string
	}
	// JoinGroup adds a session to a broadcast group on its gate.
	JoinGroup struct {
		SessionID uint64
		Group     string
	}
	// LeaveGroup removes a session from a broadcast group.
	LeaveGroup struct {
		SessionID uint64
		Group     string
	}
	// Broadcast is published on BroadcastTopic: every gate pushes it once
	// to each of its sessions that is in any of Groups (all sessions if
	// Groups is empty).
	Broadcast struct {
		Groups  []string
		MsgID   framework.MsgID
		Payload []byte
	}
)

// BroadcastTopic carries Broadcast messages to every gate.
const BroadcastTopic = "citadel.broadcast"

// Message IDs of the internal contracts.
const (
	IDAttach        framework.MsgID = 200
	IDAttached      framework.MsgID = 201
	IDDetach        framework.MsgID = 202
	IDClientRequest framework.MsgID = 203
	IDToClient      framework.MsgID = 204
	IDToClients     framework.MsgID = 205
	IDKick          framework.MsgID = 206
	IDJoinGroup     framework.MsgID = 207
	IDLeaveGroup    framework.MsgID = 208
	IDBroadcast     framework.MsgID = 209
	IDHold          framework.MsgID = 230
	IDHeld          framework.MsgID = 231
	IDHanded        framework.MsgID = 232
	IDNotHere       framework.MsgID = 233
	IDToPlayer      framework.MsgID = 234
	IDDelivered     framework.MsgID = 235
)

// GameActorManager is the actor on every game node that receives Attach.
const GameActorManager = "players"

// GateSessionsActor is the actor on every gate that delivers ToClient,
// ToClients, Kick, JoinGroup and LeaveGroup to sessions.
const GateSessionsActor = "sessions"

// Membership Meta keys a gate advertises.
const (
	MetaTCP = "tcp" // host:port of the TCP listener
	MetaWS  = "ws"  // ws:// or wss:// URL of the WebSocket endpoint
)

// Membership Meta keys a game node advertises.
const (
	MetaStore   = "store"   // the identity of its store (store.Store.ID)
	MetaStarted = "started" // when it started, unix milliseconds
)

// RegisterInternal registers the gate<->game contracts.
func RegisterInternal(r *framework.Registry) error {
	return registerAll(r, map[framework.MsgID]any{
		IDAttach: (*Attach)(nil), IDAttached: (*Attached)(nil), IDDetach: (*Detach)(nil),
		IDClientRequest: (*ClientRequest)(nil), IDToClient: (*ToClient)(nil), IDToClients: (*ToClients)(nil),
		IDKick: (*Kick)(nil), IDJoinGroup: (*JoinGroup)(nil), IDLeaveGroup: (*LeaveGroup)(nil),
		IDBroadcast: (*Broadcast)(nil), IDHold: (*Hold)(nil), IDHeld: (*Held)(nil), IDHanded: (*Handed)(nil),
		IDNotHere: (*NotHere)(nil), IDToPlayer: (*ToPlayer)(nil), IDDelivered: (*Delivered)(nil),
	})
}
