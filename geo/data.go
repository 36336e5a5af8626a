package geo

//go:generate go run ./internal/gencountries -o countries.go

import "sort"

// The tables below are built once at start-up and never written again.
var (
	countryIndex = indexCountries(countries)
	regionIndex  = indexRegions(regions)
	groupNames   = sortedKeys(groups)
)

func indexCountries(cs []Country) map[string]Country {
	m := make(map[string]Country, len(cs))
	for _, c := range cs {
		m[c.Code] = c
	}
	return m
}

func indexRegions(rs []Region) map[string]Region {
	m := make(map[string]Region, len(rs))
	for _, r := range rs {
		m[r.ID] = r
	}
	return m
}

func sortedKeys(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
