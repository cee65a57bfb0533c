package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestLoginErrorsAreParsed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/login":
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":{"code":"bad_credentials","message":"unknown name or wrong password"}}`))
		default:
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("upstream down"))
		}
	}))
	defer srv.Close()
	_, err := Login(context.Background(), srv.URL, "ada", "password")
	var le *LoginError
	if !errors.As(err, &le) || le.Code != "bad_credentials" || le.Status != 401 {
		t.Fatalf("login error: %v", err)
	}
	_, err = Register(context.Background(), srv.URL, "ada", "password")
	if !errors.As(err, &le) || le.Code != "http_error" || le.Message != "upstream down" {
		t.Fatalf("non-JSON error: %v", err)
	}
	if closeCode("slow_client: the client did not read") != "slow_client" || closeCode("bye") != "bye" {
		t.Fatal("closeCode")
	}
}
