package citadel

import (
	"slices"
	"testing"
)

// -web allows the page's origin: the login address as a browser names it.
func TestWebOrigins(t *testing.T) {
	for addr, want := range map[string][]string{
		"127.0.0.1:8000":   {"http://localhost:8000", "http://127.0.0.1:8000"},
		":8000":            {"http://localhost:8000", "http://127.0.0.1:8000", "http://[::1]:8000"},
		"0.0.0.0:80":       {"http://localhost", "http://localhost:80", "http://127.0.0.1", "http://127.0.0.1:80", "http://[::1]", "http://[::1]:80"},
		"play.example:443": {"http://play.example:443"},
		"[fe80::1]:8000":   {"http://[fe80::1]:8000"},
		"127.0.0.1:0":      nil, // chosen at start: -ws-origin needed
		"nonsense":         nil,
	} {
		if got := webOrigins(addr, false); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", addr, got, want)
		}
	}
	if got := webOrigins("play.example:443", true); !slices.Equal(got, []string{"https://play.example", "https://play.example:443"}) {
		t.Errorf("TLS: %v", got)
	}
}
