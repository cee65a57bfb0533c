package citadel

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/citadel-go/citadel/framework/ticket"
	"github.com/citadel-go/citadel/mq"
)

// Secrets come from an environment variable (which wins) or a file, never
// from a flag: a process's arguments are visible to every user (ps,
// /proc/PID/cmdline) and to anyone who reaches /debug/pprof/cmdline.
const (
	envTicketKey     = "CITADEL_TICKET_KEY"
	envClusterKey    = "CITADEL_CLUSTER_KEY"
	envAdminToken    = "CITADEL_ADMIN_TOKEN"
	envNSQAuthSecret = "CITADEL_NSQ_AUTH_SECRET"
)

// secretEnvs lists the variables run reads and then removes from the
// environment, so that plugin processes and builds do not inherit them.
var secretEnvs = []string{envTicketKey, envClusterKey, envAdminToken, envNSQAuthSecret}

// minAdminToken is the shortest admin token accepted (characters): the
// token is all that stands between the network and plugin swaps.
const minAdminToken = 16

// secret is a loaded secret and where it came from: a file's absolute path
// or an environment variable's name. Messages name the place, never the value.
type secret struct {
	value string
	from  string
}

// loadSecret returns envValue (from variable env) if set, else the trimmed
// content of path. A missing file is created with generate's output (mode
// 0600) when generate is not nil; otherwise the error wraps fs.ErrNotExist.
// A file that other users may read or change is used with a warning.
func loadSecret(log *slog.Logger, env, envValue, path string, generate func() string) (secret, error) {
	if envValue != "" {
		return secret{value: strings.TrimSpace(envValue), from: "the environment variable " + env}, nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return secret{}, err
	}
	if generate != nil {
		f, err := os.OpenFile(abs, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		switch {
		case err == nil:
			v := generate()
			_, err = f.WriteString(v)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(abs)
				return secret{}, fmt.Errorf("write %s: %w", abs, err)
			}
			log.Info("created a secret file (mode 0600)", "file", abs)
			return secret{value: strings.TrimSpace(v), from: abs}, nil
		case !errors.Is(err, fs.ErrExist):
			return secret{}, fmt.Errorf("create %s: %w", abs, err)
		}
	}
	st, err := os.Stat(abs)
	if err != nil {
		return secret{}, err
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		log.Warn("a secret file can be read or changed by other users; chmod 600 it", "file", abs, "mode", perm)
	}
	b, err := os.ReadFile(abs)
	if err != nil {
		return secret{}, err
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		fix := "put the secret in it"
		if generate != nil {
			fix += ", or delete it and a new one is made"
		}
		return secret{}, fmt.Errorf("%s is empty (%s)", abs, fix)
	}
	return secret{value: v, from: abs}, nil
}

// loadTicketKey returns the key that signs login tickets: login and gate
// processes must share it. A missing file is created.
func loadTicketKey(cfg config, log *slog.Logger) ([]byte, secret, error) {
	s, err := loadSecret(log, envTicketKey, cfg.TicketKey, cfg.TicketKeyFile, func() string {
		return hex.EncodeToString(ticket.NewKey()) + "\n"
	})
	if err != nil {
		return nil, s, fmt.Errorf("ticket key: %w", err)
	}
	k, err := hex.DecodeString(s.value)
	if err != nil {
		return nil, s, fmt.Errorf("ticket key from %s is not hex: %w", s.from, err)
	}
	if len(k) < ticket.MinKeyLen {
		return nil, s, fmt.Errorf("ticket key from %s has %d bytes; at least %d are needed (e.g. openssl rand -hex 32)", s.from, len(k), ticket.MinKeyLen)
	}
	return k, s, nil
}

// loadClusterKey returns the keyring that signs the cluster's NSQ
// messages. A process that runs the embedded NSQ makes one if it has
// none; a process that joins a cluster must be given the cluster's.
func loadClusterKey(cfg config, log *slog.Logger) (*mq.Keyring, secret, error) {
	external := len(cfg.NSQD) > 0
	generate := mq.GenerateKeyring
	if external {
		generate = nil
	}
	s, err := loadSecret(log, envClusterKey, cfg.ClusterKey, cfg.ClusterKeyFile, generate)
	if errors.Is(err, fs.ErrNotExist) {
		path, _ := filepath.Abs(cfg.ClusterKeyFile)
		return nil, s, fmt.Errorf("no cluster key: %s does not exist. Every process of a cluster needs the same cluster key "+
			"to sign and check NSQ messages: copy cluster.key from the data directory of the process that runs the embedded NSQ "+
			"(for a cluster without one, make it once: umask 077; printf '1 %%s\\n' \"$(openssl rand -hex 32)\" > cluster.key) "+
			"and give it with -cluster-key-file FILE, or put its content in %s", path, envClusterKey)
	}
	if err != nil {
		return nil, s, fmt.Errorf("cluster key: %w", err)
	}
	k, err := mq.ParseKeyring(s.value)
	if err != nil {
		return nil, s, fmt.Errorf("cluster key from %s: %w", s.from, err)
	}
	return k, s, nil
}

// loadAdminToken returns the token the admin HTTP endpoints require. A
// missing file is created with a random token.
func loadAdminToken(cfg config, log *slog.Logger) (secret, error) {
	s, err := loadSecret(log, envAdminToken, cfg.AdminToken, cfg.AdminTokenFile, func() string {
		b := make([]byte, 32)
		rand.Read(b)
		return hex.EncodeToString(b) + "\n"
	})
	if err != nil {
		return s, fmt.Errorf("admin token: %w", err)
	}
	if len(s.value) < minAdminToken {
		return s, fmt.Errorf("admin token from %s has %d characters; use at least %d (e.g. openssl rand -hex 32)", s.from, len(s.value), minAdminToken)
	}
	return s, nil
}

// nsqTLS builds the TLS configuration for an external nsqd (-nsq-tls):
// -nsq-ca-file verifies nsqd's certificate (default: the system's roots),
// -nsq-cert-file and -nsq-key-file answer --tls-client-auth-policy.
func nsqTLS(cfg config, log *slog.Logger) (*tls.Config, error) {
	if !cfg.NSQTLS {
		if cfg.NSQCAFile != "" || cfg.NSQCertFile != "" || cfg.NSQKeyFile != "" {
			return nil, errors.New("-nsq-ca-file, -nsq-cert-file and -nsq-key-file need -nsq-tls")
		}
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.NSQCAFile != "" {
		pem, err := os.ReadFile(cfg.NSQCAFile)
		if err != nil {
			return nil, fmt.Errorf("-nsq-ca-file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-nsq-ca-file %s holds no PEM certificate", cfg.NSQCAFile)
		}
	}
	if (cfg.NSQCertFile == "") != (cfg.NSQKeyFile == "") {
		return nil, errors.New("-nsq-cert-file and -nsq-key-file go together (a client certificate and its key)")
	}
	if cfg.NSQCertFile != "" {
		if st, err := os.Stat(cfg.NSQKeyFile); err == nil && st.Mode().Perm()&0o077 != 0 {
			log.Warn("a secret file can be read or changed by other users; chmod 600 it", "file", cfg.NSQKeyFile, "mode", st.Mode().Perm())
		}
		cert, err := tls.LoadX509KeyPair(cfg.NSQCertFile, cfg.NSQKeyFile)
		if err != nil {
			return nil, fmt.Errorf("-nsq-cert-file/-nsq-key-file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// loadNSQAuthSecret returns the secret for nsqd's AUTH, if one is given.
func loadNSQAuthSecret(cfg config, log *slog.Logger) (string, error) {
	if cfg.NSQAuthSecret == "" && cfg.NSQAuthSecretFile == "" {
		return "", nil
	}
	s, err := loadSecret(log, envNSQAuthSecret, cfg.NSQAuthSecret, cfg.NSQAuthSecretFile, nil)
	if err != nil {
		return "", fmt.Errorf("nsqd auth secret (-nsq-auth-secret-file): %w", err)
	}
	return s.value, nil
}

var dsnPassword = regexp.MustCompile(`(^|\s)password\s*=`)

// dsnHasPassword reports whether a PostgreSQL DSN carries a password,
// which on the command line any user can read.
func dsnHasPassword(dsn string) bool {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			return true
		}
	}
	return dsnPassword.MatchString(dsn)
}
