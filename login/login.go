// Package login is Citadel's account service: an HTTP JSON API to register
// and log in. A successful login returns a signed ticket for the least
// loaded live gate, which the client presents as its first frame there.
package login

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/framework/ticket"
	"github.com/citadel-go/citadel/services"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"
)

// Error codes in JSON error bodies (see services.LoginCode*).
const (
	CodeBadRequest     = services.LoginCodeBadRequest
	CodeBadCredentials = services.LoginCodeBadCredentials
	CodeNameTaken      = services.LoginCodeNameTaken
	CodeRateLimited    = services.LoginCodeRateLimited
	CodeNoGate         = services.LoginCodeNoGate
	CodeInternal       = services.LoginCodeInternal
)

// Config configures the service. Zero values are defaults, except Store,
// Tickets and Node.
type Config struct {
	Store   store.Store
	Tickets *ticket.Signer
	// Node is the login node; its membership lists live gates and their load.
	Node *framework.Node
	// TicketTTL is how long a ticket is valid. Default 30s.
	TicketTTL time.Duration
	// BcryptCost is the password hashing cost. Default 10 (~50ms per hash on
	// a 2-core box); lower it only for load tests.
	BcryptCost int
	// HashWorkers bounds concurrent password hashes, so a login storm cannot
	// take every core from the players already in game. Default half of
	// GOMAXPROCS (at least 1).
	HashWorkers int
	// IPRate and IPBurst limit register and login attempts per client IP.
	// Default 10/s, burst 20.
	IPRate  rate.Limit
	IPBurst int
	// AccountRate and AccountBurst limit login attempts per account name.
	// Default one per 3s, burst 10.
	AccountRate  rate.Limit
	AccountBurst int
	// Exempt lists client networks not limited per IP. Default loopback,
	// so local bots and tests are not throttled; set it to an empty,
	// non-nil slice to limit everyone.
	Exempt []netip.Prefix
	// Logger is the service's logger. Default the node's.
	Logger *slog.Logger
	// Metrics registers citadel_login_* metrics. Nil skips registration.
	Metrics prometheus.Registerer
}

// Service serves the login API.
type Service struct {
	cfg      Config
	log      *slog.Logger
	byIP     *limiterSet
	byName   *limiterSet
	hashSlot chan struct{}
	dummy    []byte // hash compared when the account does not exist, to keep timing equal

	requests *prometheus.CounterVec
	hashTime prometheus.Histogram

	// Gates report their load once per heartbeat; logins between reports
	// count here so a burst does not all go to the same gate.
	assignMu sync.Mutex
	assigned map[string]assignment
}

type assignment struct {
	since time.Time // the heartbeat the count is on top of
	n     int64
}

// New validates cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Tickets == nil || cfg.Node == nil {
		return nil, errors.New("login: Config needs Store, Tickets and Node")
	}
	if cfg.TicketTTL <= 0 {
		cfg.TicketTTL = 30 * time.Second
	}
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = bcrypt.DefaultCost
	}
	if cfg.BcryptCost < bcrypt.MinCost || cfg.BcryptCost > bcrypt.MaxCost {
		return nil, fmt.Errorf("login: bcrypt cost %d outside [%d, %d]", cfg.BcryptCost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	if cfg.HashWorkers <= 0 {
		cfg.HashWorkers = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if cfg.IPRate <= 0 {
		cfg.IPRate, cfg.IPBurst = 10, 20
	}
	if cfg.AccountRate <= 0 {
		cfg.AccountRate, cfg.AccountBurst = rate.Every(3*time.Second), 10
	}
	if cfg.IPBurst <= 0 {
		cfg.IPBurst = 1
	}
	if cfg.AccountBurst <= 0 {
		cfg.AccountBurst = 1
	}
	if cfg.Exempt == nil {
		cfg.Exempt = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	if cfg.Logger == nil {
		cfg.Logger = cfg.Node.Logger()
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("citadel-timing-equaliser"), cfg.BcryptCost)
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "login"),
		byIP:     newLimiterSet(cfg.IPRate, cfg.IPBurst, 100000),
		byName:   newLimiterSet(cfg.AccountRate, cfg.AccountBurst, 100000),
		hashSlot: make(chan struct{}, cfg.HashWorkers),
		assigned: make(map[string]assignment),
		dummy:    dummy,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "citadel_login_requests_total", Help: "Login API requests by endpoint and result code (ok or an error code).",
		}, []string{"endpoint", "result"}),
		hashTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "citadel_login_password_hash_seconds", Help: "Time to hash or check a password, including the wait for a hashing slot.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	if cfg.Metrics != nil {
		for _, c := range []prometheus.Collector{s.requests, s.hashTime} {
			if err := cfg.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("login: register metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Handler returns the API: POST /v1/register and POST /v1/login.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/register", func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, "register", s.register) })
	mux.HandleFunc("POST /v1/login", func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, "login", s.login) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, CodeBadRequest, "no such endpoint; use POST /v1/register or POST /v1/login")
	})
	return mux
}

// The API's JSON bodies are defined in services (the contract clients share).
type (
	// Credentials is the request body of both endpoints.
	Credentials = services.Credentials
	// GateInfo says where to connect.
	GateInfo = services.GateInfo
	// Response is the body of a successful register or login.
	Response = services.LoginResponse
	// ErrorBody is the body of every error response.
	ErrorBody = services.LoginErrorBody
)

// apiError is a refusal: the HTTP status and the JSON error body's code
// and message.
type apiError struct {
	status  int
	code    string
	message string
}

func fail(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func (s *Service) serve(w http.ResponseWriter, r *http.Request, endpoint string, h func(context.Context, Credentials) (*Response, *apiError)) {
	ip := clientIP(r)
	result := "ok"
	defer func() { s.requests.WithLabelValues(endpoint, result).Inc() }()
	if !s.exempt(ip) && !s.byIP.allow(ip.String(), time.Now()) {
		result = CodeRateLimited
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, CodeRateLimited, "too many attempts from this address; retry later")
		return
	}
	var c Credentials
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		result = CodeBadRequest
		writeError(w, http.StatusBadRequest, CodeBadRequest, "body must be JSON {\"name\": ..., \"password\": ...}: "+err.Error())
		return
	}
	resp, apiErr := h(r.Context(), c)
	if apiErr != nil {
		result = apiErr.code
		if apiErr.status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "3")
		}
		writeError(w, apiErr.status, apiErr.code, apiErr.message)
		return
	}
	status := http.StatusOK
	if endpoint == "register" {
		status = http.StatusCreated
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(resp)
}

func (s *Service) exempt(ip netip.Addr) bool {
	for _, p := range s.cfg.Exempt {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func clientIP(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.IPv4Unspecified()
	}
	return ip.Unmap()
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	var body ErrorBody
	body.Error.Code, body.Error.Message = code, message
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

func validName(name string) error {
	if len(name) < 3 || len(name) > 24 {
		return errors.New("name must be 3-24 characters")
	}
	for _, c := range name {
		if !(c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return fmt.Errorf("name may use letters, digits, '_' and '-', not %q", c)
		}
	}
	return nil
}

func validPassword(pw string) error {
	if !utf8.ValidString(pw) {
		return errors.New("password must be UTF-8")
	}
	// bcrypt ignores bytes beyond 72; refuse them rather than surprise users.
	if n := utf8.RuneCountInString(pw); n < 8 || len(pw) > 72 {
		return errors.New("password must be 8 characters to 72 bytes")
	}
	return nil
}

// hashing runs f in a bounded pool of hashing slots.
func (s *Service) hashing(ctx context.Context, f func() error) error {
	start := time.Now()
	defer func() { s.hashTime.Observe(time.Since(start).Seconds()) }()
	select {
	case s.hashSlot <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.hashSlot }()
	return f()
}

// register creates an account and answers with a ticket, or changes
// nothing: the gate is chosen before the account is created (a client told
// no_gate can retry with the same name), and once the account exists the
// ticket for that gate cannot fail.
func (s *Service) register(ctx context.Context, c Credentials) (*Response, *apiError) {
	if err := validName(c.Name); err != nil {
		return nil, fail(http.StatusBadRequest, CodeBadRequest, "%v", err)
	}
	if err := validPassword(c.Password); err != nil {
		return nil, fail(http.StatusBadRequest, CodeBadRequest, "%v", err)
	}
	p, ok := s.pickGate()
	if !ok {
		return nil, noGate()
	}
	var hash []byte
	err := s.hashing(ctx, func() (err error) {
		hash, err = bcrypt.GenerateFromPassword([]byte(c.Password), s.cfg.BcryptCost)
		return err
	})
	if err != nil {
		s.unpick(p)
		return nil, s.internal("hash password", err)
	}
	acc, err := s.cfg.Store.CreateAccount(ctx, strings.ToLower(c.Name), hash)
	if errors.Is(err, store.ErrExists) {
		s.unpick(p)
		return nil, fail(http.StatusConflict, CodeNameTaken, "the name %q is taken", c.Name)
	}
	if err != nil {
		s.unpick(p)
		return nil, s.internal("create account", err)
	}
	s.log.Info("account registered", "player", acc.ID, "name", acc.Name)
	return s.ticket(acc.ID, p.gate)
}

func (s *Service) login(ctx context.Context, c Credentials) (*Response, *apiError) {
	name := strings.ToLower(c.Name)
	if validName(c.Name) != nil || len(c.Password) > 72 {
		return nil, fail(http.StatusUnauthorized, CodeBadCredentials, "unknown name or wrong password")
	}
	if !s.byName.allow(name, time.Now()) {
		return nil, fail(http.StatusTooManyRequests, CodeRateLimited, "too many attempts for this account; retry later")
	}
	acc, err := s.cfg.Store.Account(ctx, name)
	hash := acc.PasswordHash
	switch {
	case errors.Is(err, store.ErrNotFound):
		hash = s.dummy
	case err != nil:
		return nil, s.internal("load account", err)
	}
	var mismatch bool
	err = s.hashing(ctx, func() error {
		mismatch = bcrypt.CompareHashAndPassword(hash, []byte(c.Password)) != nil
		return nil
	})
	if err != nil {
		return nil, s.internal("check password", err)
	}
	if mismatch || acc.ID == 0 {
		return nil, fail(http.StatusUnauthorized, CodeBadCredentials, "unknown name or wrong password")
	}
	p, ok := s.pickGate()
	if !ok {
		return nil, noGate()
	}
	return s.ticket(acc.ID, p.gate)
}

func noGate() *apiError {
	return fail(http.StatusServiceUnavailable, CodeNoGate, "no gate is online; retry shortly")
}

// ticket signs a ticket for player at gate.
func (s *Service) ticket(player uint64, gate GateInfo) (*Response, *apiError) {
	tok, t, err := s.cfg.Tickets.Issue(player, gate.Node, s.cfg.TicketTTL)
	if err != nil {
		return nil, s.internal("issue ticket", err)
	}
	return &Response{PlayerID: player, Ticket: tok, ExpiresAt: t.Expires.UTC(), Gate: gate}, nil
}

// GateAvailable reports whether login can hand out a gate now: some live
// gate has announced a client address. Readiness checks use it.
func (s *Service) GateAvailable() bool {
	for _, g := range s.cfg.Node.Members().Alive(services.Gate) {
		if usable(g) {
			return true
		}
	}
	return false
}

// maxGateName is the longest gate node name a ticket can carry (its format
// stores the length in one byte).
const maxGateName = 255

// usable: a gate member with a client address, whose name a ticket can
// carry. A name too long for a ticket is skipped here rather than failing
// after an account was created.
func usable(g framework.Member) bool {
	return (g.Meta[services.MetaTCP] != "" || g.Meta[services.MetaWS] != "") && len(g.Node) <= maxGateName
}

// pick is a gate chosen for one player, counted against that gate until
// its next load report.
type pick struct {
	gate  GateInfo
	since time.Time // the load report the count is on top of
}

// pickGate chooses the least loaded live gate, counting the assignment.
func (s *Service) pickGate() (pick, bool) {
	s.assignMu.Lock()
	defer s.assignMu.Unlock()
	var best *framework.Member
	var bestLoad int64
	gates := s.cfg.Node.Members().Alive(services.Gate)
	if len(gates) == 0 {
		// Every gate is suspect (or this node hears them late): one that
		// may be only slow is better than refusing the login.
		for _, g := range s.cfg.Node.Members().All(services.Gate) {
			if !g.Draining {
				gates = append(gates, g)
			}
		}
	}
	for _, g := range gates {
		if !usable(g) {
			continue
		}
		a := s.assigned[g.Node]
		if !a.since.Equal(g.LastSeen) {
			a = assignment{since: g.LastSeen}
			s.assigned[g.Node] = a
		}
		if load := g.Load + a.n; best == nil || load < bestLoad {
			g := g
			best, bestLoad = &g, load
		}
	}
	if best == nil {
		return pick{}, false
	}
	a := s.assigned[best.Node]
	a.n++
	s.assigned[best.Node] = a
	return pick{gate: GateInfo{Node: best.Node, TCP: best.Meta[services.MetaTCP], WS: best.Meta[services.MetaWS]}, since: a.since}, true
}

// unpick takes back the count of a pick whose player was not sent there
// (registration refused), unless the gate has reported its load since.
func (s *Service) unpick(p pick) {
	s.assignMu.Lock()
	defer s.assignMu.Unlock()
	if a := s.assigned[p.gate.Node]; a.since.Equal(p.since) && a.n > 0 {
		a.n--
		s.assigned[p.gate.Node] = a
	}
}

func (s *Service) internal(what string, err error) *apiError {
	s.log.Error("login request failed", "step", what, "err", err)
	return fail(http.StatusInternalServerError, CodeInternal, "internal error")
}
