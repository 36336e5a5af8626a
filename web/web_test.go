package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	h := Handler(nil)
	get := func(method, path string, hdr map[string]string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, nil)
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for _, tc := range []struct {
		path, want, ctype string
		code              int
	}{
		{"/", `<script type="module" src="/js/app.js">`, "text/html", 200},
		{"/m/k3np8xq2mf", `<div id="app"`, "text/html", 200},
		{"/js/app.js", "lobbyPage", "javascript", 200},
		{"/js/e2ee/worker.js", "onrtctransform", "javascript", 200},
		{"/css/app.css", ".tile", "text/css", 200},
		{"/world.json", `"shapes"`, "application/json", 200},
		{"/nope.js", "", "", 404},
	} {
		w := get("GET", tc.path, nil)
		if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.want) || !strings.Contains(w.Header().Get("Content-Type"), tc.ctype) {
			t.Errorf("GET %s: %d %q, want %d with %q (%s)", tc.path, w.Code, w.Header().Get("Content-Type"), tc.code, tc.want, tc.ctype)
		}
		if csp := w.Header().Get("Content-Security-Policy"); tc.code == 200 && !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: CSP %q", tc.path, csp)
		}
	}
	if w := get("POST", "/", nil); w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %d, Allow %q", w.Code, w.Header().Get("Allow"))
	}
	// Static files revalidate by content hash.
	w := get("GET", "/js/app.js", nil)
	tag := w.Header().Get("ETag")
	if tag == "" || w.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("no ETag or wrong caching: %q %q", tag, w.Header().Get("Cache-Control"))
	}
	if w := get("GET", "/js/app.js", map[string]string{"If-None-Match": tag}); w.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", w.Code)
	}
	// The page itself is never cached: it names no versions of the files.
	if w := get("GET", "/m/x", nil); w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("meeting page Cache-Control %q", w.Header().Get("Cache-Control"))
	}
}
