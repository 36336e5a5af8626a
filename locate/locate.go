// Package locate decides where a client is, so that placement can pick a
// nearby node and policy can be checked against a place. It weighs the
// available evidence in a fixed order of trust: a country header set by a
// trusted reverse proxy, a hint the client sent (only where the deployment
// allows hints), a MaxMind-format GeoIP database, and finally a built-in
// IP-to-country table. Not knowing is a normal outcome, not an error.
package locate

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/oakmeet/oakmeet/geo"
	"github.com/oschwald/maxminddb-golang/v2"
	"github.com/phuslu/iploc"
)

// Config says which evidence a Locator may use.
type Config struct {
	// ProxyHeader names a header carrying an ISO 3166-1 alpha-2 code set by a
	// trusted reverse proxy or CDN, e.g. "X-Client-Country". Empty disables.
	ProxyHeader string
	// TrustedProxies are the peers whose headers are believed. A header from
	// any other peer is ignored, since a client can set any header it likes.
	TrustedProxies []netip.Prefix
	// ClientIPHeader names a header in X-Forwarded-For form ("client, proxy1,
	// proxy2") from which the client's own address is taken when the peer is
	// a trusted proxy; without it GeoIP would locate the proxy. Empty uses
	// the TCP peer's address.
	ClientIPHeader string
	// GeoIPFile is an optional MaxMind-format database with country data
	// (GeoLite2-Country, GeoIP2-Country or City, or compatible). "" = none.
	GeoIPFile string
	// TrustClientHints accepts the Hint a client sends. Hints are easy to
	// lie with, so only deployments that accept that (the demo) enable them.
	TrustClientHints bool
	// DisableBuiltin skips the built-in IP-to-country table.
	DisableBuiltin bool
	// Logger receives a warning when the GeoIP database fails at lookup
	// (a corrupt or truncated file that still opened), at most once per
	// LogInterval. Nil discards.
	Logger *slog.Logger
	// LogInterval spaces those warnings; 0 means DefaultLogInterval.
	LogInterval time.Duration
}

// DefaultLogInterval is how often a failing GeoIP database is reported: a
// broken file fails for every client, and one line a minute says so.
const DefaultLogInterval = time.Minute

// Hint is what a client says about its own location.
type Hint struct {
	Country string `json:"country,omitempty"`
	Region  string `json:"region,omitempty"`
}

// IsZero reports whether the hint says nothing.
func (h Hint) IsZero() bool {
	return strings.TrimSpace(h.Country) == "" && strings.TrimSpace(h.Region) == ""
}

// Source is the evidence a Result rests on; it is recorded in the audit log
// so an operator can see why a client was placed where it was.
type Source string

// The sources, in the order a Locator consults them.
const (
	SourceProxyHeader Source = "proxy_header"
	SourceClientHint  Source = "client_hint"
	SourceGeoIP       Source = "geoip"
	SourceBuiltin     Source = "builtin"
	SourceUnknown     Source = "unknown"
)

// Result is where a client is and why we think so.
type Result struct {
	Location geo.Location `json:"location"`
	Source   Source       `json:"source"`
}

// ErrConflictingHint is returned when a hint names a region outside the
// country it also names: one of the two is wrong and guessing which would
// place the client on a false premise.
var ErrConflictingHint = errors.New("locate: hint region is not in hint country")

// Locator answers where a client is. It is safe for concurrent use; the only
// state that changes after New is when it last logged a failing lookup.
type Locator struct {
	cfg Config
	db  *maxminddb.Reader
	log *slog.Logger
	// lastLog is the UnixNano of the last GeoIP failure logged.
	lastLog atomic.Int64
	// lookupFailures counts GeoIP lookups that failed on bad data.
	lookupFailures atomic.Uint64
}

// New builds a Locator, opening the GeoIP database if one is configured.
func New(cfg Config) (*Locator, error) {
	cfg.ProxyHeader = strings.TrimSpace(cfg.ProxyHeader)
	cfg.ClientIPHeader = strings.TrimSpace(cfg.ClientIPHeader)
	prefixes := make([]netip.Prefix, 0, len(cfg.TrustedProxies))
	for _, p := range cfg.TrustedProxies {
		if !p.IsValid() {
			return nil, fmt.Errorf("locate: invalid trusted proxy prefix %q", p.String())
		}
		prefixes = append(prefixes, p.Masked())
	}
	cfg.TrustedProxies = prefixes
	if cfg.LogInterval <= 0 {
		cfg.LogInterval = DefaultLogInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Locator{cfg: cfg, log: log}
	if cfg.GeoIPFile != "" {
		db, err := maxminddb.Open(cfg.GeoIPFile)
		if err != nil {
			return nil, fmt.Errorf("locate: open GeoIP database %q: %w", cfg.GeoIPFile, err)
		}
		l.db = db
	}
	return l, nil
}

// Close releases the GeoIP database, if any. The Locator must not be used
// afterwards.
func (l *Locator) Close() error {
	if l.db == nil {
		return nil
	}
	err := l.db.Close()
	l.db = nil
	if err != nil {
		return fmt.Errorf("locate: close GeoIP database %q: %w", l.cfg.GeoIPFile, err)
	}
	return nil
}

// Locate says where the client behind r is. The hint is what the client
// claimed; it is used only when Config.TrustClientHints is set, and then a
// hint naming an unknown country or region is an error (a
// *geo.UnknownCodeError, or ErrConflictingHint) even when stronger evidence
// exists, so that bad input is reported the same way every time.
func (l *Locator) Locate(r *http.Request, hint Hint) (Result, error) {
	var hinted Result
	if l.cfg.TrustClientHints && !hint.IsZero() {
		loc, err := hintLocation(hint)
		if err != nil {
			return Result{}, err
		}
		hinted = Result{Location: loc, Source: SourceClientHint}
	}

	peer := remoteAddr(r.RemoteAddr)
	viaProxy := peer.IsValid() && l.trusted(peer)
	if viaProxy && l.cfg.ProxyHeader != "" {
		if loc, ok := headerCountry(r.Header, l.cfg.ProxyHeader); ok {
			return Result{Location: loc, Source: SourceProxyHeader}, nil
		}
	}
	if hinted.Source != "" {
		return hinted, nil
	}

	client := l.clientAddr(r.Header, peer, viaProxy)
	if !isPublic(client) {
		return unknown(), nil
	}
	if l.db != nil {
		if loc, ok := l.geoIP(client); ok {
			return Result{Location: loc, Source: SourceGeoIP}, nil
		}
	}
	if !l.cfg.DisableBuiltin {
		if loc, ok := geo.CountryLocation(iploc.IPCountry(client)); ok {
			return Result{Location: loc, Source: SourceBuiltin}, nil
		}
	}
	return unknown(), nil
}

// ClientAddr is the address of the client behind r: the TCP peer, or, when
// the peer is a trusted proxy and Config.ClientIPHeader is set, the address
// that proxy names for its client. It is the one answer to "who is this
// client" that location and per-client limits share. The zero Addr means the
// peer address could not be read (a request not from TCP).
func (l *Locator) ClientAddr(r *http.Request) netip.Addr {
	peer := remoteAddr(r.RemoteAddr)
	return l.clientAddr(r.Header, peer, peer.IsValid() && l.trusted(peer))
}

func (l *Locator) clientAddr(h http.Header, peer netip.Addr, viaProxy bool) netip.Addr {
	if viaProxy && l.cfg.ClientIPHeader != "" {
		return l.forwardedClient(h, peer)
	}
	return peer
}

// LookupFailures is how many GeoIP lookups have failed on bad data since New.
func (l *Locator) LookupFailures() uint64 {
	return l.lookupFailures.Load()
}

func unknown() Result {
	return Result{Source: SourceUnknown}
}

func hintLocation(h Hint) (geo.Location, error) {
	var country geo.Country
	if strings.TrimSpace(h.Country) != "" {
		c, err := geo.ParseCountry(h.Country)
		if err != nil {
			return geo.Location{}, fmt.Errorf("locate: client hint: %w", err)
		}
		country = c
	}
	if strings.TrimSpace(h.Region) == "" {
		loc, _ := geo.CountryLocation(country.Code)
		return loc, nil
	}
	region, err := geo.ParseRegion(h.Region)
	if err != nil {
		return geo.Location{}, fmt.Errorf("locate: client hint: %w", err)
	}
	if country.Code != "" && region.Country != country.Code {
		return geo.Location{}, fmt.Errorf("%w: region %s is in %s, not %s",
			ErrConflictingHint, region.ID, region.Country, country.Code)
	}
	loc, _ := geo.RegionLocation(region.ID)
	return loc, nil
}

// headerCountry reads a country code header. A value that is not a code in
// the catalogue (a CDN's "XX" or "T1", a name, a list) is ignored rather than
// trusted, and so are repeated headers, because then some copy did not come
// from the proxy.
func headerCountry(h http.Header, name string) (geo.Location, bool) {
	vals := h.Values(name)
	if len(vals) != 1 {
		return geo.Location{}, false
	}
	v := strings.TrimSpace(vals[0])
	if len(v) != 2 {
		return geo.Location{}, false
	}
	return geo.CountryLocation(v)
}

func (l *Locator) trusted(a netip.Addr) bool {
	for _, p := range l.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardedClient walks the forwarding chain from the nearest hop outwards
// and returns the first address not belonging to a trusted proxy: entries
// further out were written by parties we cannot vouch for. A malformed entry
// stops the walk at the last hop we trust.
func (l *Locator) forwardedClient(h http.Header, peer netip.Addr) netip.Addr {
	var hops []string
	for _, v := range h.Values(l.cfg.ClientIPHeader) {
		hops = append(hops, strings.Split(v, ",")...)
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a := remoteAddr(strings.TrimSpace(hops[i]))
		if !a.IsValid() {
			return client
		}
		client = a
		if !l.trusted(a) {
			return a
		}
	}
	return client
}

// remoteAddr parses "ip:port", "[ip]:port" or a bare address, dropping any
// IPv6 zone and unmapping IPv4-in-IPv6 so one address has one form.
func remoteAddr(s string) netip.Addr {
	var a netip.Addr
	if ap, err := netip.ParseAddrPort(s); err == nil {
		a = ap.Addr()
	} else if a, err = netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

// sharedAddressSpace is carrier-grade NAT (RFC 6598); like private ranges it
// says nothing about where the client is.
var sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")

// isPublic reports whether an address can be located at all: loopback,
// private, link-local and similar addresses belong to no country.
func isPublic(a netip.Addr) bool {
	return a.IsValid() && a.IsGlobalUnicast() && !a.IsPrivate() && !sharedAddressSpace.Contains(a)
}

// geoIP reads the country of a; databases without a "country" for a network
// (anycast, some hosting ranges) may still say where it is registered, which
// is the best evidence they have. A lookup error, such as an IPv6 address in
// an IPv4-only database, is a miss: the next source may still know. A record
// that cannot be decoded (a corrupt or truncated file that still opened) is
// a miss too, counted and logged, and so is a panic inside the reader: a bad
// file must cost a client its location, never the request.
func (l *Locator) geoIP(a netip.Addr) (loc geo.Location, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			l.lookupFailed(a, fmt.Errorf("panic in GeoIP reader: %v", p))
			loc, ok = geo.Location{}, false
		}
	}()
	if a.Is6() && l.db.Metadata.IPVersion == 4 {
		return geo.Location{}, false // an IPv4-only database: a miss, not a fault
	}
	res := l.db.Lookup(a)
	if err := res.Err(); err != nil {
		l.lookupFailed(a, err)
		return geo.Location{}, false
	}
	if !res.Found() {
		return geo.Location{}, false
	}
	for _, field := range []string{"country", "registered_country"} {
		var code *string
		if err := res.DecodePath(&code, field, "iso_code"); err != nil {
			l.lookupFailed(a, err)
			return geo.Location{}, false
		}
		if code == nil {
			continue
		}
		if loc, ok := geo.CountryLocation(*code); ok {
			return loc, true
		}
	}
	return geo.Location{}, false
}

// lookupFailed counts a failed lookup and logs it, at most once per
// LogInterval so a broken file does not flood the log.
func (l *Locator) lookupFailed(a netip.Addr, err error) {
	l.lookupFailures.Add(1)
	now := time.Now().UnixNano()
	last := l.lastLog.Load()
	if last != 0 && now-last < int64(l.cfg.LogInterval) {
		return
	}
	if !l.lastLog.CompareAndSwap(last, now) {
		return
	}
	l.log.Warn("GeoIP lookup failed; client location unknown to the database",
		"file", l.cfg.GeoIPFile, "addr", a.String(), "err", err, "failures", l.lookupFailures.Load())
}
