package ticket

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestIssueVerifyAndRefusals(t *testing.T) {
	if _, err := NewSigner([]byte("short")); err == nil {
		t.Fatal("short key accepted")
	}
	s, _ := NewSigner(NewKey())
	tok, tk, err := s.Issue(42, "gate-1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	got, err := s.Verify(tok, "gate-1", now)
	if err != nil || got.PlayerID != 42 || got.Gate != "gate-1" || got.Nonce != tk.Nonce {
		t.Fatalf("verify: %+v %v", got, err)
	}
	if _, err := s.Verify(tok, "gate-2", now); !errors.Is(err, ErrWrongGate) {
		t.Fatalf("wrong gate: %v", err)
	}
	if _, err := s.Verify(tok, "gate-1", now.Add(2*time.Minute)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
	other, _ := NewSigner(NewKey())
	if _, err := other.Verify(tok, "gate-1", now); !errors.Is(err, ErrForged) {
		t.Fatalf("other key: %v", err)
	}
	// Flip one character of the payload (player ID) and keep the signature.
	forged := []byte(tok)
	forged[3] ^= 1
	if _, err := s.Verify(string(forged), "gate-1", now); !errors.Is(err, ErrForged) && !errors.Is(err, ErrMalformed) {
		t.Fatalf("tampered: %v", err)
	}
	for _, bad := range []string{"", "!!!", "aGVsbG8", strings.Repeat("A", 2000)} {
		if _, err := s.Verify(bad, "gate-1", now); !errors.Is(err, ErrMalformed) {
			t.Errorf("%.20q: %v", bad, err)
		}
	}
	g := NewGuard()
	if err := g.Use(got, now); err != nil {
		t.Fatal(err)
	}
	if err := g.Use(got, now); !errors.Is(err, ErrReused) {
		t.Fatalf("reuse: %v", err)
	}
	// Expired nonces are forgotten.
	if err := g.Use(Ticket{Nonce: [16]byte{9}, Expires: now.Add(time.Millisecond)}, now); err != nil {
		t.Fatal(err)
	}
	g.Use(Ticket{Nonce: [16]byte{8}, Expires: now.Add(time.Hour)}, now.Add(2*time.Second))
	if g.Len() != 2 {
		t.Fatalf("guard remembers %d nonces, want 2 (expired ones pruned)", g.Len())
	}
}

func FuzzVerify(f *testing.F) {
	s, _ := NewSigner(make([]byte, 32))
	tok, _, _ := s.Issue(1, "gate-1", time.Hour)
	f.Add(tok)
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, in string) {
		tk, err := s.Verify(in, "gate-1", time.Now())
		if err == nil && s.Sign(tk) != in {
			t.Fatalf("accepted %q that does not re-encode to itself", in)
		}
	})
}
