package framework

import (
	"fmt"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
)

// Addr names an actor anywhere in the cluster: the service and node that
// host it and its name on that node. An Addr with an empty Actor names the
// node itself (the sender of messages sent from outside any actor).
type Addr struct {
	Service string
	Node    string
	Actor   string
}

// String formats the address as "service/node/actor".
func (a Addr) String() string {
	return a.Service + "/" + a.Node + "/" + a.Actor
}

// IsZero reports whether a is the zero address (no sender).
func (a Addr) IsZero() bool { return a == Addr{} }

// NodeAddr returns the address of the node hosting a.
func (a Addr) NodeAddr() Addr { return Addr{Service: a.Service, Node: a.Node} }

// ParseAddr parses "service/node/actor" (the actor part may be empty, and
// may itself contain '/').
func ParseAddr(s string) (Addr, error) {
	parts := strings.SplitN(s, "/", 3)
	if len(parts) != 3 {
		return Addr{}, fmt.Errorf("framework: address %q is not service/node/actor", s)
	}
	a := Addr{Service: parts[0], Node: parts[1], Actor: parts[2]}
	if err := validateNodeName("service", a.Service); err != nil {
		return Addr{}, err
	}
	if err := validateNodeName("node", a.Node); err != nil {
		return Addr{}, err
	}
	return a, nil
}

// EncodeMsgpack writes the address as a 3-element array.
func (a Addr) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeArrayLen(3); err != nil {
		return err
	}
	if err := enc.EncodeString(a.Service); err != nil {
		return err
	}
	if err := enc.EncodeString(a.Node); err != nil {
		return err
	}
	return enc.EncodeString(a.Actor)
}

// DecodeMsgpack reads the 3-element array written by EncodeMsgpack.
func (a *Addr) DecodeMsgpack(dec *msgpack.Decoder) error {
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	if n != 3 {
		return fmt.Errorf("framework: address has %d fields, want 3", n)
	}
	if a.Service, err = dec.DecodeString(); err != nil {
		return err
	}
	if a.Node, err = dec.DecodeString(); err != nil {
		return err
	}
	a.Actor, err = dec.DecodeString()
	return err
}

// maxNodeNameLen bounds service plus node name length so that the node's
// NSQ topic and membership channel stay within NSQ's 64 characters.
const maxNodeNameLen = 50

func validateNodeName(kind, s string) error {
	if s == "" {
		return fmt.Errorf("framework: %s name is empty", kind)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '_' && c != '-' && !(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && !(c >= '0' && c <= '9') {
			return fmt.Errorf("framework: %s name %q has invalid character %q (allowed: [a-zA-Z0-9_-])", kind, s, c)
		}
	}
	return nil
}

func validateActorName(s string) error {
	if s == "" {
		return fmt.Errorf("framework: actor name is empty")
	}
	if len(s) > 128 {
		return fmt.Errorf("framework: actor name %q is longer than 128 bytes", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return fmt.Errorf("framework: actor name %q has a space or control character at %d", s, i)
		}
	}
	return nil
}
