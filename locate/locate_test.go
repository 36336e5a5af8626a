package locate

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/oakmeet/oakmeet/geo"
)

const proxyHeader = "X-Client-Country"

var proxyNet = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}

func newLocator(t *testing.T, cfg Config) *Locator {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

func request(remote string, headers ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/api/meetings/m1/join", nil)
	r.RemoteAddr = remote
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	return r
}

func countryAt(t *testing.T, code string) geo.Location {
	t.Helper()
	loc, ok := geo.CountryLocation(code)
	if !ok {
		t.Fatalf("no country %s", code)
	}
	return loc
}

func regionAt(t *testing.T, id string) geo.Location {
	t.Helper()
	loc, ok := geo.RegionLocation(id)
	if !ok {
		t.Fatalf("no region %s", id)
	}
	return loc
}

func locate(t *testing.T, l *Locator, r *http.Request, h Hint) Result {
	t.Helper()
	res, err := l.Locate(r, h)
	if err != nil {
		t.Fatalf("Locate: %v", err)
	}
	if res.Location.Known != (res.Source != SourceUnknown) {
		t.Fatalf("Known=%v with source %q", res.Location.Known, res.Source)
	}
	return res
}

func TestProxyHeaderTrustedPeer(t *testing.T) {
	l := newLocator(t, Config{ProxyHeader: proxyHeader, TrustedProxies: proxyNet, DisableBuiltin: true})
	for _, remote := range []string{"10.1.2.3:4567", "[fd00::7]:443", "[::ffff:10.9.9.9]:80", "10.0.0.1"} {
		got := locate(t, l, request(remote, proxyHeader, "de"), Hint{})
		want := Result{Location: countryAt(t, "DE"), Source: SourceProxyHeader}
		if got != want {
			t.Errorf("peer %s: got %+v, want %+v", remote, got, want)
		}
	}
}

func TestProxyHeaderUntrustedPeerIgnored(t *testing.T) {
	l := newLocator(t, Config{ProxyHeader: proxyHeader, TrustedProxies: proxyNet})
	// 8.8.8.8 is outside the trusted prefixes: its claim to be in Germany is
	// ignored and the address itself decides.
	got := locate(t, l, request("8.8.8.8:1234", proxyHeader, "DE"), Hint{})
	if got.Source != SourceBuiltin || got.Location.Country != "US" {
		t.Errorf("got %+v, want builtin US", got)
	}
	// No trusted proxies configured at all: nobody's header counts.
	l2 := newLocator(t, Config{ProxyHeader: proxyHeader, DisableBuiltin: true})
	if got := locate(t, l2, request("10.1.2.3:1", proxyHeader, "DE"), Hint{}); got.Source != SourceUnknown {
		t.Errorf("no trusted proxies: got %+v, want unknown", got)
	}
	// Header name configured empty: disabled even for trusted peers.
	l3 := newLocator(t, Config{TrustedProxies: proxyNet, DisableBuiltin: true})
	if got := locate(t, l3, request("10.1.2.3:1", proxyHeader, "DE"), Hint{}); got.Source != SourceUnknown {
		t.Errorf("header disabled: got %+v, want unknown", got)
	}
}

func TestProxyHeaderMalformedFallsThrough(t *testing.T) {
	l := newLocator(t, Config{ProxyHeader: proxyHeader, TrustedProxies: proxyNet, TrustClientHints: true, DisableBuiltin: true})
	bad := [][]string{
		{proxyHeader, ""},
		{proxyHeader, "   "},
		{proxyHeader, "XX"}, // CDN "unknown"
		{proxyHeader, "T1"}, // CDN "Tor"
		{proxyHeader, "Germany"},
		{proxyHeader, "DEU"},
		{proxyHeader, "D"},
		{proxyHeader, "DE,FR"},
		{proxyHeader, "D\x00"},
		{proxyHeader, "eu"}, // a group, not a country
		{proxyHeader, "DE", proxyHeader, "FR"},
		{proxyHeader, "DE", proxyHeader, "DE"},
		{},
	}
	for _, hdrs := range bad {
		got := locate(t, l, request("10.1.2.3:1", hdrs...), Hint{Country: "JP"})
		if got.Source != SourceClientHint || got.Location.Country != "JP" {
			t.Errorf("headers %q: got %+v, want the client hint", hdrs, got)
		}
	}
}

func TestClientHint(t *testing.T) {
	l := newLocator(t, Config{TrustClientHints: true, DisableBuiltin: true})
	tests := []struct {
		name string
		hint Hint
		want geo.Location
	}{
		{"country", Hint{Country: "br"}, countryAt(t, "BR")},
		{"region", Hint{Region: "AP-NORTHEAST-2"}, regionAt(t, "ap-northeast-2")},
		{"region and its country", Hint{Country: "KR", Region: "ap-northeast-2"}, regionAt(t, "ap-northeast-2")},
		{"blank fields", Hint{Country: " ", Region: "eu-west-1"}, regionAt(t, "eu-west-1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := locate(t, l, request("8.8.8.8:1"), tt.hint)
			if got != (Result{Location: tt.want, Source: SourceClientHint}) {
				t.Errorf("got %+v, want %+v from client_hint", got, tt.want)
			}
		})
	}
	if got := locate(t, l, request("127.0.0.1:1"), Hint{Region: "ru-central1"}); got.Location.Region != "ru-central1" {
		t.Errorf("hint from loopback (the demo): got %+v", got)
	}
	if got := locate(t, l, request("127.0.0.1:1"), Hint{Country: "  ", Region: ""}); got.Source != SourceUnknown {
		t.Errorf("blank hint: got %+v, want unknown", got)
	}
}

func TestClientHintErrors(t *testing.T) {
	l := newLocator(t, Config{
		TrustClientHints: true, ProxyHeader: proxyHeader, TrustedProxies: proxyNet, DisableBuiltin: true,
	})
	tests := []struct {
		hint       Hint
		kind, code string // empty kind: ErrConflictingHint
	}{
		{Hint{Country: "XX"}, "country", "XX"},
		{Hint{Country: "Germany"}, "country", "Germany"},
		{Hint{Region: "mars-north-1"}, "region", "mars-north-1"},
		{Hint{Country: "DE", Region: "nowhere"}, "region", "nowhere"},
		{Hint{Country: "ZZ", Region: "eu-central-1"}, "country", "ZZ"},
		{Hint{Country: "FR", Region: "eu-central-1"}, "", ""},
	}
	for _, tt := range tests {
		// The proxy header would answer, but bad input is reported anyway so
		// the same request fails the same way behind any proxy.
		_, err := l.Locate(request("10.0.0.1:1", proxyHeader, "DE"), tt.hint)
		if tt.kind == "" {
			if !errors.Is(err, ErrConflictingHint) {
				t.Errorf("%+v: got %v, want ErrConflictingHint", tt.hint, err)
			}
			continue
		}
		var uce *geo.UnknownCodeError
		if !errors.As(err, &uce) || uce.Kind != tt.kind || uce.Code != tt.code {
			t.Errorf("%+v: got %v, want unknown %s %q", tt.hint, err, tt.kind, tt.code)
		}
	}
}

func TestClientHintIgnoredWhenUntrusted(t *testing.T) {
	l := newLocator(t, Config{DisableBuiltin: true})
	for _, h := range []Hint{{Country: "JP"}, {Region: "eu-west-1"}, {Country: "XX", Region: "bogus"}} {
		got, err := l.Locate(request("8.8.8.8:1"), h)
		if err != nil || got.Source != SourceUnknown {
			t.Errorf("hint %+v: got %+v, %v; want unknown and no error", h, got, err)
		}
	}
}

func TestOrderOfSources(t *testing.T) {
	db := countryDB(t, map[string]string{"8.8.8.0/24": "FR"}) // deliberately wrong, to tell sources apart
	l := newLocator(t, Config{
		ProxyHeader: proxyHeader, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("8.8.8.8/32")},
		GeoIPFile: db, TrustClientHints: true,
	})
	tests := []struct {
		name    string
		r       *http.Request
		hint    Hint
		source  Source
		country string
	}{
		{"header beats hint", request("8.8.8.8:1", proxyHeader, "SE"), Hint{Country: "JP"}, SourceProxyHeader, "SE"},
		{"hint beats geoip", request("8.8.8.8:1"), Hint{Country: "JP"}, SourceClientHint, "JP"},
		{"geoip beats builtin", request("8.8.8.9:1"), Hint{}, SourceGeoIP, "FR"},
		{"builtin when geoip misses", request("[2001:4860:4860::8888]:1"), Hint{}, SourceBuiltin, "US"},
		{"unknown when nothing knows", request("192.0.2.1:1"), Hint{}, SourceUnknown, ""},
	}
	for _, tt := range tests {
		got := locate(t, l, tt.r, tt.hint)
		if got.Source != tt.source || got.Location.Country != tt.country {
			t.Errorf("%s: got %+v, want %s %s", tt.name, got, tt.source, tt.country)
		}
	}
}

func TestGeoIP(t *testing.T) {
	db := writeMMDB(t, map[string]mmdbRecord{
		"198.51.100.0/24": {"country": map[string]any{"iso_code": "NL"}},
		"198.51.100.0/28": {"country": map[string]any{"iso_code": "be"}},
		"203.0.113.0/24":  {"registered_country": map[string]any{"iso_code": "AU"}},
		"192.0.2.0/25":    {"country": map[string]any{"iso_code": "XX"}},
		"192.0.2.128/25":  {"country": map[string]any{"iso_code": 42}},
		"2001:db8::/32":   {"country": map[string]any{"iso_code": "CH"}},
		"10.0.0.0/8":      {"country": map[string]any{"iso_code": "DE"}},
	})
	l := newLocator(t, Config{GeoIPFile: db, DisableBuiltin: true})
	tests := []struct {
		remote  string
		source  Source
		country string
	}{
		{"198.51.100.200:1", SourceGeoIP, "NL"},
		{"198.51.100.3:1", SourceGeoIP, "BE"},            // nested network, lower-case code
		{"[::ffff:198.51.100.200]:1", SourceGeoIP, "NL"}, // IPv4-mapped
		{"203.0.113.7:1", SourceGeoIP, "AU"},             // registered_country only
		{"[2001:db8::42]:443", SourceGeoIP, "CH"},        // IPv6
		{"[2001:db8::42%eth0]:443", SourceGeoIP, "CH"},   // zone dropped
		{"192.0.2.1:1", SourceUnknown, ""},               // code not in the catalogue
		{"192.0.2.200:1", SourceUnknown, ""},             // iso_code of the wrong type
		{"8.8.8.8:1", SourceUnknown, ""},                 // not in the database, builtin off
		{"10.1.1.1:1", SourceUnknown, ""},                // private, whatever the database says
	}
	for _, tt := range tests {
		got := locate(t, l, request(tt.remote), Hint{})
		if got.Source != tt.source || got.Location.Country != tt.country {
			t.Errorf("%s: got %+v, want %s %s", tt.remote, got, tt.source, tt.country)
		}
	}
}

func TestBuiltin(t *testing.T) {
	l := newLocator(t, Config{})
	for remote, want := range map[string]string{
		"8.8.8.8:53":                "US",
		"[2001:4860:4860::8888]:53": "US",
		"[::ffff:8.8.8.8]:53":       "US",
		"8.8.8.8":                   "US",
		"[2001:4860:4860::8888]":    "US",
		"2001:4860:4860::8888":      "US",
	} {
		got := locate(t, l, request(remote), Hint{})
		if got != (Result{Location: countryAt(t, want), Source: SourceBuiltin}) {
			t.Errorf("%s: got %+v, want builtin %s", remote, got, want)
		}
	}
}

func TestNonPublicAddressesUnknown(t *testing.T) {
	db := countryDB(t, map[string]string{"0.0.0.0/1": "DE", "128.0.0.0/1": "DE", "::/1": "DE", "8000::/1": "DE"})
	l := newLocator(t, Config{GeoIPFile: db})
	for _, remote := range []string{
		"127.0.0.1:1", "[::1]:1", "10.2.3.4:1", "172.16.0.9:1", "192.168.1.1:1", "100.64.0.1:1",
		"169.254.1.1:1", "[fe80::1]:1", "[fc00::1]:1", "0.0.0.0:1", "[::]:1", "224.0.0.1:1",
		"", "pipe", "@", "not-an-ip:80", "1.2.3:4",
	} {
		if got := locate(t, l, request(remote), Hint{}); got != (Result{Source: SourceUnknown}) {
			t.Errorf("%q: got %+v, want unknown", remote, got)
		}
	}
}

func TestForwardedClientAddress(t *testing.T) {
	const xff = "X-Forwarded-For"
	l := newLocator(t, Config{ClientIPHeader: xff, TrustedProxies: proxyNet})
	tests := []struct {
		name    string
		r       *http.Request
		country string
	}{
		{"client behind one proxy", request("10.0.0.5:1", xff, "8.8.8.8"), "US"},
		{"chain of trusted proxies", request("10.0.0.5:1", xff, "193.99.144.80, 10.0.0.7", xff, "10.0.0.9"), "DE"},
		{"spoofed entries left of the client are ignored", request("10.0.0.5:1", xff, "8.8.8.8, 193.99.144.80"), "DE"},
		{"untrusted peer's header is ignored", request("133.242.0.3:1", xff, "8.8.8.8"), "JP"},
		{"malformed hop stops at last trusted hop", request("10.0.0.5:1", xff, "8.8.8.8, bogus, 10.0.0.7"), ""},
		{"only trusted hops", request("10.0.0.5:1", xff, "10.0.0.6"), ""},
		{"no header", request("10.0.0.5:1"), ""},
	}
	for _, tt := range tests {
		got := locate(t, l, tt.r, Hint{})
		if got.Location.Country != tt.country {
			t.Errorf("%s: got %+v, want %q", tt.name, got, tt.country)
		}
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.mmdb")
	garbage := filepath.Join(dir, "garbage.mmdb")
	if err := os.WriteFile(garbage, []byte("this is not a MaxMind database"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.mmdb")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{missing, garbage, empty} {
		l, err := New(Config{GeoIPFile: path})
		if err == nil {
			l.Close()
			t.Errorf("%s: New succeeded", path)
			continue
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("error %q does not name the file", err)
		}
	}
	if _, err := New(Config{TrustedProxies: []netip.Prefix{{}}}); err == nil {
		t.Error("invalid trusted prefix accepted")
	}
}

func TestCloseTwice(t *testing.T) {
	l, err := New(Config{GeoIPFile: countryDB(t, map[string]string{"8.8.8.0/24": "US"})})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestConcurrentLocate(t *testing.T) {
	l := newLocator(t, Config{
		GeoIPFile: countryDB(t, map[string]string{"198.51.100.0/24": "NL"}), TrustClientHints: true,
		ProxyHeader: proxyHeader, TrustedProxies: proxyNet,
	})
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				var r *http.Request
				want := Source("")
				switch (i + j) % 4 {
				case 0:
					r, want = request("198.51.100.1:1"), SourceGeoIP
				case 1:
					r, want = request("8.8.8.8:1"), SourceBuiltin
				case 2:
					r, want = request("10.0.0.1:1", proxyHeader, "FI"), SourceProxyHeader
				default:
					r, want = request("127.0.0.1:1"), SourceUnknown
				}
				got, err := l.Locate(r, Hint{})
				if err != nil || got.Source != want {
					select {
					case errs <- string(got.Source) + " != " + string(want):
					default:
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func FuzzLocate(f *testing.F) {
	f.Add("10.0.0.1:1", "DE", "8.8.8.8", "", "")
	f.Add("8.8.8.8:1", "xx", "", "JP", "")
	f.Add("[fd00::1]:9", " de ", "1.2.3.4, ,10.0.0.1", "", "eu-west-1")
	f.Add("garbage", "D\xffE", "[::1]:80", "de", "EU-WEST-1")
	db := countryDB(f, map[string]string{"1.0.0.0/8": "AU", "2001:db8::/32": "CH"})
	l, err := New(Config{
		ProxyHeader: proxyHeader, TrustedProxies: proxyNet, ClientIPHeader: "X-Forwarded-For",
		GeoIPFile: db, TrustClientHints: true,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { l.Close() })
	f.Fuzz(func(t *testing.T, remote, country, xff, hintCountry, hintRegion string) {
		r := request(remote, proxyHeader, country, "X-Forwarded-For", xff)
		res, err := l.Locate(r, Hint{Country: hintCountry, Region: hintRegion})
		if err != nil {
			var uce *geo.UnknownCodeError
			if !errors.As(err, &uce) && !errors.Is(err, ErrConflictingHint) {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			return
		}
		if res.Location.Known != (res.Source != SourceUnknown) {
			t.Fatalf("Known=%v with source %q", res.Location.Known, res.Source)
		}
		if res.Location.Known {
			if _, ok := geo.LookupCountry(res.Location.Country); !ok {
				t.Fatalf("located in unknown country %q", res.Location.Country)
			}
		}
		if res.Source == SourceProxyHeader {
			peer := remoteAddr(remote)
			if !peer.IsValid() || !l.trusted(peer) {
				t.Fatalf("header from untrusted peer %q believed", remote)
			}
		}
	})
}

func BenchmarkLocate(b *testing.B) {
	l, err := New(Config{ProxyHeader: proxyHeader, TrustedProxies: proxyNet,
		GeoIPFile: countryDB(b, map[string]string{"198.51.100.0/24": "NL"})})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	for _, bc := range []struct{ name, remote string }{
		{"proxy_header", "10.0.0.1:1"}, {"geoip", "198.51.100.1:1"}, {"builtin", "8.8.8.8:1"},
	} {
		r := request(bc.remote, proxyHeader, "DE")
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := l.Locate(r, Hint{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
