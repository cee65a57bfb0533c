// Package client is the Go client SDK for Citadel: register and log in over
// HTTP, connect to the gate over TCP or WebSocket, send messages, make calls
// matched to their replies, and receive pushes. Bots and tests use it.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/citadel-go/citadel/services"
)

// LoginError is an error answer from the login service.
type LoginError struct {
	Status  int
	Code    string // services.LoginCode*
	Message string
}

func (e *LoginError) Error() string {
	return fmt.Sprintf("login: %s (HTTP %d): %s", e.Code, e.Status, e.Message)
}

// LoginAPI is the login service at URL; HTTP defaults to a client with a
// 30s timeout (set one with a TLS config to trust a private certificate).
type LoginAPI struct {
	URL  string
	HTTP *http.Client
}

// Register creates an account and returns a ticket for it, as Login does.
func (a LoginAPI) Register(ctx context.Context, name, password string) (*services.LoginResponse, error) {
	return a.post(ctx, "/v1/register", name, password)
}

// Login checks the password and returns a ticket and the gate to use it at.
func (a LoginAPI) Login(ctx context.Context, name, password string) (*services.LoginResponse, error) {
	return a.post(ctx, "/v1/login", name, password)
}

func (a LoginAPI) post(ctx context.Context, path, name, password string) (*services.LoginResponse, error) {
	hc := a.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	return postCredentials(ctx, hc, a.URL+path, name, password)
}

var defaultHTTP = &http.Client{Timeout: 30 * time.Second}

// Register creates an account at the login service at loginURL.
func Register(ctx context.Context, loginURL, name, password string) (*services.LoginResponse, error) {
	return LoginAPI{URL: loginURL}.Register(ctx, name, password)
}

// Login logs in at the login service at loginURL.
func Login(ctx context.Context, loginURL, name, password string) (*services.LoginResponse, error) {
	return LoginAPI{URL: loginURL}.Login(ctx, name, password)
}

func postCredentials(ctx context.Context, hc *http.Client, url, name, password string) (*services.LoginResponse, error) {
	body, _ := json.Marshal(services.Credentials{Name: name, Password: password})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var eb services.LoginErrorBody
		if json.Unmarshal(raw, &eb) != nil || eb.Error.Code == "" {
			return nil, &LoginError{Status: resp.StatusCode, Code: "http_error", Message: strings.TrimSpace(string(raw))}
		}
		return nil, &LoginError{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
	}
	var lr services.LoginResponse
	if err := json.Unmarshal(raw, &lr); err != nil {
		return nil, fmt.Errorf("login: bad response body: %w", err)
	}
	return &lr, nil
}
