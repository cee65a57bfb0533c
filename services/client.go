package services

import "github.com/citadel-go/citadel/framework"

// Client protocol messages handled by the gate itself (IDs 100–199). See
// docs/protocol.md for framing.
type (
	// Auth must be a client's first frame: the ticket from login and the
	// client protocol version the client speaks (ProtocolVersion of the
	// build it was made with). A gate refuses a version outside
	// MinProtocolVersion..ProtocolVersion with Error{ErrCodeProtocol}.
	Auth struct {
		Ticket   string
		Protocol int32
	}
	// AuthOK answers Auth: the session is attached to the player's actor.
	AuthOK struct {
		PlayerID uint64
		// Resumed is true when the player's actor was still in its grace
		// period and kept its state.
		Resumed bool
		// HeartbeatMs is how often the client should send Ping; the gate
		// closes a session that is silent for three times as long.
		HeartbeatMs int32
	}
	// Kicked is the last frame before the gate closes a session.
	Kicked struct {
		Code   string
		Reason string
	}
	// Ping is the client's heartbeat; the gate answers with Pong.
	Ping struct {
		ClientTime int64
	}
	// Pong answers Ping.
	Pong struct {
		ClientTime int64
		ServerTime int64
	}
	// Reconnect asks the client to move to another gate (this one is
	// draining): open a connection to TCP or WS and authenticate with
	// Ticket, which is valid for that gate only and briefly. The player's
	// actor keeps its state: the new session resumes it. Replies to
	// requests already sent still arrive on this connection; close it
	// once they have.
	Reconnect struct {
		Gate   string
		TCP    string
		WS     string
		Ticket string
	}
	// Error answers a request that failed; it carries the request's seq.
	Error struct {
		Code    string
		Message string
	}
)

// Client protocol versions. ProtocolVersion goes up when the client
// protocol changes in a way an older client or server cannot follow (a
// message's meaning, the framing, the session rules; adding a message or a
// field does not need it: unknown fields are ignored both ways). A gate
// accepts clients from MinProtocolVersion to ProtocolVersion and answers
// any other with Error{ErrCodeProtocol} naming both, then closes the
// connection. Version 1 is the first to send Auth.Protocol; a client that
// sends none (0) predates versioning.
const (
	ProtocolVersion    = 1
	MinProtocolVersion = 1
)

// Message IDs of the client protocol.
const (
	IDAuth      framework.MsgID = 100
	IDAuthOK    framework.MsgID = 101
	IDKicked    framework.MsgID = 102
	IDPing      framework.MsgID = 103
	IDPong      framework.MsgID = 104
	IDError     framework.MsgID = 105
	IDReconnect framework.MsgID = 106
)

// Kick codes (Kicked.Code), stable for clients to branch on.
const (
	KickBadFrame         = "bad_frame"
	KickFrameTooLarge    = "frame_too_large"
	KickUnknownMessage   = "unknown_message"
	KickBadPayload       = "bad_payload"
	KickNotAuthenticated = "not_authenticated"
	KickBadTicket        = "bad_ticket"
	KickTicketExpired    = "ticket_expired"
	KickTicketReused     = "ticket_reused"
	KickElsewhere        = "logged_in_elsewhere"
	KickIdle             = "idle_timeout"
	KickSlowClient       = "slow_client"
	KickRateLimited      = "rate_limited"
	KickShutdown         = "server_shutdown"
	KickUnavailable      = "game_unavailable"
	// KickServerFull: the gate is at its connection cap (all connections,
	// or those not yet logged in); retry later or another gate.
	KickServerFull = "server_full"
)

// Error codes (Error.Code) the runtime uses; games add their own.
const (
	ErrCodeUnavailable = "unavailable" // the player's game node did not answer
	ErrCodeNoHandler   = "no_handler"  // no handler for that message type
	ErrCodeInternal    = "internal"    // a handler failed unexpectedly
	// ErrCodeDraining: a draining game node refused a new player; the
	// gate attaches the session to another node.
	ErrCodeDraining = "draining"
	// ErrCodeProtocol answers an Auth whose Protocol the gate does not
	// accept; the message names both versions. Update the client (or the
	// server).
	ErrCodeProtocol = "protocol"
)

// RegisterClient registers the gate's own client protocol messages.
func RegisterClient(r *framework.Registry) error {
	return registerAll(r, map[framework.MsgID]any{
		IDAuth: (*Auth)(nil), IDAuthOK: (*AuthOK)(nil), IDKicked: (*Kicked)(nil),
		IDPing: (*Ping)(nil), IDPong: (*Pong)(nil), IDError: (*Error)(nil), IDReconnect: (*Reconnect)(nil),
	})
}

func registerAll(r *framework.Registry, m map[framework.MsgID]any) error {
	for id, proto := range m {
		if err := r.Register(id, proto); err != nil {
			return err
		}
	}
	return nil
}
