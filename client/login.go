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

var defaultHTTP = &http.Client{Timeout: 30 * time.Second}

// Register creates an account and returns a ticket for it, as Login does.
func Register(ctx context.Context, loginURL, name, password string) (*services.LoginResponse, error) {
	return postCredentials(ctx, loginURL+"/v1/register", name, password)
}

// Login checks the password and returns a ticket and the gate to use it at.
func Login(ctx context.Context, loginURL, name, password string) (*services.LoginResponse, error) {
	return postCredentials(ctx, loginURL+"/v1/login", name, password)
}

func postCredentials(ctx context.Context, url, name, password string) (*services.LoginResponse, error) {
	body, _ := json.Marshal(services.Credentials{Name: name, Password: password})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := defaultHTTP.Do(req)
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
