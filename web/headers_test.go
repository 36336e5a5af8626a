package web

import (
	"crypto/tls"
	"net/http/httptest"
	"strings"
	"testing"
)

// The page may connect to its own origin and the nodes' signaling origins
// it is given, nothing else; it sends no Referer; HSTS only over TLS.
func TestBrowserHeaders(t *testing.T) {
	origins := []string{"wss://node-1.example:8443", "ws://127.0.0.1:4001", "wss://evil.example; script-src *", "https://x.example", "ws://"}
	h := Handler(func() []string { return origins })
	for _, overTLS := range []bool{false, true} {
		r := httptest.NewRequest("GET", "/m/abc", nil)
		if overTLS {
			r.TLS = &tls.ConnectionState{}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		csp := w.Header().Get("Content-Security-Policy")
		var connect string
		for _, d := range strings.Split(csp, ";") {
			if f := strings.Fields(d); len(f) > 0 && f[0] == "connect-src" {
				connect = strings.Join(f[1:], " ")
			}
		}
		if want := "'self' wss://node-1.example:8443 ws://127.0.0.1:4001"; connect != want {
			t.Errorf("connect-src %q, want %q (CSP %q)", connect, want, csp)
		}
		if strings.Contains(csp, "evil") || strings.Contains(csp, "script-src *") {
			t.Errorf("an origin that is not one made it into the CSP: %q", csp)
		}
		if got := w.Header().Get("Referrer-Policy"); got != "no-referrer" {
			t.Errorf("Referrer-Policy %q", got)
		}
		hsts := w.Header().Get("Strict-Transport-Security")
		if overTLS != (hsts != "") || overTLS && !strings.HasPrefix(hsts, "max-age=") {
			t.Errorf("over TLS %v: Strict-Transport-Security %q", overTLS, hsts)
		}
	}
	// No nodes: the page's own origin only.
	w := httptest.NewRecorder()
	Handler(nil).ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self';") {
		t.Errorf("CSP without nodes: %q", csp)
	}
}
