package game

import (
	"fmt"
	"github.com/citadel-go/citadel/framework/bounded"
	"reflect"

	"github.com/citadel-go/citadel/framework"
)

// Router maps client message types to handlers for players with state S.
type Router[S any] struct {
	reg      *framework.Registry
	handlers map[framework.MsgID]handler[S]
	// mail: handlers of messages from other actors and timers, by type.
	mail map[reflect.Type]mailHandler[S]
}

type handler[S any] struct {
	name string
	call func(p *Player[S], payload []byte) (any, error)
}

// NewRouter returns an empty router; reg must hold every request and reply
// type handlers use (the same registry the gate validates client frames
// against).
func NewRouter[S any](reg *framework.Registry) *Router[S] {
	return &Router[S]{reg: reg, handlers: make(map[framework.MsgID]handler[S]), mail: make(map[reflect.Type]mailHandler[S])}
}

// Handle registers fn for client messages of type *Req. fn runs on the
// player's actor goroutine with the player's state; it returns the reply
// (sent with the request's seq) or an error. Return a *framework.RemoteError
// (framework.NewError) to give the client a code; any other error reaches
// the client as "internal" and is logged. A nil reply with a nil error sends
// nothing.
func Handle[S, Req, Resp any](r *Router[S], fn func(p *Player[S], req *Req) (*Resp, error)) error {
	id, err := r.reg.ID((*Req)(nil))
	if err != nil {
		return fmt.Errorf("game: handler for %v: %w", reflect.TypeFor[*Req](), err)
	}
	if _, err := r.reg.ID((*Resp)(nil)); err != nil {
		return fmt.Errorf("game: handler for %v replies with %v: %w", reflect.TypeFor[*Req](), reflect.TypeFor[*Resp](), err)
	}
	if _, dup := r.handlers[id]; dup {
		return fmt.Errorf("game: a handler for %v (ID %d) is already registered", reflect.TypeFor[*Req](), id)
	}
	r.handlers[id] = handler[S]{
		name: reflect.TypeFor[Req]().Name(),
		call: func(p *Player[S], payload []byte) (any, error) {
			req := new(Req)
			if err := bounded.Unmarshal(payload, req); err != nil {
				return nil, framework.NewError(CodeBadRequest, fmt.Sprintf("%T does not decode: %v", req, err))
			}
			resp, err := fn(p, req)
			if err != nil || resp == nil {
				return nil, err
			}
			return resp, nil
		},
	}
	return nil
}

// MustHandle is Handle for start-up wiring, where a mistake is a bug.
func MustHandle[S, Req, Resp any](r *Router[S], fn func(p *Player[S], req *Req) (*Resp, error)) {
	if err := Handle(r, fn); err != nil {
		panic(err)
	}
}

// CodeBadRequest is the error code for a request a handler cannot decode.
const CodeBadRequest = "bad_request"
