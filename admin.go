package citadel

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// startAdmin serves the admin HTTP endpoints. Health and metrics are open;
// everything else needs the admin token (adminGuard).
func (s *server) startAdmin() error {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := s.readiness(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	if len(s.nodes) > 0 {
		mux.HandleFunc("/tables", s.tablesHandler)
		mux.HandleFunc("/tables/reload", s.tablesHandler)
		mux.HandleFunc("/plugins", s.pluginsHandler)
		mux.HandleFunc("/plugins/swap", s.pluginsHandler)
		mux.HandleFunc("/plugins/rollback", s.pluginsHandler)
	}
	mux.HandleFunc("/drain", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST /drain: hand this process's players (game) and clients (gate) to the other nodes, then stop", http.StatusMethodNotAllowed)
			return
		}
		select {
		case s.drainReq <- struct{}{}:
		default: // asked already
		}
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, "draining: players and clients move to the other nodes (at most %v a second, for up to %v), then this process stops; /readyz answers 503 meanwhile\n",
			s.cfg.DrainRate, s.cfg.DrainTimeout)
	})
	if s.broker != nil {
		h, err := s.broker.AdminHandler("/nsqadmin")
		if err != nil {
			return err
		}
		mux.Handle("/nsqadmin/", h)
	}
	ln, err := net.Listen("tcp", s.cfg.AdminAddr)
	if err != nil {
		return fmt.Errorf("admin HTTP: %w (choose another address with -admin)", err)
	}
	guard := newAdminGuard(s.adminToken, mux)
	s.admin = &http.Server{Handler: guard, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	go s.admin.Serve(ln)
	s.Admin = "http://" + ln.Addr().String()
	return nil
}

// openAdminPaths need no token: probes and scrapers read them, and they
// change nothing and reveal no secret.
var openAdminPaths = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// adminGuard checks every admin request but the open ones for the admin
// token, and refuses state-changing requests that a browser sent from
// another site.
//
// Why both: the token proves the caller knows the secret. A browser,
// though, resends HTTP Basic credentials it has cached for the admin host
// with any request a page on another site makes it send (a form POST is
// enough), so requests that change state also must not come from another
// site (Origin, Sec-Fetch-Site). Citadel's own state-changing endpoints
// accept only the Authorization: Bearer header, which a cross-site page
// can set only after a CORS preflight, and the guard answers no preflight.
type adminGuard struct {
	sum   [sha256.Size]byte // of the token: compared in constant time, whatever the lengths
	where string            // where the token is, for the 401 message
	next  http.Handler
}

func newAdminGuard(token secret, next http.Handler) *adminGuard {
	return &adminGuard{sum: sha256.Sum256([]byte(token.value)), where: token.from, next: next}
}

func (g *adminGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if openAdminPaths[r.URL.Path] {
		g.next.ServeHTTP(w, r)
		return
	}
	changes := r.Method != http.MethodGet && r.Method != http.MethodHead
	if changes {
		if why := crossSite(r); why != "" {
			http.Error(w, "admin: refused a state-changing request from another site ("+why+
				"); send it from the command line (curl) or from the admin's own pages", http.StatusForbidden)
			return
		}
	}
	nsqadmin := r.URL.Path == "/nsqadmin" || strings.HasPrefix(r.URL.Path, "/nsqadmin/")
	// Basic credentials (what a browser can send on navigation) are enough
	// to read and for the nsqadmin UI, whose pages change state with the
	// browser's cached credentials; Citadel's own changes need Bearer.
	basicOK := nsqadmin || !changes
	if g.authorized(r, basicOK) {
		g.next.ServeHTTP(w, r)
		return
	}
	how := `send the header "Authorization: Bearer TOKEN"`
	if basicOK {
		w.Header().Set("WWW-Authenticate", `Basic realm="citadel admin", charset="UTF-8"`)
		how += " or HTTP Basic credentials with any user name and the token as password"
	} else {
		w.Header().Set("WWW-Authenticate", `Bearer realm="citadel admin"`)
		if r.Header.Get("Authorization") != "" {
			how += " (Basic credentials are accepted only for reading and for /nsqadmin/)"
		}
	}
	http.Error(w, fmt.Sprintf("admin: %s %s needs the admin token: %s; the token is in %s", r.Method, r.URL.Path, how, g.where),
		http.StatusUnauthorized)
}

// authorized reports whether r carries the token: as a bearer token, or as
// a Basic password when basicOK.
func (g *adminGuard) authorized(r *http.Request, basicOK bool) bool {
	var got string
	auth := r.Header.Get("Authorization")
	if scheme, token, ok := strings.Cut(auth, " "); ok && strings.EqualFold(scheme, "Bearer") {
		got = strings.TrimSpace(token)
	} else if _, pass, ok := r.BasicAuth(); ok && basicOK {
		got = pass
	} else {
		return false
	}
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(sum[:], g.sum[:]) == 1
}

// crossSite says why r comes from another site, or "" if it does not: a
// browser's Sec-Fetch-Site other than same-origin or none (typed by the
// user), or an Origin whose host is not the admin host. Requests without
// either header do not come from a browser page.
func crossSite(r *http.Request) string {
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "same-origin", "none":
	default:
		return "Sec-Fetch-Site: " + site
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return ""
	}
	if u, err := url.Parse(origin); err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
		return fmt.Sprintf("Origin %s is not this host, %s", origin, r.Host)
	}
	return ""
}
