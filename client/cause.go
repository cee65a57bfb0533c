package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/gorilla/websocket"
)

// Cause names why a login, a connection or a call failed, in few enough
// words to count failures by: "HTTP 503 no_gate", "kicked rate_limited",
// "server error unavailable", "timeout", "refused", "reset", "closed by
// the server", "too many open files", ... ("other" when it is none of
// them).
func Cause(err error) string {
	var (
		le  *LoginError
		ke  *KickedError
		se  *ServerError
		ce  *websocket.CloseError
		dns *net.DNSError
		cve *tls.CertificateVerificationError
		rhe tls.RecordHeaderError
		ne  net.Error
	)
	switch {
	case errors.As(err, &le):
		return fmt.Sprintf("HTTP %d %s", le.Status, le.Code)
	case errors.As(err, &ke):
		return "kicked " + ke.Code
	case errors.As(err, &se):
		return "server error " + se.Code
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no free local port"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &ce):
		return "closed by the server"
	case errors.As(err, &dns):
		return "unknown host"
	case errors.As(err, &cve), errors.As(err, &rhe):
		return "TLS"
	case errors.Is(err, websocket.ErrBadHandshake):
		return "WebSocket upgrade refused"
	case errors.Is(err, ErrClosed):
		return "closed"
	}
	return "other"
}
