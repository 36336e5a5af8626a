package geo

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestCountriesTable(t *testing.T) {
	cs := Countries()
	if len(cs) != 249 {
		t.Fatalf("got %d countries, want the 249 ISO 3166-1 alpha-2 codes", len(cs))
	}
	code := regexp.MustCompile(`^[A-Z]{2}$`)
	seen := make(map[string]bool, len(cs))
	for i, c := range cs {
		if !code.MatchString(c.Code) {
			t.Errorf("code %q is not two upper-case letters", c.Code)
		}
		if seen[c.Code] {
			t.Errorf("duplicate code %q", c.Code)
		}
		seen[c.Code] = true
		if i > 0 && cs[i-1].Code >= c.Code {
			t.Errorf("not sorted: %q before %q", cs[i-1].Code, c.Code)
		}
		if strings.TrimSpace(c.Name) == "" {
			t.Errorf("%s has no name", c.Code)
		}
		checkPoint(t, c.Code, c.Lat, c.Lon)
	}
	for _, want := range []string{"DE", "US", "CN", "RU", "SS", "XK"} {
		_, ok := LookupCountry(want)
		if want == "XK" && ok {
			t.Errorf("XK (Kosovo) is a user-assigned code, not ISO 3166-1, yet it is in the table")
		}
		if want != "XK" && !ok {
			t.Errorf("%s missing", want)
		}
	}
}

// TestCountriesMatchISOCodes compares the table with Debian's iso-codes when
// it is installed, which catches a code added or withdrawn by ISO since the
// table was generated.
func TestCountriesMatchISOCodes(t *testing.T) {
	const path = "/usr/share/iso-codes/json/iso_3166-1.json"
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("iso-codes not installed (%v); apt-get install iso-codes to run this check", err)
	}
	var doc struct {
		Entries []struct {
			Alpha2 string `json:"alpha_2"`
		} `json:"3166-1"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	var want []string
	for _, e := range doc.Entries {
		want = append(want, e.Alpha2)
	}
	slices.Sort(want)
	var got []string
	for _, c := range Countries() {
		got = append(got, c.Code)
	}
	if !slices.Equal(got, want) {
		t.Errorf("country codes differ from %s; regenerate with go generate ./geo", path)
	}
}

func checkPoint(t *testing.T, what string, lat, lon float64) {
	t.Helper()
	if lat < -90 || lat > 90 || lon < -180 || lon > 180 || (lat == 0 && lon == 0) {
		t.Errorf("%s: implausible point (%v, %v)", what, lat, lon)
	}
}

func TestRegionsTable(t *testing.T) {
	rs := Regions()
	if len(rs) < 30 {
		t.Fatalf("got %d regions, want at least 30", len(rs))
	}
	id := regexp.MustCompile(`^[a-z][a-z0-9-]*[a-z0-9]$`)
	seen := make(map[string]bool, len(rs))
	for i, r := range rs {
		if !id.MatchString(r.ID) {
			t.Errorf("region id %q is not lower-case letters, digits and dashes", r.ID)
		}
		if seen[r.ID] {
			t.Errorf("duplicate region %q", r.ID)
		}
		seen[r.ID] = true
		if i > 0 && rs[i-1].ID >= r.ID {
			t.Errorf("not sorted: %q before %q", rs[i-1].ID, r.ID)
		}
		if r.Name == "" {
			t.Errorf("%s has no name", r.ID)
		}
		c, ok := LookupCountry(r.Country)
		if !ok {
			t.Errorf("%s: country %q not in the catalogue", r.ID, r.Country)
			continue
		}
		checkPoint(t, r.ID, r.Lat, r.Lon)
		// A swapped latitude/longitude or a wrong country lands thousands
		// of kilometres away from the country's representative point.
		if d := DistanceKm(r.Lat, r.Lon, c.Lat, c.Lon); d > 3500 {
			t.Errorf("%s (%s) is %.0f km from %s's point; wrong country or coordinates?", r.ID, r.Name, d, c.Code)
		}
	}
}

func TestRequiredRegions(t *testing.T) {
	// The demo and the placement tests rely on these ids.
	want := map[string]struct{ name, country string }{
		"eu-central-1":   {"Frankfurt", "DE"},
		"us-east-1":      {"N. Virginia", "US"},
		"us-west-2":      {"Oregon", "US"},
		"ap-northeast-1": {"Tokyo", "JP"},
		"ap-northeast-2": {"Seoul", "KR"},
		"ap-southeast-1": {"Singapore", "SG"},
		"ap-southeast-2": {"Sydney", "AU"},
		"sa-east-1":      {"São Paulo", "BR"},
		"ap-south-1":     {"Mumbai", "IN"},
		"cn-north-1":     {"Beijing", "CN"},
		"ru-central1":    {"Moscow", "RU"},
		"eu-west-1":      {"Dublin", "IE"},
		"eu-west-2":      {"London", "GB"},
		"eu-west-3":      {"Paris", "FR"},
		"eu-north-1":     {"Stockholm", "SE"},
		"ca-central-1":   {"Montréal", "CA"},
		"af-south-1":     {"Cape Town", "ZA"},
		"me-central-1":   {"UAE", "AE"},
	}
	for id, w := range want {
		r, ok := LookupRegion(id)
		if !ok {
			t.Errorf("region %s missing", id)
			continue
		}
		if r.Name != w.name || r.Country != w.country {
			t.Errorf("region %s = %q in %s, want %q in %s", id, r.Name, r.Country, w.name, w.country)
		}
	}
}

func TestGroups(t *testing.T) {
	eu, ok := Group("EU")
	if !ok || len(eu) != 27 {
		t.Fatalf("EU: got %d members (ok=%v), want 27", len(eu), ok)
	}
	if slices.Contains(eu, "GB") {
		t.Error("EU still lists GB")
	}
	eea, ok := Group("EEA")
	if !ok {
		t.Fatal("EEA missing")
	}
	wantEEA := slices.Sorted(slices.Values(append(slices.Clone(eu), "IS", "LI", "NO")))
	if !slices.Equal(eea, wantEEA) {
		t.Errorf("EEA = %v, want EU + IS, LI, NO = %v", eea, wantEEA)
	}
	names := GroupNames()
	if !slices.IsSorted(names) || !slices.Contains(names, "EU") || !slices.Contains(names, "EEA") {
		t.Errorf("GroupNames() = %v, want sorted and containing EU and EEA", names)
	}
	for _, name := range names {
		if _, clash := LookupCountry(name); clash {
			t.Errorf("group name %q is also a country code", name)
		}
		if _, clash := LookupRegion(name); clash {
			t.Errorf("group name %q is also a region id", name)
		}
		members, _ := Group(name)
		if !slices.IsSorted(members) || len(slices.Compact(slices.Clone(members))) != len(members) {
			t.Errorf("group %s members not sorted and unique: %v", name, members)
		}
		for _, m := range members {
			if _, ok := LookupCountry(m); !ok {
				t.Errorf("group %s: member %q not in the catalogue", name, m)
			}
		}
	}
}

func TestDistanceKm(t *testing.T) {
	fra, _ := LookupRegion("eu-central-1")
	tyo, _ := LookupRegion("ap-northeast-1")
	tests := []struct {
		name                   string
		lat1, lon1, lat2, lon2 float64
		want                   float64 // km; published great-circle distances
	}{
		{"Frankfurt-Tokyo", fra.Lat, fra.Lon, tyo.Lat, tyo.Lon, 9340},
		{"London-New York", 51.5074, -0.1278, 40.7128, -74.0060, 5570},
		{"Sydney-Santiago", -33.87, 151.21, -33.45, -70.67, 11350},
		{"same point", 48.86, 2.35, 48.86, 2.35, 0},
		{"antipodes", 0, 0, 0, 180, math.Pi * EarthRadiusKm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DistanceKm(tt.lat1, tt.lon1, tt.lat2, tt.lon2)
			if math.Abs(got-tt.want) > 0.01*tt.want+1e-9 {
				t.Errorf("DistanceKm = %.0f km, want %.0f km ±1%%", got, tt.want)
			}
			if back := DistanceKm(tt.lat2, tt.lon2, tt.lat1, tt.lon1); math.Abs(back-got) > 1e-6 {
				t.Errorf("not symmetric: %v vs %v", got, back)
			}
		})
	}
}

func TestLookupsCaseInsensitive(t *testing.T) {
	for _, in := range []string{"de", "De", " DE ", "dE"} {
		if c, ok := LookupCountry(in); !ok || c.Code != "DE" {
			t.Errorf("LookupCountry(%q) = %v, %v", in, c, ok)
		}
	}
	for _, in := range []string{"EU-CENTRAL-1", "Eu-Central-1", " eu-central-1 "} {
		if r, ok := LookupRegion(in); !ok || r.ID != "eu-central-1" {
			t.Errorf("LookupRegion(%q) = %v, %v", in, r, ok)
		}
	}
	for _, in := range []string{"eu", "Eea", "five_eyes"} {
		if _, ok := Group(in); !ok {
			t.Errorf("Group(%q) not found", in)
		}
	}
	loc, ok := RegionLocation("SA-EAST-1")
	if !ok || loc != (Location{Country: "BR", Region: "sa-east-1", Lat: -23.55, Lon: -46.63, Known: true}) {
		t.Errorf("RegionLocation = %+v, %v", loc, ok)
	}
	loc, ok = CountryLocation("jp")
	if !ok || loc.Country != "JP" || loc.Region != "" || !loc.Known {
		t.Errorf("CountryLocation = %+v, %v", loc, ok)
	}
	if _, ok := CountryLocation("XX"); ok {
		t.Error("CountryLocation(XX) found")
	}
	if _, ok := RegionLocation("mars-1"); ok {
		t.Error("RegionLocation(mars-1) found")
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		kind, code string
		parse      func(string) error
	}{
		{"country", "XX", func(s string) error { _, err := ParseCountry(s); return err }},
		{"country", "", func(s string) error { _, err := ParseCountry(s); return err }},
		{"country", "DEU", func(s string) error { _, err := ParseCountry(s); return err }},
		{"region", "mars-north-1", func(s string) error { _, err := ParseRegion(s); return err }},
		{"group", "NATO", func(s string) error { _, err := ParseGroup(s); return err }},
	}
	for _, tt := range tests {
		err := tt.parse(tt.code)
		var uce *UnknownCodeError
		if !errors.As(err, &uce) {
			t.Errorf("%s %q: got %v, want *UnknownCodeError", tt.kind, tt.code, err)
			continue
		}
		if uce.Kind != tt.kind || uce.Code != tt.code {
			t.Errorf("got %+v, want kind %s code %q", uce, tt.kind, tt.code)
		}
		if !strings.Contains(err.Error(), `"`+tt.code+`"`) {
			t.Errorf("error %q does not name the code", err)
		}
	}
	if c, err := ParseCountry("fr"); err != nil || c.Code != "FR" || c.Name != "France" {
		t.Errorf("ParseCountry(fr) = %+v, %v", c, err)
	}
	if r, err := ParseRegion("eu-west-3"); err != nil || r.Country != "FR" {
		t.Errorf("ParseRegion(eu-west-3) = %+v, %v", r, err)
	}
	if g, err := ParseGroup("efta"); err != nil || !slices.Equal(g, []string{"CH", "IS", "LI", "NO"}) {
		t.Errorf("ParseGroup(efta) = %v, %v", g, err)
	}
}

func TestAccessorsReturnCopies(t *testing.T) {
	cs := Countries()
	cs[0].Name = "changed"
	rs := Regions()
	rs[0].Country = "XX"
	g, _ := Group("EU")
	g[0] = "XX"
	names := GroupNames()
	names[0] = "XX"
	if Countries()[0].Name == "changed" || Regions()[0].Country == "XX" {
		t.Error("Countries/Regions expose the table")
	}
	if g2, _ := Group("EU"); g2[0] == "XX" {
		t.Error("Group exposes the table")
	}
	if GroupNames()[0] == "XX" {
		t.Error("GroupNames exposes the table")
	}
}

func FuzzParseCountry(f *testing.F) {
	for _, s := range []string{"DE", "de", " us ", "", "XX", "ÄÖ", "D\x00", "eu-central-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCountry(s)
		if err != nil {
			var uce *UnknownCodeError
			if !errors.As(err, &uce) || uce.Code != s {
				t.Fatalf("ParseCountry(%q) error %v is not an UnknownCodeError naming the input", s, err)
			}
			return
		}
		if c.Code != NormalizeCode(s) {
			t.Fatalf("ParseCountry(%q) = %q", s, c.Code)
		}
	})
}

func FuzzParseRegion(f *testing.F) {
	for _, s := range []string{"eu-central-1", "EU-CENTRAL-1", "", "ru-central1 ", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRegion(s)
		if err != nil {
			var uce *UnknownCodeError
			if !errors.As(err, &uce) || uce.Code != s {
				t.Fatalf("ParseRegion(%q) error %v is not an UnknownCodeError naming the input", s, err)
			}
			return
		}
		if !strings.EqualFold(r.ID, strings.TrimSpace(s)) {
			t.Fatalf("ParseRegion(%q) = %q", s, r.ID)
		}
		if _, ok := LookupCountry(r.Country); !ok {
			t.Fatalf("region %s has unknown country %s", r.ID, r.Country)
		}
	})
}
