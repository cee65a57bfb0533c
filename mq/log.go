package mq

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/nsqio/go-nsq"
)

// slogWriter adapts NSQ's "Output(depth, line)" loggers (nsqd, nsqlookupd,
// nsqadmin and go-nsq all use that shape) to log/slog. NSQ puts the level in
// a prefix of the line; it is mapped to the matching slog level.
type slogWriter struct {
	log *slog.Logger
	// quiet, when set and true, turns everything into debug logs: go-nsq
	// warns about every closed connection, including during a clean Stop.
	quiet *atomic.Bool
}

func (w slogWriter) Output(_ int, s string) error {
	level, msg := splitNSQLevel(s)
	if (w.quiet != nil && w.quiet.Load()) || benignEphemeralExit(msg) {
		level = slog.LevelDebug
	}
	w.log.Log(context.Background(), level, msg)
	return nil
}

// splitNSQLevel understands both NSQ prefix styles: the daemons' "INFO: msg"
// and go-nsq's "INF    1 [topic/channel] msg".
func splitNSQLevel(s string) (slog.Level, string) {
	s = strings.TrimRight(s, "\n")
	prefixes := []struct {
		p string
		l slog.Level
	}{
		{"DEBUG: ", slog.LevelDebug}, {"INFO: ", slog.LevelInfo}, {"WARNING: ", slog.LevelWarn},
		{"ERROR: ", slog.LevelError}, {"FATAL: ", slog.LevelError},
		{"DBG ", slog.LevelDebug}, {"INF ", slog.LevelInfo}, {"WRN ", slog.LevelWarn}, {"ERR ", slog.LevelError},
	}
	for _, p := range prefixes {
		if strings.HasPrefix(s, p.p) {
			return p.l, strings.TrimSpace(s[len(p.p):])
		}
	}
	return slog.LevelInfo, s
}

// goNSQLevel maps a slog level to the go-nsq client's level.
func goNSQLevel(l slog.Level) nsq.LogLevel {
	switch {
	case l <= slog.LevelDebug:
		return nsq.LogLevelDebug
	case l <= slog.LevelInfo:
		return nsq.LogLevelInfo
	case l <= slog.LevelWarn:
		return nsq.LogLevelWarning
	default:
		return nsq.LogLevelError
	}
}

// benignEphemeralExit recognises nsqd's error for a message that raced with
// the deletion of an ephemeral channel (a membership subscriber leaving):
// the channel is gone on purpose, so nothing is lost that anyone wanted.
func benignEphemeralExit(msg string) bool {
	return strings.Contains(msg, "failed to put msg") && strings.Contains(msg, "#ephemeral)") &&
		strings.HasSuffix(msg, "- exiting")
}
