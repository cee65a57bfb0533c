package framework

import (
	"errors"
	"strings"
	"testing"
)

func TestRegistryRoundTripAndErrors(t *testing.T) {
	r := NewRegistry()
	if err := r.Register(10001, (*Ping)(nil)); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(10001, &Ping{}); err != nil {
		t.Fatalf("re-registering the same pair should be a no-op: %v", err)
	}
	if err := r.Register(10001, (*Pong)(nil)); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Fatalf("reusing an ID: got %v", err)
	}
	if err := r.Register(10002, (*Ping)(nil)); err == nil {
		t.Fatal("registering a type under a second ID should fail")
	}
	if err := r.Register(0, (*Pong)(nil)); err == nil {
		t.Fatal("ID 0 should be refused")
	}
	if err := r.Register(10003, Pong{}); err == nil || !strings.Contains(err.Error(), "pointer to a struct") {
		t.Fatalf("non-pointer prototype: got %v", err)
	}

	id, b, err := r.Marshal(&Ping{N: 7})
	if err != nil || id != 10001 {
		t.Fatalf("Marshal: id %d err %v", id, err)
	}
	m, err := r.Unmarshal(id, b)
	if err != nil || m.(*Ping).N != 7 {
		t.Fatalf("Unmarshal: %v %v", m, err)
	}
	if _, err := r.Unmarshal(id, []byte{0xc1}); err == nil || !strings.Contains(err.Error(), "decode message ID 10001") {
		t.Fatalf("bad payload: got %v", err)
	}
	if _, err := r.Unmarshal(999, b); !errors.Is(err, ErrUnregistered) {
		t.Fatalf("unknown ID: got %v", err)
	}
	if _, err := r.ID(Ping{}); !errors.Is(err, ErrUnregistered) || !strings.Contains(err.Error(), "&framework.Ping") {
		t.Fatalf("value instead of pointer should explain: got %v", err)
	}
	if _, err := r.ID(&Pong{}); !errors.Is(err, ErrUnregistered) {
		t.Fatalf("unregistered type: got %v", err)
	}
	if got := r.Types(); len(got) != 1 || got[0].ID != 10001 || got[0].Name != "*framework.Ping" {
		t.Fatalf("Types: %+v", got)
	}
}

func TestParseAddr(t *testing.T) {
	a, err := ParseAddr("game/game-1/player/42")
	if err != nil || a != (Addr{"game", "game-1", "player/42"}) {
		t.Fatalf("ParseAddr: %+v %v", a, err)
	}
	if a.String() != "game/game-1/player/42" {
		t.Fatalf("String: %s", a)
	}
	for _, bad := range []string{"game", "game/x", "ga me/n/a", "game/n.1/a"} {
		if _, err := ParseAddr(bad); err == nil {
			t.Errorf("ParseAddr(%q) should fail", bad)
		}
	}
}
