package citadel

import (
	"net"
	"net/http"
	"strings"
)

// WebClient is a game with a browser client: -web serves its handler at /
// of the login listener (the sample game's is client/web, built from the
// TypeScript SDK).
type WebClient interface {
	WebHandler() http.Handler
}

// webHandler is the game's browser client when -web asks for it, or nil.
func webHandler(cfg config) http.Handler {
	if w, ok := cfg.Game.(WebClient); ok && cfg.Web {
		return w.WebHandler()
	}
	return nil
}

// withWeb serves a browser client (-web) at / of the login listener
// beside the login API, so the page's register and login requests are
// same-origin.
func withWeb(api, web http.Handler) http.Handler {
	if web == nil {
		return api
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", api)
	mux.Handle("/", web)
	return mux
}

// webOrigins are the origins a browser gives the page -web serves on the
// login address, which the gate must allow to open WebSockets: the page
// is on the login port, the gate on another. An address on every
// interface gets the loopback names; reaching it by another name needs
// -ws-origin. Port 0 (chosen at start) cannot be known here.
func webOrigins(loginAddr string, tls bool) []string {
	host, port, err := net.SplitHostPort(loginAddr)
	if err != nil || port == "0" || port == "" {
		return nil
	}
	scheme := "http://"
	if tls {
		scheme = "https://"
	}
	var hosts []string
	switch strings.ToLower(host) {
	case "", "0.0.0.0", "::":
		hosts = []string{"localhost", "127.0.0.1", "[::1]"}
	case "127.0.0.1", "localhost":
		hosts = []string{"localhost", "127.0.0.1"}
	case "::1":
		hosts = []string{"localhost", "[::1]"}
	default:
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		hosts = []string{host}
	}
	// A browser leaves the scheme's default port out of the origin.
	implicit := (!tls && port == "80") || (tls && port == "443")
	out := make([]string, 0, 2*len(hosts))
	for _, h := range hosts {
		if implicit {
			out = append(out, scheme+h)
		}
		out = append(out, scheme+h+":"+port)
	}
	return out
}
