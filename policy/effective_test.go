package policy

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/oakmeet/oakmeet/geo"
)

type place struct{ country, region string }

func TestCombineAllows(t *testing.T) {
	tests := []struct {
		name          string
		floor, meet   Policy
		allowed       []place
		refused       []place
		allowsNothing bool
	}{
		{
			name:    "no rules allow every known country",
			allowed: []place{{"DE", ""}, {"US", "us-east-1"}, {"CN", ""}, {"de", " EU-CENTRAL-1 "}},
			refused: []place{{"", ""}, {"XX", ""}, {"DEU", ""}, {"D", ""}, {"1E", ""}, {"ÄE", ""}},
		},
		{
			name:    "blocked countries are the union",
			floor:   Policy{BlockedCountries: []string{"RU"}},
			meet:    Policy{BlockedCountries: []string{"CN"}},
			allowed: []place{{"US", ""}, {"DE", "eu-central-1"}, {"JP", "ap-northeast-1"}},
			refused: []place{{"RU", ""}, {"CN", ""}, {"cn", "us-east-1"}},
		},
		{
			name:    "blocked regions are the union and only block that region",
			floor:   Policy{BlockedRegions: []string{"eu-central-1"}},
			meet:    Policy{BlockedRegions: []string{"us-east-1"}},
			allowed: []place{{"DE", ""}, {"US", ""}, {"JP", "ap-northeast-1"}, {"US", "unknown-region"}},
			refused: []place{{"DE", "eu-central-1"}, {"DE", "EU-Central-1"}, {"US", " us-east-1"}},
		},
		{
			name:    "meeting cannot unblock what the floor blocks",
			floor:   Policy{BlockedCountries: []string{"RU"}, BlockedRegions: []string{"us-east-1"}},
			meet:    Policy{AllowedCountries: []string{"RU", "US"}},
			allowed: []place{{"US", ""}},
			refused: []place{{"RU", ""}, {"US", "us-east-1"}, {"DE", ""}},
		},
		{
			name:    "only the floor has an allow-list",
			floor:   Policy{AllowedCountries: []string{"EU"}},
			allowed: []place{{"DE", "eu-central-1"}, {"FR", ""}},
			refused: []place{{"US", ""}, {"CN", ""}, {"RU", ""}, {"NO", ""}},
		},
		{
			name:    "only the meeting has an allow-list",
			meet:    Policy{AllowedCountries: []string{"US", "JP"}},
			allowed: []place{{"US", ""}, {"JP", ""}},
			refused: []place{{"DE", ""}},
		},
		{
			name:    "both allow-lists intersect",
			floor:   Policy{AllowedCountries: []string{"EU", "US"}},
			meet:    Policy{AllowedCountries: []string{"DE", "JP", "EEA"}},
			allowed: []place{{"DE", ""}, {"FR", ""}},
			refused: []place{{"US", ""}, {"JP", ""}, {"NO", ""}},
		},
		{
			name:          "disjoint allow-lists allow nothing",
			floor:         Policy{AllowedCountries: []string{"US"}},
			meet:          Policy{AllowedCountries: []string{"DE"}},
			refused:       []place{{"US", ""}, {"DE", ""}, {"JP", ""}},
			allowsNothing: true,
		},
		{
			name:          "allow-list wholly blocked allows nothing",
			floor:         Policy{BlockedCountries: []string{"DE"}},
			meet:          Policy{AllowedCountries: []string{"DE"}},
			refused:       []place{{"DE", ""}, {"US", ""}},
			allowsNothing: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Combine(tt.floor, tt.meet)
			if err != nil {
				t.Fatalf("Combine: %v", err)
			}
			for _, p := range tt.allowed {
				if !e.Allows(p.country, p.region) {
					t.Errorf("Allows(%q, %q) = false; want true", p.country, p.region)
				}
			}
			for _, p := range tt.refused {
				if e.Allows(p.country, p.region) {
					t.Errorf("Allows(%q, %q) = true; want false", p.country, p.region)
				}
			}
			if e.AllowsNothing() != tt.allowsNothing {
				t.Errorf("AllowsNothing = %v; want %v", e.AllowsNothing(), tt.allowsNothing)
			}
			assertRoundTrip(t, e)
		})
	}
}

func TestEmptyIntersectionIsNotNoAllowList(t *testing.T) {
	e, err := Combine(Policy{AllowedCountries: []string{"US"}}, Policy{AllowedCountries: []string{"DE"}})
	if err != nil {
		t.Fatal(err)
	}
	open, err := Combine(Policy{}, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if e.Equal(open) || e.Hash() == open.Hash() {
		t.Fatal("an empty allow-list intersection compares equal to having no allow-list")
	}
	p := e.Policy()
	if len(p.AllowedCountries) != 0 || len(p.BlockedCountries) != len(geo.Countries()) {
		t.Fatalf("Policy() of allow-nothing = %d allowed, %d blocked; want 0 allowed and every country blocked",
			len(p.AllowedCountries), len(p.BlockedCountries))
	}
}

func TestZeroEffectiveAllowsNothing(t *testing.T) {
	var e Effective
	if e.Allows("US", "") || e.Allows("DE", "eu-central-1") || !e.AllowsNothing() {
		t.Fatal("zero Effective allows something")
	}
	nothing, err := Combine(Policy{AllowedCountries: []string{"US"}}, Policy{AllowedCountries: []string{"DE"}})
	if err != nil {
		t.Fatal(err)
	}
	if e.Hash() != nothing.Hash() || !e.Equal(nothing) {
		t.Fatal("zero Effective differs from a combined allow-nothing policy")
	}
	assertRoundTrip(t, e)
}

func TestCombineReportsWhichSide(t *testing.T) {
	for _, tt := range []struct {
		floor, meet Policy
		side, code  string
	}{
		{Policy{BlockedCountries: []string{"XX"}}, Policy{}, "floor", "XX"},
		{Policy{}, Policy{BlockedRegions: []string{"nowhere-1"}}, "meeting", "nowhere-1"},
	} {
		_, err := Combine(tt.floor, tt.meet)
		var uc *geo.UnknownCodeError
		if !errors.As(err, &uc) || uc.Code != tt.code {
			t.Fatalf("err = %v; want unknown code %q", err, tt.code)
		}
		if !strings.Contains(err.Error(), tt.side) {
			t.Errorf("error %q does not name the %s policy", err, tt.side)
		}
	}
}

func TestPolicyIsACopy(t *testing.T) {
	e, err := Combine(Policy{BlockedCountries: []string{"RU"}}, Policy{BlockedRegions: []string{"us-east-1"}, AllowedCountries: []string{"US", "DE"}})
	if err != nil {
		t.Fatal(err)
	}
	before := e.Hash()
	p := e.Policy()
	p.BlockedCountries[0] = "US"
	p.BlockedRegions[0] = "eu-central-1"
	p.AllowedCountries[0] = "RU"
	if e.Hash() != before || e.Policy().BlockedCountries[0] != "RU" || !e.Allows("US", "eu-central-1") {
		t.Fatal("mutating Policy() changed the Effective")
	}
}

func TestHashKnownValue(t *testing.T) {
	a, err := Combine(Policy{BlockedCountries: []string{"RU"}}, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Hash()) != 64 || strings.Trim(a.Hash(), "0123456789abcdef") != "" {
		t.Fatalf("Hash = %q; want 64 lower-case hex digits", a.Hash())
	}
	b, err := Combine(Policy{BlockedCountries: []string{"CN"}}, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Hash() == b.Hash() || a.Equal(b) {
		t.Fatal("different rules share a hash")
	}
	c, err := Combine(Policy{BlockedCountries: []string{"RU"}}, Policy{BlockedRegions: []string{"us-east-1"}})
	if err != nil {
		t.Fatal(err)
	}
	if a.Hash() == c.Hash() || a.Equal(c) {
		t.Fatal("rules differing only in a blocked region share a hash")
	}
	// Audit entries and stored meetings keep hashes, so the encoding must not
	// drift. The allow-nothing policy's encoding does not depend on the
	// catalogue, so its hash is fixed for good.
	const nothing = "0d48bdeb3cb88dcbc7a63a11f7c0133b1a0d8098695c053c1c0119dba36bc985"
	if got := (Effective{}).Hash(); got != nothing {
		t.Fatalf("allow-nothing Hash = %s; want %s", got, nothing)
	}
}

// catalogueGen draws random policies from the real geo catalogue.
type catalogueGen struct {
	countries, regions, groups []string
}

func newCatalogueGen() catalogueGen {
	var g catalogueGen
	for _, c := range geo.Countries() {
		g.countries = append(g.countries, c.Code)
	}
	for _, r := range geo.Regions() {
		g.regions = append(g.regions, r.ID)
	}
	g.groups = geo.GroupNames()
	return g
}

func (g catalogueGen) policy(r *rand.Rand) Policy {
	var p Policy
	for range r.IntN(6) {
		p.BlockedCountries = append(p.BlockedCountries, g.country(r))
	}
	for range r.IntN(3) {
		p.BlockedRegions = append(p.BlockedRegions, pick(r, g.regions))
	}
	if r.IntN(3) == 0 {
		for range 1 + r.IntN(8) {
			p.AllowedCountries = append(p.AllowedCountries, g.country(r))
		}
	}
	return p
}

// country is usually a country and sometimes a group.
func (g catalogueGen) country(r *rand.Rand) string {
	if len(g.groups) > 0 && r.IntN(10) == 0 {
		return pick(r, g.groups)
	}
	return pick(r, g.countries)
}

// place is a mostly real, sometimes garbage, node location.
func (g catalogueGen) place(r *rand.Rand) place {
	p := place{country: pick(r, g.countries)}
	switch r.IntN(4) {
	case 0:
		p.region = ""
	default:
		p.region = pick(r, g.regions)
	}
	if r.IntN(20) == 0 {
		p.country = garbage(r)
	}
	if r.IntN(20) == 0 {
		p.region = garbage(r)
	}
	return p
}

func pick(r *rand.Rand, s []string) string { return s[r.IntN(len(s))] }

func garbage(r *rand.Rand) string {
	b := make([]byte, r.IntN(6))
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return string(b)
}

// restyle writes the same policy differently: shuffled, duplicated, odd case
// and whitespace.
func restyle(r *rand.Rand, p Policy) Policy {
	return Policy{
		BlockedCountries: restyleList(r, p.BlockedCountries),
		BlockedRegions:   restyleList(r, p.BlockedRegions),
		AllowedCountries: restyleList(r, p.AllowedCountries),
	}
}

func restyleList(r *rand.Rand, in []string) []string {
	out := slices.Clone(in)
	for _, s := range in {
		if r.IntN(2) == 0 {
			out = append(out, s)
		}
	}
	for i, s := range out {
		switch r.IntN(4) {
		case 0:
			s = strings.ToLower(s)
		case 1:
			s = strings.ToUpper(s)
		}
		if r.IntN(3) == 0 {
			s = " " + s + "\t"
		}
		out[i] = s
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// wantAllows is the specification of Allows written the slow, obvious way,
// over normalized policies.
func wantAllows(f, m Policy, pl place) bool {
	country := strings.TrimSpace(pl.country)
	region := strings.ToLower(strings.TrimSpace(pl.region))
	if len(country) != 2 || strings.Trim(country, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") != "" {
		return false // Allows accepts ASCII codes only, whatever case folding would make of others
	}
	country = strings.ToUpper(country)
	if _, ok := geo.LookupCountry(country); !ok {
		return false
	}
	for _, p := range []Policy{f, m} {
		if slices.Contains(p.BlockedCountries, country) || slices.Contains(p.BlockedRegions, region) {
			return false
		}
		if len(p.AllowedCountries) > 0 && !slices.Contains(p.AllowedCountries, country) {
			return false
		}
	}
	return true
}

func TestPropertyCombineNeverLoosens(t *testing.T) {
	g := newCatalogueGen()
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		floor, meet := g.policy(r), g.policy(r)
		e, err := Combine(floor, meet)
		if err != nil {
			t.Fatalf("case %d: Combine(%+v, %+v): %v", i, floor, meet, err)
		}
		f, _ := floor.Normalize()
		m, _ := meet.Normalize()
		for range 100 {
			pl := g.place(r)
			got := e.Allows(pl.country, pl.region)
			if got != wantAllows(f, m, pl) {
				t.Fatalf("case %d: floor %+v meeting %+v: Allows(%q, %q) = %v; want %v",
					i, f, m, pl.country, pl.region, got, !got)
			}
		}
		// Every blocked entry on either side stays blocked.
		for _, p := range []Policy{f, m} {
			for _, c := range p.BlockedCountries {
				if e.Allows(c, "") {
					t.Fatalf("case %d: %s blocked but allowed", i, c)
				}
			}
			for _, reg := range p.BlockedRegions {
				if e.Allows(pick(r, g.countries), reg) {
					t.Fatalf("case %d: region %s blocked but allowed", i, reg)
				}
			}
		}
		if e.AllowsNothing() != !anyCountryAllowed(e, g.countries) {
			t.Fatalf("case %d: AllowsNothing = %v disagrees with Allows", i, e.AllowsNothing())
		}
		assertRoundTrip(t, e)
	}
}

func anyCountryAllowed(e Effective, countries []string) bool {
	for _, c := range countries {
		if e.Allows(c, "") {
			return true
		}
	}
	return false
}

func TestPropertyHashStable(t *testing.T) {
	g := newCatalogueGen()
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 2000 {
		floor, meet := g.policy(r), g.policy(r)
		a, err := Combine(floor, meet)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Combine(restyle(r, floor), restyle(r, meet))
		if err != nil {
			t.Fatal(err)
		}
		if a.Hash() != b.Hash() || !a.Equal(b) {
			t.Fatalf("case %d: restyling %+v / %+v changed the hash", i, floor, meet)
		}
		// The merge is symmetric in what it allows.
		c, err := Combine(meet, floor)
		if err != nil {
			t.Fatal(err)
		}
		if a.Hash() != c.Hash() {
			t.Fatalf("case %d: swapping floor and meeting changed the hash", i)
		}
	}
}

func TestPropertyAllowsIsTotal(t *testing.T) {
	g := newCatalogueGen()
	r := rand.New(rand.NewPCG(5, 6))
	policies := []Effective{{}}
	for range 50 {
		e, err := Combine(g.policy(r), g.policy(r))
		if err != nil {
			t.Fatal(err)
		}
		policies = append(policies, e)
	}
	for range 20000 {
		e := policies[r.IntN(len(policies))]
		country, region := garbage(r), garbage(r)
		if e.Allows(country, region) {
			if _, ok := geo.LookupCountry(country); !ok {
				t.Fatalf("Allows(%q, %q) = true for a country not in the catalogue", country, region)
			}
		}
	}
}

// assertRoundTrip checks that the displayed rules, combined again, are the
// same rules: storing e.Policy() can never loosen a meeting.
func assertRoundTrip(t testing.TB, e Effective) {
	t.Helper()
	again, err := Combine(Policy{}, e.Policy())
	if err != nil {
		t.Fatalf("Policy() %+v does not combine: %v", e.Policy(), err)
	}
	if !again.Equal(e) || again.Hash() != e.Hash() {
		t.Fatalf("Policy() %+v does not round-trip", e.Policy())
	}
}
