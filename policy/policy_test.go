package policy

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/oakmeet/oakmeet/geo"
)

func TestNormalize(t *testing.T) {
	eu := mustGroup(t, "EU")
	tests := []struct {
		name string
		in   Policy
		want Policy
	}{
		{
			name: "nil lists become empty",
			in:   Policy{},
			want: Policy{BlockedCountries: []string{}, BlockedRegions: []string{}, AllowedCountries: []string{}},
		},
		{
			name: "trim, upper-case, dedup, sort",
			in: Policy{
				BlockedCountries: []string{" ru", "CN ", "ru", "Cn"},
				BlockedRegions:   []string{" US-EAST-1", "eu-central-1", "us-east-1"},
				AllowedCountries: []string{"us", "de", "US"},
			},
			want: Policy{
				BlockedCountries: []string{"CN", "RU"},
				BlockedRegions:   []string{"eu-central-1", "us-east-1"},
				AllowedCountries: []string{"DE", "US"},
			},
		},
		{
			name: "groups expand in both country lists",
			in: Policy{
				BlockedCountries: []string{"eu"},
				AllowedCountries: []string{" EU ", "US"},
			},
			want: Policy{
				BlockedCountries: eu,
				BlockedRegions:   []string{},
				AllowedCountries: sortedUnique(append(slices.Clone(eu), "US")),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.Normalize()
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			assertPolicy(t, got, tt.want)
		})
	}
}

func TestNormalizeGroupMembersAreCountries(t *testing.T) {
	p, err := Policy{BlockedCountries: []string{"EU"}}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(p.BlockedCountries, "DE") || slices.Contains(p.BlockedCountries, "EU") {
		t.Fatalf("EU expanded to %v; want its members (incl. DE), not the group name", p.BlockedCountries)
	}
}

func TestNormalizeUnknownCode(t *testing.T) {
	tests := []struct {
		name     string
		in       Policy
		wantKind string
		wantCode string
		wantList string
	}{
		{"first unknown blocked country", Policy{BlockedCountries: []string{"DE", "XX", "YY"}}, "country", "XX", "blocked_countries"},
		{"empty country", Policy{BlockedCountries: []string{""}}, "country", "", "blocked_countries"},
		{"alpha-3 is not alpha-2", Policy{AllowedCountries: []string{"DEU"}}, "country", "DEU", "allowed_countries"},
		{"unknown region", Policy{BlockedRegions: []string{"us-east-1", "mars-1"}}, "region", "mars-1", "blocked_regions"},
		{"region in country list", Policy{BlockedCountries: []string{"us-east-1"}}, "country", "us-east-1", "blocked_countries"},
		{"country in region list", Policy{BlockedRegions: []string{"DE"}}, "region", "DE", "blocked_regions"},
		{"blocked countries are checked before regions and allow-list",
			Policy{BlockedCountries: []string{"ZZ"}, BlockedRegions: []string{"nowhere"}, AllowedCountries: []string{"QQ"}},
			"country", "ZZ", "blocked_countries"},
		{"unknown allowed country", Policy{AllowedCountries: []string{"US", "Q1"}}, "country", "Q1", "allowed_countries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.in.Normalize()
			var uc *geo.UnknownCodeError
			if !errors.As(err, &uc) {
				t.Fatalf("err = %v; want a *geo.UnknownCodeError", err)
			}
			if uc.Kind != tt.wantKind || uc.Code != tt.wantCode {
				t.Errorf("unknown %s %q; want %s %q", uc.Kind, uc.Code, tt.wantKind, tt.wantCode)
			}
			if !strings.Contains(err.Error(), tt.wantList) {
				t.Errorf("error %q does not name the list %s", err, tt.wantList)
			}
		})
	}
}

func TestNormalizeDoesNotTouchInput(t *testing.T) {
	in := Policy{BlockedCountries: []string{"us", "de"}, BlockedRegions: []string{"US-EAST-1"}}
	if _, err := in.Normalize(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(in.BlockedCountries, []string{"us", "de"}) || in.BlockedRegions[0] != "US-EAST-1" {
		t.Fatalf("input changed: %+v", in)
	}
}

func TestNormalizedJSONShowsEmptyLists(t *testing.T) {
	p, err := Policy{}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"blocked_countries":[],"blocked_regions":[],"allowed_countries":[]}`
	if string(b) != want {
		t.Fatalf("JSON = %s; want %s", b, want)
	}
}

func FuzzNormalize(f *testing.F) {
	f.Add("DE,fr", "eu-central-1", "")
	f.Add(" eu ,EEA", "US-EAST-1,us-east-1", "us,de")
	f.Add("XX", "", "")
	f.Add("", "mars", "ıN")
	f.Add("\x00\xff", "\xc3", ",,")
	f.Fuzz(func(t *testing.T, blocked, regions, allowed string) {
		in := Policy{
			BlockedCountries: splitList(blocked),
			BlockedRegions:   splitList(regions),
			AllowedCountries: splitList(allowed),
		}
		out, err := in.Normalize()
		if err != nil {
			var uc *geo.UnknownCodeError
			if !errors.As(err, &uc) {
				t.Fatalf("error %v is not a *geo.UnknownCodeError", err)
			}
			return
		}
		for _, l := range [][]string{out.BlockedCountries, out.BlockedRegions, out.AllowedCountries} {
			if l == nil {
				t.Fatalf("nil list in %+v", out)
			}
			if !slices.IsSorted(l) || len(slices.Compact(slices.Clone(l))) != len(l) {
				t.Fatalf("list %q not sorted and unique", l)
			}
		}
		again, err := out.Normalize()
		if err != nil {
			t.Fatalf("normalized policy %+v does not re-normalize: %v", out, err)
		}
		assertPolicy(t, again, out)
		if _, err := Combine(in, in); err != nil {
			t.Fatalf("Combine of a valid policy failed: %v", err)
		}
	})
}

// splitList turns fuzz text into a list; "" means a nil list so that the
// nil case is explored too.
func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func mustGroup(t testing.TB, name string) []string {
	t.Helper()
	g, ok := geo.Group(name)
	if !ok {
		t.Fatalf("geo has no group %s", name)
	}
	return sortedUnique(g)
}

func assertPolicy(t testing.TB, got, want Policy) {
	t.Helper()
	if !slices.Equal(got.BlockedCountries, want.BlockedCountries) ||
		!slices.Equal(got.BlockedRegions, want.BlockedRegions) ||
		!slices.Equal(got.AllowedCountries, want.AllowedCountries) {
		t.Fatalf("policy = %+v; want %+v", got, want)
	}
	if got.BlockedCountries == nil || got.BlockedRegions == nil || got.AllowedCountries == nil {
		t.Fatalf("policy %+v has a nil list", got)
	}
}
