package locate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// located is what the test backend answers for each request.
type located struct {
	Client string `json:"client"`
	Result Result `json:"result"`
}

// backend is a real HTTP server that locates each request the way the
// control plane does, and answers 500 if locating fails.
func backend(t *testing.T, l *Locator) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := l.Locate(r, Hint{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_ = json.NewEncoder(w).Encode(located{Client: l.ClientAddr(r).String(), Result: res})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// edgeProxy is a real reverse proxy in front of target, the way a load
// balancer sits in front of the control plane: it connects to the backend
// from 127.0.0.2 (so the backend can tell it from a direct client on
// 127.0.0.1) and names its client in header, overwriting whatever the
// client sent. clientAddr stands in for the public address the edge saw.
func edgeProxy(t *testing.T, target, header, clientAddr string) *httptest.Server {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Header.Set(header, clientAddr)
		},
		Transport: &http.Transport{DialContext: dialer.DialContext},
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, base string, headers ...string) (int, located) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, base+"/api/meetings/m1/join", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got located
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, got
}

var edgeNet = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}

func TestClientIPHeaderBehindRealProxy(t *testing.T) {
	const xff = "X-Forwarded-For"
	db := countryDB(t, map[string]string{"198.51.100.0/24": "NL", "203.0.113.0/24": "JP"})
	l := newLocator(t, Config{ClientIPHeader: xff, TrustedProxies: edgeNet, GeoIPFile: db, DisableBuiltin: true})
	be := backend(t, l)
	edge := edgeProxy(t, be.URL, xff, "198.51.100.7")

	// Through the trusted proxy the client is where the header says, not
	// where the proxy (loopback, no country) is.
	code, got := get(t, edge.URL)
	if code != http.StatusOK || got.Client != "198.51.100.7" || got.Result.Location.Country != "NL" || got.Result.Source != SourceGeoIP {
		t.Fatalf("through proxy: %d %+v, want 198.51.100.7 located NL by geoip", code, got)
	}
	// A client claiming an address to the proxy does not get it: the proxy
	// overwrites the header with what it saw.
	if code, got = get(t, edge.URL, xff, "203.0.113.9"); got.Client != "198.51.100.7" {
		t.Fatalf("spoof through proxy: %d %+v", code, got)
	}
	// Straight to the backend from an untrusted peer the header is ignored.
	code, got = get(t, be.URL, xff, "203.0.113.9")
	if code != http.StatusOK || got.Client != "127.0.0.1" || got.Result.Source != SourceUnknown {
		t.Fatalf("direct with header: %d %+v, want peer 127.0.0.1 and unknown", code, got)
	}
}

func TestClientIPHeaderNotConfigured(t *testing.T) {
	// Without ClientIPHeader even a trusted proxy's header is not read: the
	// client is the peer.
	db := countryDB(t, map[string]string{"198.51.100.0/24": "NL"})
	l := newLocator(t, Config{TrustedProxies: edgeNet, GeoIPFile: db, DisableBuiltin: true})
	edge := edgeProxy(t, backend(t, l).URL, "X-Forwarded-For", "198.51.100.7")
	if code, got := get(t, edge.URL); code != http.StatusOK || got.Client != "127.0.0.2" || got.Result.Source != SourceUnknown {
		t.Fatalf("got %d %+v, want the proxy's own address and unknown", code, got)
	}
}

func TestClientAddr(t *testing.T) {
	const h = "X-Real-Client"
	l := newLocator(t, Config{ClientIPHeader: h, TrustedProxies: proxyNet})
	for _, tt := range []struct {
		r    *http.Request
		want string
	}{
		{request("10.0.0.5:1", h, "8.8.8.8"), "8.8.8.8"},
		{request("[::ffff:10.0.0.5]:1", h, "[2001:db8::1]:443"), "2001:db8::1"},
		{request("8.8.4.4:1", h, "8.8.8.8"), "8.8.4.4"},
		{request("10.0.0.5:1"), "10.0.0.5"},
		{request("10.0.0.5:1", h, "junk"), "10.0.0.5"},
		{request("pipe"), "invalid IP"},
	} {
		if got := l.ClientAddr(tt.r).String(); got != tt.want {
			t.Errorf("%s %v: got %s, want %s", tt.r.RemoteAddr, tt.r.Header, got, tt.want)
		}
	}
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// corruptData rewrites a database built by buildMMDB so that its search
// tree and metadata stay intact (it still opens) while its data section is
// garbage: every lookup finds a record that cannot be decoded.
func corruptData(t *testing.T, path string, garble func(data []byte)) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	meta := bytes.LastIndex(raw, []byte("\xAB\xCD\xEFMaxMind.com"))
	sep := bytes.Index(raw, make([]byte, 16))
	if meta < 0 || sep < 0 || sep+16 > meta {
		t.Fatal("unexpected database layout")
	}
	garble(raw[sep+16 : meta])
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptDatabaseLeavesLocationUnknown(t *testing.T) {
	garbles := map[string]func([]byte){
		// 0xFF: a map whose size runs past the end of the section.
		"garbled": func(d []byte) {
			for i := range d {
				d[i] = 0xFF
			}
		},
		// A pointer to an offset far beyond the data section.
		"bad pointer": func(d []byte) {
			for i := range d {
				d[i] = 0x3F
			}
		},
		// A string whose length runs past the section's end.
		"truncated string": func(d []byte) {
			for i := range d {
				d[i] = 0x5F
			}
		},
	}
	for name, garble := range garbles {
		t.Run(name, func(t *testing.T) {
			const xff = "X-Forwarded-For"
			db := countryDB(t, map[string]string{"198.51.100.0/24": "NL"})
			corruptData(t, db, garble)
			var logs syncBuffer
			l := newLocator(t, Config{ClientIPHeader: xff, TrustedProxies: edgeNet, GeoIPFile: db, DisableBuiltin: true,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			edge := edgeProxy(t, backend(t, l).URL, xff, "198.51.100.7")
			for range 3 {
				code, got := get(t, edge.URL)
				if code != http.StatusOK || got.Result != unknown() || got.Client != "198.51.100.7" {
					t.Fatalf("got %d %+v, want 200 and location unknown", code, got)
				}
			}
			if n := l.LookupFailures(); n != 3 {
				t.Errorf("LookupFailures = %d, want 3", n)
			}
			out := logs.String()
			if strings.Count(out, "GeoIP lookup failed") != 1 || !strings.Contains(out, "198.51.100.7") {
				t.Errorf("want one rate-limited log line naming the client, got:\n%s", out)
			}
		})
	}
}

func TestCorruptDatabaseFallsBackToBuiltin(t *testing.T) {
	// With the built-in table enabled a broken database costs only its own
	// evidence: the next source still answers.
	db := countryDB(t, map[string]string{"8.8.8.0/24": "NL"})
	corruptData(t, db, func(d []byte) {
		for i := range d {
			d[i] = 0xFF
		}
	})
	l := newLocator(t, Config{GeoIPFile: db})
	got := locate(t, l, request("8.8.8.8:1"), Hint{})
	if got.Source != SourceBuiltin || got.Location.Country != "US" {
		t.Fatalf("got %+v, want builtin US", got)
	}
	if l.LookupFailures() != 1 {
		t.Fatalf("LookupFailures = %d, want 1", l.LookupFailures())
	}
}

func ExampleLocator_ClientAddr() {
	l, _ := New(Config{ClientIPHeader: "X-Forwarded-For", TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	defer l.Close()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "10.1.2.3:4567"
	r.Header.Set("X-Forwarded-For", "192.0.2.10, 10.9.9.9")
	fmt.Println(l.ClientAddr(r))
	// Output: 192.0.2.10
}
