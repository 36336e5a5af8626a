package policy

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/oakmeet/oakmeet/geo"
)

// The rules of any combined policy compile back to a policy with the same
// hash that allows exactly the same nodes.
func TestPropertyRulesRoundTrip(t *testing.T) {
	g := newCatalogueGen()
	r := rand.New(rand.NewPCG(9, 10))
	for i := range 500 {
		a, err := Combine(g.policy(r), g.policy(r))
		if err != nil {
			t.Fatal(err)
		}
		rules := a.Rules()
		if rules.Hash() != a.Hash() {
			t.Fatalf("case %d: rules hash %s, policy hash %s", i, rules.Hash(), a.Hash())
		}
		b, err := rules.Effective()
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if b.Hash() != a.Hash() {
			t.Fatalf("case %d: compiled rules hash differently", i)
		}
		for _, reg := range geo.Regions() {
			if a.Allows(reg.Country, reg.ID) != b.Allows(reg.Country, reg.ID) {
				t.Fatalf("case %d: %s %s answered differently", i, reg.Country, reg.ID)
			}
		}
		for _, c := range geo.Countries() {
			if a.Allows(c.Code, "") != b.Allows(c.Code, "") {
				t.Fatalf("case %d: %s answered differently", i, c.Code)
			}
		}
	}
}

// Only the canonical spelling compiles: anything else would have a second
// hash for the same rules, or none.
func TestRulesRefuseNonCanonicalLists(t *testing.T) {
	for _, bad := range []Rules{
		{AllowedCountries: []string{"FR", "DE"}},
		{AllowedCountries: []string{"DE", "DE"}},
		{AllowedCountries: []string{"de"}},
		{AllowedCountries: []string{"EU"}},
		{AllowedCountries: []string{" DE"}},
		{AllowedCountries: []string{"XX"}},
		{AllowedCountries: []string{"DE"}, BlockedRegions: []string{"EU-CENTRAL-1"}},
		{AllowedCountries: []string{"DE"}, BlockedRegions: []string{"eu-west-3", "eu-central-1"}},
		{AllowedCountries: []string{"DE"}, BlockedRegions: []string{"mars-1"}},
	} {
		if _, err := bad.Effective(); err == nil {
			t.Errorf("%+v compiled", bad)
		}
	}
	ok := Rules{AllowedCountries: []string{"DE", "FR"}, BlockedRegions: []string{"eu-central-1"}}
	e, err := ok.Effective()
	if err != nil {
		t.Fatal(err)
	}
	if !e.Allows("FR", "eu-west-3") || e.Allows("DE", "eu-central-1") || e.Allows("US", "") || !strings.EqualFold(e.Hash(), ok.Hash()) {
		t.Fatalf("%+v compiled to the wrong rules", ok)
	}
	if e, err := (Rules{}).Effective(); err != nil || !e.AllowsNothing() {
		t.Fatalf("empty rules: %v, allows nothing %v", err, e.AllowsNothing())
	}
}

func TestWithin(t *testing.T) {
	asked, _ := Combine(Policy{}, Policy{BlockedCountries: []string{"US"}, BlockedRegions: []string{"eu-west-3"}})
	narrower, _ := Combine(Policy{BlockedCountries: []string{"CN"}}, Policy{BlockedCountries: []string{"US"}, BlockedRegions: []string{"eu-west-3"}})
	if err := narrower.Within(asked); err != nil {
		t.Fatalf("a floor that narrows: %v", err)
	}
	wider, _ := Combine(Policy{}, Policy{BlockedRegions: []string{"eu-west-3"}})
	if err := wider.Within(asked); err == nil || !strings.Contains(err.Error(), "US") {
		t.Fatalf("rules that allow the US: %v", err)
	}
	regionLost, _ := Combine(Policy{}, Policy{BlockedCountries: []string{"US"}})
	if err := regionLost.Within(asked); err == nil || !strings.Contains(err.Error(), "eu-west-3") {
		t.Fatalf("rules that allow eu-west-3: %v", err)
	}
}
