package framework

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/citadel-go/citadel/framework/bounded"
	"github.com/vmihailenco/msgpack/v5"
)

// MsgID is a message type's stable wire identifier. IDs are assigned by
// hand, never derived from names, so renaming a Go type does not break
// clients or nodes running an older build.
//
// Ranges: 1–99 are reserved for the framework, 100–9999 for Citadel's own
// services (login, gate, game contracts), 10000 and up for a studio's game.
type MsgID uint16

// Registry maps message types to stable IDs and encodes them with msgpack.
// Messages are pointers to structs. Register at start-up; lookups are
// lock-free afterwards.
type Registry struct {
	mu   sync.Mutex // serializes Register
	snap atomic.Pointer[registrySnapshot]
}

type registrySnapshot struct {
	byID   map[MsgID]reflect.Type // pointer types
	byType map[reflect.Type]MsgID
	cost   map[MsgID]int // bounded.ItemCost of each type, for decoding untrusted bytes
}

// ErrUnregistered is wrapped by errors about message types with no ID.
var ErrUnregistered = errors.New("unregistered message type")

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	r := &Registry{}
	r.snap.Store(&registrySnapshot{byID: map[MsgID]reflect.Type{}, byType: map[reflect.Type]MsgID{}, cost: map[MsgID]int{}})
	return r
}

// Register assigns id to the type of prototype, a pointer to a struct
// (a typed nil such as (*Move)(nil) is fine). Registering the same pair again
// is a no-op; reusing an ID or a type for something else is an error.
func (r *Registry) Register(id MsgID, prototype any) error {
	t := reflect.TypeOf(prototype)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("framework: register ID %d: message type must be a pointer to a struct, got %v", id, t)
	}
	if id == 0 {
		return fmt.Errorf("framework: register %v: ID 0 is reserved", t)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.snap.Load()
	if prev, ok := old.byID[id]; ok {
		if prev == t {
			return nil
		}
		return fmt.Errorf("framework: message ID %d is already registered to %v; cannot register %v", id, prev, t)
	}
	if prev, ok := old.byType[t]; ok {
		return fmt.Errorf("framework: %v is already registered with ID %d; cannot register it as %d", t, prev, id)
	}
	next := &registrySnapshot{
		byID:   make(map[MsgID]reflect.Type, len(old.byID)+1),
		byType: make(map[reflect.Type]MsgID, len(old.byType)+1),
		cost:   make(map[MsgID]int, len(old.cost)+1),
	}
	for k, v := range old.byID {
		next.byID[k] = v
	}
	for k, v := range old.byType {
		next.byType[k] = v
	}
	for k, v := range old.cost {
		next.cost[k] = v
	}
	next.byID[id] = t
	next.byType[t] = id
	next.cost[id] = bounded.ItemCost(t)
	r.snap.Store(next)
	return nil
}

// MustRegister is Register for package-level contract tables, where a
// collision is a programming error found at start-up.
func (r *Registry) MustRegister(id MsgID, prototype any) {
	if err := r.Register(id, prototype); err != nil {
		panic(err)
	}
}

// ID returns the ID registered for msg's type.
func (r *Registry) ID(msg any) (MsgID, error) {
	t := reflect.TypeOf(msg)
	if id, ok := r.snap.Load().byType[t]; ok {
		return id, nil
	}
	return 0, unregisteredError(t)
}

func unregisteredError(t reflect.Type) error {
	switch {
	case t == nil:
		return fmt.Errorf("framework: nil message: %w", ErrUnregistered)
	case t.Kind() == reflect.Struct:
		return fmt.Errorf("framework: %v is not registered (messages are pointers: send &%v{...}): %w", t, t, ErrUnregistered)
	default:
		return fmt.Errorf("framework: %v has no message ID (Registry.Register it first): %w", t, ErrUnregistered)
	}
}

// Name returns the Go type name registered for id, or "" if none.
func (r *Registry) Name(id MsgID) string {
	if t, ok := r.snap.Load().byID[id]; ok {
		return t.String()
	}
	return ""
}

// Marshal encodes msg with msgpack and returns its ID.
func (r *Registry) Marshal(msg any) (MsgID, []byte, error) {
	id, e, err := r.encode(msg)
	if err != nil {
		return 0, nil, err
	}
	defer e.release()
	return id, bytes.Clone(e.buf.Bytes()), nil
}

// encode encodes msg into a pooled buffer; the caller reads e.buf and then
// calls e.release. The remote path copies the bytes straight into the
// envelope, so a send needs no payload allocation of its own.
func (r *Registry) encode(msg any) (MsgID, *pooledEncoder, error) {
	id, err := r.ID(msg)
	if err != nil {
		return 0, nil, err
	}
	e := encoders.Get().(*pooledEncoder)
	e.buf.Reset()
	if err := e.enc.Encode(msg); err != nil {
		e.release()
		return 0, nil, fmt.Errorf("framework: encode %T: %w", msg, err)
	}
	return id, e, nil
}

// pooledEncoder keeps a grown buffer, so encoding a message costs one
// allocation (the result) instead of a buffer that doubles its way up.
type pooledEncoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

func (e *pooledEncoder) release() {
	if e.buf.Cap() <= 64<<10 { // do not keep a huge buffer in the pool
		encoders.Put(e)
	}
}

var encoders = sync.Pool{New: func() any {
	e := &pooledEncoder{}
	e.buf.Grow(512)
	e.enc = msgpack.NewEncoder(&e.buf)
	return e
}}

// New returns a new, zero message of the type registered for id.
func (r *Registry) New(id MsgID) (any, error) {
	t, ok := r.snap.Load().byID[id]
	if !ok {
		return nil, fmt.Errorf("framework: unknown message ID %d: %w", id, ErrUnregistered)
	}
	return reflect.New(t.Elem()).Interface(), nil
}

// Unmarshal decodes data into a new message of the type registered for id.
// data may come from anywhere (a client, the mq): it must be exactly one
// msgpack value within bounded's limits, so a message that claims more than
// it holds is refused before anything is allocated for it.
func (r *Registry) Unmarshal(id MsgID, data []byte) (any, error) {
	s := r.snap.Load()
	t, ok := s.byID[id]
	if !ok {
		return nil, fmt.Errorf("framework: unknown message ID %d: %w", id, ErrUnregistered)
	}
	v := reflect.New(t.Elem()).Interface()
	if err := bounded.UnmarshalCost(data, v, s.cost[id]); err != nil {
		return nil, fmt.Errorf("framework: decode message ID %d (%T): %w", id, v, err)
	}
	return v, nil
}

// RegisteredType describes one registry entry.
type RegisteredType struct {
	ID   MsgID
	Name string
}

// Types lists the registered types ordered by ID (for docs and debugging).
func (r *Registry) Types() []RegisteredType {
	s := r.snap.Load()
	out := make([]RegisteredType, 0, len(s.byID))
	for id, t := range s.byID {
		out = append(out, RegisteredType{ID: id, Name: t.String()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
