package framework

import (
	"errors"
	"fmt"
)

// Errors returned by the runtime. Remote failures arrive as *RemoteError,
// which matches these with errors.Is where a code corresponds.
var (
	ErrActorNotFound = errors.New("actor not found")
	ErrActorExists   = errors.New("actor name already in use")
	ErrMailboxFull   = errors.New("mailbox full")
	ErrNodeStopped   = errors.New("node stopped")
	// ErrNodeUnknown: the destination node is not a live member, so there
	// is no incarnation to address (it is down, left, or not yet heard
	// from); nothing was sent.
	ErrNodeUnknown = errors.New("node is not a live member")
	// ErrNodeLeft: the node a call waited on left the membership (it
	// stopped, crashed or missed its heartbeats) before it answered; the
	// request may or may not have been handled.
	ErrNodeLeft = errors.New("node left before answering")
	// ErrNameInUse: Start found another live process consuming this
	// node's topic: two processes may not share a node name.
	ErrNameInUse      = errors.New("node name in use by another process")
	ErrTimeout        = errors.New("call timed out")
	ErrNoReply        = errors.New("handler returned without replying")
	ErrNotRequest     = errors.New("current message is not a request")
	ErrAlreadyReplied = errors.New("request already answered")
	ErrUndecodable    = errors.New("message could not be decoded")
	ErrPanic          = errors.New("handler panicked")
)

// Error codes carried by RemoteError.
const (
	CodeActorNotFound = "actor_not_found"
	CodeMailboxFull   = "mailbox_full"
	CodeNodeStopped   = "node_stopped"
	CodeNoReply       = "no_reply"
	CodeUndecodable   = "undecodable"
	CodePanic         = "panic"
	CodeError         = "error"
)

var codeErrors = map[string]error{
	CodeActorNotFound: ErrActorNotFound,
	CodeMailboxFull:   ErrMailboxFull,
	CodeNodeStopped:   ErrNodeStopped,
	CodeNoReply:       ErrNoReply,
	CodeUndecodable:   ErrUndecodable,
	CodePanic:         ErrPanic,
}

// RemoteError is an error a handler (or the runtime on its behalf) returned
// to a Call. It crosses nodes as a code and a message, so the caller sees the
// same error whether the callee was local or remote.
type RemoteError struct {
	Code    string
	Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Is makes errors.Is(err, ErrActorNotFound) and friends work on remote errors.
func (e *RemoteError) Is(target error) bool {
	return codeErrors[e.Code] == target
}

// NewError returns a RemoteError with an application-defined code, for
// handlers that want callers to branch on it.
func NewError(code, message string) *RemoteError {
	return &RemoteError{Code: code, Message: message}
}

// toRemoteError keeps codes of RemoteErrors and runtime sentinels and maps
// anything else to CodeError with its message.
func toRemoteError(err error) *RemoteError {
	var re *RemoteError
	if errors.As(err, &re) {
		return re
	}
	for code, sentinel := range codeErrors {
		if errors.Is(err, sentinel) {
			return &RemoteError{Code: code, Message: err.Error()}
		}
	}
	return &RemoteError{Code: CodeError, Message: err.Error()}
}

// TimeoutError is returned by Call when no reply arrived before the
// deadline. It matches ErrTimeout and context.DeadlineExceeded.
type TimeoutError struct {
	To      Addr
	MsgType string
	cause   error
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("framework: call %s to %s: %v", e.MsgType, e.To, ErrTimeout)
}

// Is matches ErrTimeout.
func (e *TimeoutError) Is(target error) bool { return target == ErrTimeout }

// Unwrap returns the context error (context.DeadlineExceeded).
func (e *TimeoutError) Unwrap() error { return e.cause }
