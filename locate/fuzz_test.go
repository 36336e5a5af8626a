package locate

import (
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/oakmeet/oakmeet/geo"
)

// FuzzMMDB feeds corrupted MaxMind-format databases to the Locator: a
// database that opens may still fail at lookup, and then the client is
// "location unknown" (or located by the next source), never a panic. Seeds
// are real databases from the writer in mmdbwriter_test.go (testdata/fuzz/FuzzMMDB
// and the ones built here); the fuzzer flips their bytes. The database is
// read from memory (maxminddb.OpenBytes): the same reader as a file's,
// without a file write per input.
func FuzzMMDB(f *testing.F) {
	for _, nets := range []map[string]mmdbRecord{
		{"1.0.0.0/8": {"country": map[string]any{"iso_code": "AU"}}, "2001:db8::/32": {"country": map[string]any{"iso_code": "CH"}}},
		{"8.8.8.0/24": {"registered_country": map[string]any{"iso_code": "US"}}},
		{"81.2.69.0/24": {"country": map[string]any{"iso_code": "GB", "names": map[string]any{"en": "United Kingdom"}}, "list": []any{uint64(1), "x"}}},
	} {
		raw, err := buildMMDB(nets)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw, []byte{1, 2, 3, 4})
	}
	f.Fuzz(func(t *testing.T, raw []byte, ip []byte) {
		db, err := maxminddb.OpenBytes(raw)
		if err != nil {
			return
		}
		l, err := New(Config{})
		if err != nil {
			t.Fatal(err)
		}
		l.db = db
		defer l.Close()
		addr, ok := netip.AddrFromSlice(ip)
		if !ok {
			addr = netip.MustParseAddr("1.2.3.4")
		}
		for _, a := range []netip.Addr{addr, netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("81.2.69.1"), netip.MustParseAddr("2001:db8::1")} {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = netip.AddrPortFrom(a, 443).String()
			res, err := l.Locate(r, Hint{})
			if err != nil {
				t.Fatalf("Locate(%v) on a corrupt database: %v", a, err)
			}
			if res.Location.Known {
				if _, ok := geo.LookupCountry(res.Location.Country); !ok {
					t.Fatalf("located %v in unknown country %q", a, res.Location.Country)
				}
			}
		}
	})
}
