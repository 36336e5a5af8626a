// Package policy is a meeting's routing policy: the countries and regions its
// traffic must never touch, and optionally the only countries it may touch.
// The deployment's own policy is a floor every meeting inherits; Combine
// merges the two so that a meeting can tighten the floor but never loosen it,
// and the result answers Allows for any node, failing closed on anything it
// does not recognise. Pure logic over the geo catalogue; no I/O.
package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/oakmeet/oakmeet/geo"
)

// Policy is the routing policy as a host or operator writes it. Country lists
// may name groups such as "EU" or "EEA". An empty AllowedCountries means there
// is no allow-list, not that nothing is allowed.
type Policy struct {
	BlockedCountries []string `json:"blocked_countries"`
	BlockedRegions   []string `json:"blocked_regions"`
	AllowedCountries []string `json:"allowed_countries"` // empty = no allow-list
}

// Normalize returns the policy in canonical form: country codes trimmed and
// upper-cased with groups expanded to their members, region ids lower-cased,
// every list deduplicated, sorted and non-nil (so JSON shows [] rather than
// null). The first entry not in the catalogue, in list order, is reported as
// a wrapped *geo.UnknownCodeError.
func (p Policy) Normalize() (Policy, error) {
	blocked, err := normalizeCountries(p.BlockedCountries)
	if err != nil {
		return Policy{}, fmt.Errorf("blocked_countries: %w", err)
	}
	regions, err := normalizeRegions(p.BlockedRegions)
	if err != nil {
		return Policy{}, fmt.Errorf("blocked_regions: %w", err)
	}
	allowed, err := normalizeCountries(p.AllowedCountries)
	if err != nil {
		return Policy{}, fmt.Errorf("allowed_countries: %w", err)
	}
	return Policy{BlockedCountries: blocked, BlockedRegions: regions, AllowedCountries: allowed}, nil
}

// normalizeCountries accepts a country code or a group name per entry; codes
// are tried first so that a group can never shadow a real country.
func normalizeCountries(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, raw := range in {
		if c, ok := geo.LookupCountry(raw); ok {
			out = append(out, c.Code)
			continue
		}
		members, ok := geo.Group(raw)
		if !ok {
			return nil, &geo.UnknownCodeError{Kind: "country", Code: raw}
		}
		for _, m := range members {
			c, ok := geo.LookupCountry(m)
			if !ok {
				// A group naming a country the catalogue lacks is a
				// catalogue bug; refusing is safer than silently
				// dropping a country the host meant to name.
				return nil, fmt.Errorf("group %s: %w", geo.NormalizeCode(raw),
					&geo.UnknownCodeError{Kind: "country", Code: m})
			}
			out = append(out, c.Code)
		}
	}
	return sortedUnique(out), nil
}

func normalizeRegions(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, raw := range in {
		r, err := geo.ParseRegion(raw)
		if err != nil {
			return nil, err
		}
		out = append(out, strings.ToLower(r.ID))
	}
	return sortedUnique(out), nil
}

func sortedUnique(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}
