// Package web is the browser app, embedded in the binary: plain ES modules
// and static files with no build step, served by the control plane at "/".
// Meeting links (/m/{id}) are answered with the app's page, which routes
// on the client. The app's end-to-end encryption runs in the browser
// (static/js/e2ee), byte-compatible with the Go packages under e2ee/; see
// docs/WEB.md.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var static embed.FS

// cspBefore and cspAfter are the page's Content Security Policy around its
// connect-src: the page keeps to its own code (a script injected into it
// could read every decrypted frame and the keys, so only the app's own
// files run), and it talks to its own origin and the media nodes'
// signaling origins only, never to any WebSocket host.
const (
	cspBefore = "default-src 'self'; script-src 'self'; worker-src 'self'; style-src 'self'; " +
		"img-src 'self' data:; media-src 'self' blob:; connect-src 'self'"
	cspAfter = "; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

// HSTS is the Strict-Transport-Security value every answer over TLS
// carries, the web app's and the API's alike: a browser that reached the
// deployment over TLS keeps to HTTPS for its host for a year.
const HSTS = "max-age=31536000"

// ContentSecurityPolicy is the policy the app is served with when its
// media nodes' signaling origins are origins (e.g. "wss://node.example",
// "ws://127.0.0.1:4001"); anything else in the list is left out.
func ContentSecurityPolicy(origins []string) string {
	var b strings.Builder
	b.WriteString(cspBefore)
	for _, o := range origins {
		if validOrigin(o) {
			b.WriteString(" ")
			b.WriteString(o)
		}
	}
	b.WriteString(cspAfter)
	return b.String()
}

// validOrigin admits ws:// and wss:// origins whose host part holds
// nothing that could end or widen a CSP source expression.
func validOrigin(o string) bool {
	rest, ok := strings.CutPrefix(o, "wss://")
	if !ok {
		if rest, ok = strings.CutPrefix(o, "ws://"); !ok {
			return false
		}
	}
	if rest == "" {
		return false
	}
	for _, c := range rest {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(".-:[]", c)) {
			return false
		}
	}
	return true
}

// Handler serves the app. Files carry an ETag of their content and are
// revalidated on every use, so a new binary's app replaces the old one at
// once (embedded files have no modification time to go by).
// signalingOrigins lists the origins of the media nodes' signaling
// WebSockets, which the page may connect to besides its own origin; the
// control plane, which knows the nodes, gives it (nil = none). A request
// that came over TLS is answered with HSTS.
func Handler(signalingOrigins func() []string) http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	etags := map[string]string{}
	err = fs.WalkDir(sub, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		etags["/"+path] = `"` + hex.EncodeToString(sum[:12]) + `"`
		return nil
	})
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		var origins []string
		if signalingOrigins != nil {
			origins = signalingOrigins()
		}
		h.Set("Content-Security-Policy", ContentSecurityPolicy(origins))
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", HSTS)
		}
		h.Set("Permissions-Policy", "camera=(self), microphone=(self), geolocation=()")
		if r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, "/m/") {
			h.Set("Cache-Control", "no-store")
			http.ServeFileFS(w, r, sub, "index.html")
			return
		}
		if tag, ok := etags[r.URL.Path]; ok {
			h.Set("ETag", tag)
			h.Set("Cache-Control", "no-cache")
		}
		files.ServeHTTP(w, r)
	})
}
