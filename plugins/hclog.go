package plugins

import (
	"context"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// hcLog is go-plugin's logger interface (hclog) over log/slog, so plugin
// processes' lines and go-plugin's own end up in Citadel's log.
type hcLog struct {
	l     *slog.Logger
	name  string
	level hclog.Level
	args  []any
}

// newHCLog logs at level and above (0: hclog's default, Info).
func newHCLog(l *slog.Logger, level hclog.Level) *hcLog {
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	return &hcLog{l: l, level: level}
}

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Info, hclog.NoLevel:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	}
	return slog.LevelError
}

func (a *hcLog) Log(level hclog.Level, msg string, args ...any) {
	if level < a.level || a.level == hclog.Off {
		return
	}
	all := append(a.args[:len(a.args):len(a.args)], args...)
	if a.name != "" {
		all = append(all, "logger", a.name)
	}
	a.l.Log(context.Background(), slogLevel(level), msg, all...)
}

func (a *hcLog) Trace(m string, args ...any) { a.Log(hclog.Trace, m, args...) }
func (a *hcLog) Debug(m string, args ...any) { a.Log(hclog.Debug, m, args...) }
func (a *hcLog) Info(m string, args ...any)  { a.Log(hclog.Info, m, args...) }
func (a *hcLog) Warn(m string, args ...any)  { a.Log(hclog.Warn, m, args...) }
func (a *hcLog) Error(m string, args ...any) { a.Log(hclog.Error, m, args...) }
func (a *hcLog) IsTrace() bool               { return a.level <= hclog.Trace }
func (a *hcLog) IsDebug() bool               { return a.level <= hclog.Debug }
func (a *hcLog) IsInfo() bool                { return a.level <= hclog.Info }
func (a *hcLog) IsWarn() bool                { return a.level <= hclog.Warn }
func (a *hcLog) IsError() bool               { return a.level <= hclog.Error }
func (a *hcLog) ImpliedArgs() []any          { return a.args }
func (a *hcLog) Name() string                { return a.name }
func (a *hcLog) SetLevel(l hclog.Level)      { a.level = l }
func (a *hcLog) GetLevel() hclog.Level       { return a.level }

func (a *hcLog) With(args ...any) hclog.Logger {
	c := *a
	c.args = append(a.args[:len(a.args):len(a.args)], args...)
	return &c
}

func (a *hcLog) Named(n string) hclog.Logger {
	c := *a
	if c.name != "" {
		n = c.name + "." + n
	}
	c.name = n
	return &c
}

func (a *hcLog) ResetNamed(n string) hclog.Logger {
	c := *a
	c.name = n
	return &c
}

func (a *hcLog) StandardLogger(o *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(o), "", 0)
}

func (a *hcLog) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return slog.NewLogLogger(a.l.Handler(), slogLevel(a.level)).Writer()
}

var _ hclog.Logger = (*hcLog)(nil)
