package services

import "time"

// The login service's HTTP JSON API: POST /v1/register and POST /v1/login,
// both with a Credentials body. Success is LoginResponse (201 for register,
// 200 for login); failure is LoginErrorBody with one of the LoginCode*
// codes and a matching HTTP status.
type (
	// Credentials is the request body.
	Credentials struct {
		Name     string `json:"name"`
		Password string `json:"password"`
	}
	// GateInfo says where to connect.
	GateInfo struct {
		Node string `json:"node"`
		TCP  string `json:"tcp,omitempty"` // host:port
		WS   string `json:"ws,omitempty"`  // ws:// or wss:// URL
	}
	// LoginResponse carries the ticket to present as the first frame at Gate.
	LoginResponse struct {
		PlayerID  uint64    `json:"player_id"`
		Ticket    string    `json:"ticket"`
		ExpiresAt time.Time `json:"expires_at"`
		Gate      GateInfo  `json:"gate"`
	}
	// LoginErrorBody is the body of every error response.
	LoginErrorBody struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
)

// Login API error codes.
const (
	LoginCodeBadRequest     = "bad_request"     // 400: malformed body, invalid name or password
	LoginCodeBadCredentials = "bad_credentials" // 401
	LoginCodeNameTaken      = "name_taken"      // 409
	LoginCodeRateLimited    = "rate_limited"    // 429, with Retry-After
	LoginCodeNoGate         = "no_gate"         // 503: no gate online
	LoginCodeInternal       = "internal"        // 500
)
