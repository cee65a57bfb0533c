package main

import (
	"net"
	"net/http"
	"strings"

	"github.com/citadel-go/citadel/client/web"
)

// withWeb serves the browser sample client (-web) at / of the login
// listener beside the login API, so the page's register and login
// requests are same-origin.
func withWeb(api http.Handler, on bool) http.Handler {
	if !on {
		return api
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", api)
	mux.Handle("/", web.Handler())
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
