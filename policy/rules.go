package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/oakmeet/oakmeet/geo"
)

// Rules is an effective policy reduced to what it allows: the countries a
// node may be in and the regions it may not be in, both sorted. It is what
// the policy hash is computed over, so anyone holding it can recompute the
// hash without the country catalogue; the host signs the hash, and a
// member's client checks its node against these lists alone.
type Rules struct {
	AllowedCountries []string `json:"allowed_countries"`
	BlockedRegions   []string `json:"blocked_regions"`
}

// Rules returns what e allows.
func (e Effective) Rules() Rules {
	r := e.rules()
	return Rules{AllowedCountries: r.allowed.codes(), BlockedRegions: append([]string{}, r.blockedRegions...)}
}

// Hash is the policy hash of the rules (Effective.Hash of the policy they
// came from):
//
//	hex(SHA-256("oakmeet routing policy v1\nallowed_countries=" ‖ A ‖
//	            "\nblocked_regions=" ‖ B ‖ "\n"))
//
// with A and B the lists joined by ",".
func (r Rules) Hash() string {
	return hashOf(r.AllowedCountries, r.BlockedRegions)
}

// Effective compiles the rules, refusing lists that are not sorted,
// duplicate-free and in canonical form (upper-case catalogue countries,
// lower-case catalogue regions): a statement of them is checked against its
// hash, and only the canonical form has one spelling.
func (r Rules) Effective() (Effective, error) {
	if err := canonical("allowed_countries", r.AllowedCountries, normalizeCountries); err != nil {
		return Effective{}, err
	}
	if err := canonical("blocked_regions", r.BlockedRegions, normalizeRegions); err != nil {
		return Effective{}, err
	}
	out := &rules{blockedRegions: slices.Clone(r.BlockedRegions), allowList: slices.Clone(r.AllowedCountries)}
	for _, c := range r.AllowedCountries {
		if !catalogue.has(c) {
			return Effective{}, fmt.Errorf("allowed_countries: %q is not a country", c)
		}
		out.allowed.add(c)
	}
	out.hash = out.computeHash()
	return Effective{r: out}, nil
}

func canonical(field string, list []string, norm func([]string) ([]string, error)) error {
	for _, s := range list {
		if s != strings.TrimSpace(s) || s == "" {
			return fmt.Errorf("%s: %q is not in canonical form", field, s)
		}
	}
	n, err := norm(list)
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if !slices.Equal(n, list) && !(len(n) == 0 && len(list) == 0) {
		return fmt.Errorf("%s: not sorted, duplicate-free and canonical", field)
	}
	return nil
}

// Within reports, as an error naming the first exception, whether e allows
// nothing that o does not: a host's client checks the rules a server asks
// it to sign against the policy the host asked for (the deployment floor
// may only narrow it).
func (e Effective) Within(o Effective) error {
	for _, c := range geo.Countries() {
		if e.Allows(c.Code, "") && !o.Allows(c.Code, "") {
			return fmt.Errorf("policy: the rules allow %s, which the policy asked for does not", c.Code)
		}
	}
	for _, r := range geo.Regions() {
		if e.Allows(r.Country, r.ID) && !o.Allows(r.Country, r.ID) {
			return fmt.Errorf("policy: the rules allow region %s (%s), which the policy asked for does not", r.ID, r.Country)
		}
	}
	return nil
}
