// Package web is Citadel's browser sample client: a static page and its
// JavaScript bundle (built from client/web/app with the TypeScript SDK in
// client/ts), embedded in the binary. `citadel -web` serves it on the
// login listener, so the page's register and login requests are
// same-origin.
//
// The bundle static/app.js is generated: after changing client/ts or
// client/web/app, run `npm run build` in client/ts and commit the result
// (CI rebuilds it and fails on a difference).
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var files embed.FS

// Handler serves the sample client's files: index.html at /, app.js,
// style.css. Everything else is 404.
func Handler() http.Handler {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embedded tree always has static/
	}
	fileServer := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the sample client's files are read-only: use GET", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-cache") // the binary's build is the version
		h.Set("Referrer-Policy", "no-referrer")
		fileServer.ServeHTTP(w, r)
	})
}
