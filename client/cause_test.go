package client

import (
	"context"
	"fmt"
	"io"
	"syscall"
	"testing"
)

// Cause names a failure by what happened, through wrapping.
func TestCauseNamesTheFailure(t *testing.T) {
	for err, want := range map[error]string{
		&LoginError{Status: 503, Code: "no_gate"}:          "HTTP 503 no_gate",
		fmt.Errorf("gate: %w", &KickedError{Code: "slow"}): "kicked slow",
		&ServerError{Code: "unavailable"}:                  "server error unavailable",
		fmt.Errorf("dial: %w", syscall.ECONNREFUSED):       "refused",
		fmt.Errorf("dial: %w", syscall.EMFILE):             "too many open files",
		fmt.Errorf("read: %w", io.ErrUnexpectedEOF):        "closed by the server",
		fmt.Errorf("call: %w", context.DeadlineExceeded):   "timeout",
		ErrClosed:                    "closed",
		fmt.Errorf("something else"): "other",
	} {
		if got := Cause(err); got != want {
			t.Errorf("Cause(%v) = %q, want %q", err, got, want)
		}
	}
}
