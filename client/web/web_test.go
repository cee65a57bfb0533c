package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The page and its generated bundle are embedded and served. (Whether the
// bundle is fresh needs npm: CI rebuilds it and compares.)
func TestHandlerServesThePage(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	get := func(path string) (int, string, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	code, ctype, body := get("/")
	if code != 200 || !strings.HasPrefix(ctype, "text/html") || !strings.Contains(body, `src="app.js"`) {
		t.Fatalf("/: %d %s\n%.300s", code, ctype, body)
	}
	code, ctype, body = get("/app.js")
	if code != 200 || !strings.Contains(ctype, "javascript") || !strings.HasPrefix(body, "// Code generated") || !strings.Contains(body, "DO NOT EDIT") {
		t.Fatalf("/app.js: %d %s\n%.200s", code, ctype, body)
	}
	if code, _, _ = get("/nope.js"); code != 404 {
		t.Fatalf("/nope.js: %d", code)
	}
	resp, err := http.Post(srv.URL+"/", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /: %d", resp.StatusCode)
	}
}
