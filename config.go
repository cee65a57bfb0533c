package citadel

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/citadel-go/citadel/mq"
	"github.com/citadel-go/citadel/services"
	"golang.org/x/crypto/bcrypt"
)

// Limits of flag values. Outside them a value is a typo or would quietly
// misbehave (a ticker that spins, a rate limiter that kicks every client, a
// zero that the packages below would silently replace by their default).
const (
	minFrame = 256 // the gate's own minimum: room for every client message's header
	// maxFrame leaves half of the mq's 1 MiB message limit for the envelope
	// that carries a frame between gate and game node.
	maxFrame          = mq.DefaultMaxMsgSize / 2
	minClientRate     = 1 // frames/s: a client must at least be able to ping
	maxClientRate     = 1e6
	minGrace          = time.Second // a reconnect needs a login round trip
	minSaveInterval   = 100 * time.Millisecond
	minHeartbeat      = time.Second
	maxHeartbeat      = time.Hour
	minWatch          = 100 * time.Millisecond // a file check is a stat; faster only burns CPU
	minGOGC, maxGOGC  = 1, 100000              // 0 collects continuously; 100000 is already "almost never"
	maxNodeIDLen      = 32
	embeddedNSQDFlags = "-embedded-nsqd-tcp, -embedded-nsqd-http, -embedded-lookupd-tcp, -embedded-lookupd-http"
)

// validate refuses flag values start cannot honour, naming the flag, the
// value and what is allowed. It reports every problem at once.
func (c *config) validate() error {
	var errs []error
	bad := func(flag string, value any, format string, args ...any) {
		errs = append(errs, fmt.Errorf("-%s %v: %s", flag, value, fmt.Sprintf(format, args...)))
	}
	if len(c.Roles) == 0 {
		errs = append(errs, errors.New("-role: no role given (want login, gate and/or game)"))
	}
	for _, r := range c.Roles {
		if r != services.Login && r != services.Gate && r != services.Game {
			bad("role", r, "unknown role (want login, gate or game)")
		}
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("-data: empty (want a directory for the store, NSQ queues and the ticket key)"))
	}
	if err := checkNodeID(c.NodeID); err != nil {
		bad("id", strconv.Quote(c.NodeID), "%v", err)
	}

	// Where NSQ is.
	external := len(c.NSQD) > 0
	for _, a := range c.NSQD {
		if err := checkAddr(a, false); err != nil {
			bad("nsqd", a, "%v", err)
		}
	}
	for _, a := range c.NSQDHTTPExt {
		if err := checkAddr(a, false); err != nil {
			bad("nsqd-http", a, "%v", err)
		}
	}
	for _, a := range c.Lookupd {
		if err := checkAddr(a, false); err != nil {
			bad("lookupd", a, "%v", err)
		}
	}
	if !external && (len(c.NSQDHTTPExt) > 0 || len(c.Lookupd) > 0) {
		errs = append(errs, errors.New("-nsqd-http and -lookupd describe an external NSQ cluster: give its nsqd TCP addresses with -nsqd too"))
	}
	if !external {
		for _, l := range []struct{ flag, addr string }{{"embedded-nsqd-tcp", c.NSQDTCP}, {"embedded-nsqd-http", c.NSQDHTTP},
			{"embedded-lookupd-tcp", c.LookupdTCP}, {"embedded-lookupd-http", c.LookupdHTTP}} {
			if err := checkAddr(l.addr, true); err != nil {
				bad(l.flag, strconv.Quote(l.addr), "%v", err)
			}
		}
	}

	// Listeners and what clients are told.
	if err := checkAddr(c.AdminAddr, true); err != nil {
		bad("admin", strconv.Quote(c.AdminAddr), "%v", err)
	}
	if c.has(services.Login) {
		if err := checkAddr(c.LoginAddr, true); err != nil {
			bad("login", strconv.Quote(c.LoginAddr), "%v", err)
		}
	}
	if c.has(services.Gate) {
		if c.GateTCP == "" && c.GateWS == "" {
			errs = append(errs, errors.New("-gate-tcp and -gate-ws are both empty: the gate needs at least one listener"))
		}
		for _, l := range []struct{ flag, addr string }{{"gate-tcp", c.GateTCP}, {"gate-ws", c.GateWS}} {
			if l.addr == "" {
				continue
			}
			if err := checkAddr(l.addr, true); err != nil {
				bad(l.flag, strconv.Quote(l.addr), "%v", err)
			}
		}
	}
	if c.PublicTCP != "" {
		if err := checkAddr(c.PublicTCP, false); err != nil {
			bad("public-tcp", c.PublicTCP, "%v", err)
		}
	}
	if c.PublicWS != "" {
		if u, err := url.Parse(c.PublicWS); err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			bad("public-ws", c.PublicWS, "want a WebSocket URL such as wss://play.example.com/ws")
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, fmt.Errorf("-tls-cert %q and -tls-key %q: give both (a certificate and its private key) or neither", c.TLSCert, c.TLSKey))
	}
	for _, o := range c.AllowedOrigins {
		if err := checkOrigin(o); err != nil {
			bad("ws-origin", o, "%v", err)
		}
	}

	// Tuning.
	if c.BcryptCost < bcrypt.MinCost || c.BcryptCost > bcrypt.MaxCost {
		bad("bcrypt-cost", c.BcryptCost, "want %d to %d (each step doubles the time per login)", bcrypt.MinCost, bcrypt.MaxCost)
	}
	if c.Grace < minGrace {
		bad("grace", c.Grace, "want at least %s", short(minGrace))
	}
	if c.SaveInterval < minSaveInterval {
		bad("save-interval", c.SaveInterval, "want at least %s", short(minSaveInterval))
	}
	if c.Heartbeat < minHeartbeat || c.Heartbeat > maxHeartbeat {
		bad("heartbeat", c.Heartbeat, "want %s to %s", short(minHeartbeat), short(maxHeartbeat))
	}
	if c.MaxFrame < minFrame || c.MaxFrame > maxFrame {
		bad("max-frame", c.MaxFrame, "want %d to %d bytes", minFrame, maxFrame)
	}
	if math.IsNaN(c.ClientRate) || c.ClientRate < minClientRate || c.ClientRate > maxClientRate {
		bad("client-rate", c.ClientRate, "want %d to %d frames per second", minClientRate, int(maxClientRate))
	}
	if c.MaxConns < 1 {
		bad("max-conns", c.MaxConns, "want at least 1 (and under the open-file limit)")
	}
	if c.MaxPending < 1 || c.MaxPending > max(c.MaxConns, 1) {
		bad("max-pending", c.MaxPending, "want 1 to -max-conns (%d)", c.MaxConns)
	}
	if c.AuthTimeout <= 0 {
		bad("auth-timeout", c.AuthTimeout, "want more than 0")
	}
	if c.HandshakeTimeout <= 0 {
		bad("ws-handshake-timeout", c.HandshakeTimeout, "want more than 0")
	}
	if c.SendQueueBytes < 2*c.MaxFrame {
		bad("send-queue-bytes", c.SendQueueBytes, "want at least twice -max-frame (%d)", 2*c.MaxFrame)
	}
	if c.Game == nil && slices.Contains(c.Roles, services.Game) || c.Game == nil && slices.Contains(c.Roles, services.Gate) {
		errs = append(errs, errors.New("no game: a server with the game or gate role needs one (citadel.Run's game argument)"))
	}
	if c.LeaseTTL < time.Second || c.LeaseTTL > time.Hour {
		bad("lease-ttl", c.LeaseTTL, "want 1s to 1h")
	}
	if c.NodeHeartbeat != 0 && (c.NodeHeartbeat < 100*time.Millisecond || c.NodeHeartbeat > time.Minute) {
		bad("node-heartbeat", c.NodeHeartbeat, "want 100ms to 1m")
	}
	hb := c.NodeHeartbeat
	if hb == 0 {
		hb = time.Second // the framework's default
	}
	if c.MemberTTL != 0 && c.MemberTTL < 2*hb {
		bad("member-ttl", c.MemberTTL, "want at least twice -node-heartbeat (%v)", 2*hb)
	}

	if c.DrainRate < 0 {
		bad("drain-rate", c.DrainRate, "want more than 0")
	}
	if c.DrainTimeout < 0 {
		bad("drain-timeout", c.DrainTimeout, "want 0 or more")
	}
	if c.RebalanceRate < 0 {
		bad("rebalance-rate", c.RebalanceRate, "want 0 (off) or more")
	}
	if c.HoldTimeout != 0 && c.HoldTimeout < time.Second {
		bad("hold-timeout", c.HoldTimeout, "want at least 1s")
	}
	if c.DrainRate == 0 {
		c.DrainRate = 200
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = time.Minute
	}

	// Store, tables, plugins.
	switch c.Store {
	case "", "bbolt":
		if c.PostgresDSN != "" {
			errs = append(errs, errors.New("-pg is set but -store is bbolt: add -store postgres to use PostgreSQL"))
		}
	case "postgres":
		if c.PostgresDSN == "" {
			errs = append(errs, errors.New("-store postgres needs -pg DSN (e.g. postgres://user@host:5432/citadel)"))
		}
	default:
		bad("store", c.Store, "want bbolt or postgres")
	}
	if c.TablesWatch < 0 || c.TablesWatch > 0 && c.TablesWatch < minWatch {
		bad("tables-watch", c.TablesWatch, "want 0 (off) or at least %s", short(minWatch))
	}
	if c.TablesWatch > 0 && c.TablesPath == "" {
		errs = append(errs, errors.New("-tables-watch needs -tables FILE (the built-in tables cannot change)"))
	}
	if c.PluginsWatch < 0 || c.PluginsWatch > 0 && c.PluginsWatch < minWatch {
		bad("plugins-watch", c.PluginsWatch, "want 0 (off) or at least %s", short(minWatch))
	}
	if c.PluginsWatch > 0 && c.PluginsDir == "" {
		errs = append(errs, errors.New("-plugins-watch needs a plugin folder (-plugins is -)"))
	}
	return errors.Join(errs...)
}

// checkAddr checks a host:port; listen addresses may use port 0 (any free
// port), addresses to dial may not.
func checkAddr(addr string, listen bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port (%v)", err)
	}
	if strings.ContainsAny(host, " /") {
		return errors.New("want host:port: the host has a space or a slash")
	}
	p, err := strconv.ParseUint(port, 10, 16)
	lowest := uint64(1)
	if listen {
		lowest = 0
	}
	if err != nil || p < lowest {
		return fmt.Errorf("want host:port with a port from %d to 65535", lowest)
	}
	return nil
}

// checkOrigin checks a -ws-origin: the gate compares it with the browser's
// Origin header, which is scheme://host[:port] and nothing more, so a
// trailing slash or path would never match.
func checkOrigin(o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return errors.New("want * or an origin such as https://play.example.com (scheme, host, optional port; no path or trailing slash)")
	}
	return nil
}

// checkNodeID checks -id: it becomes part of NSQ topic and channel names.
func checkNodeID(id string) error {
	if id == "" || len(id) > maxNodeIDLen {
		return fmt.Errorf("want 1 to %d characters", maxNodeIDLen)
	}
	for _, r := range id {
		if r != '_' && r != '-' && !(r >= 'a' && r <= 'z') && !(r >= 'A' && r <= 'Z') && !(r >= '0' && r <= '9') {
			return fmt.Errorf("%q is not allowed (want letters, digits, _ and -)", r)
		}
	}
	return nil
}

// short writes a duration as a flag would take it: 1h, not 1h0m0s.
func short(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
