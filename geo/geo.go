// Package geo is the catalogue of places oakmeet reasons about: ISO 3166-1
// alpha-2 countries, the cloud regions nodes run in, and named groups of
// countries (EU, EEA) that a policy may use. It holds immutable data and pure
// lookups only; finding where a client is lives in package locate.
package geo

import (
	"math"
	"strconv"
	"strings"
)

// Country is an ISO 3166-1 alpha-2 country with a representative point used
// for distances when nothing finer is known.
type Country struct {
	Code string  `json:"code"`
	Name string  `json:"name"`
	Lat  float64 `json:"lat"`
	Lon  float64 `json:"lon"`
}

// Region is a data-center region: a cloud region or metro a node can run in.
type Region struct {
	ID      string  `json:"id"`
	Name    string  `json:"name"`
	Country string  `json:"country"`
	Lat     float64 `json:"lat"`
	Lon     float64 `json:"lon"`
}

// Location is where something is. Known is false for a client whose
// location could not be determined; that is a normal case, not an error.
type Location struct {
	Country string  `json:"country,omitempty"`
	Region  string  `json:"region,omitempty"`
	Lat     float64 `json:"lat"`
	Lon     float64 `json:"lon"`
	Known   bool    `json:"known"`
}

// NormalizeCode upper-cases and trims a country code or group name.
func NormalizeCode(code string) string {
	return strings.ToUpper(strings.TrimSpace(code))
}

// LookupCountry returns the country with the given alpha-2 code
// (case-insensitive).
func LookupCountry(code string) (Country, bool) {
	c, ok := countryIndex[NormalizeCode(code)]
	return c, ok
}

// Countries returns every country, sorted by code. The slice is a copy.
func Countries() []Country {
	out := make([]Country, len(countries))
	copy(out, countries)
	return out
}

// LookupRegion returns the region with the given id (case-insensitive).
func LookupRegion(id string) (Region, bool) {
	r, ok := regionIndex[strings.ToLower(strings.TrimSpace(id))]
	return r, ok
}

// Regions returns every region, sorted by id. The slice is a copy.
func Regions() []Region {
	out := make([]Region, len(regions))
	copy(out, regions)
	return out
}

// Group returns the member country codes of a named group such as "EU" or
// "EEA" (case-insensitive). The slice is a copy.
func Group(name string) ([]string, bool) {
	g, ok := groups[NormalizeCode(name)]
	if !ok {
		return nil, false
	}
	out := make([]string, len(g))
	copy(out, g)
	return out, true
}

// GroupNames returns the names of all groups, sorted.
func GroupNames() []string {
	return append([]string(nil), groupNames...)
}

// CountryLocation is the location of a country's representative point.
func CountryLocation(code string) (Location, bool) {
	c, ok := LookupCountry(code)
	if !ok {
		return Location{}, false
	}
	return Location{Country: c.Code, Lat: c.Lat, Lon: c.Lon, Known: true}, true
}

// RegionLocation is the location of a region.
func RegionLocation(id string) (Location, bool) {
	r, ok := LookupRegion(id)
	if !ok {
		return Location{}, false
	}
	return Location{Country: r.Country, Region: r.ID, Lat: r.Lat, Lon: r.Lon, Known: true}, true
}

// EarthRadiusKm is the mean Earth radius DistanceKm uses; code that compares
// distances as angles converts with it so that both agree.
const EarthRadiusKm = 6371.0

// DistanceKm is the great-circle distance between two points.
func DistanceKm(lat1, lon1, lat2, lon2 float64) float64 {
	const rad = math.Pi / 180
	dLat := (lat2 - lat1) * rad
	dLon := (lon2 - lon1) * rad
	a := math.Sin(dLat/2)*math.Sin(dLat/2) +
		math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * EarthRadiusKm * math.Asin(math.Min(1, math.Sqrt(a)))
}

// UnknownCodeError reports a country code, region id or group name that is
// not in the catalogue. Kind is "country", "region" or "group".
type UnknownCodeError struct {
	Kind string
	Code string
}

func (e *UnknownCodeError) Error() string {
	return "unknown " + e.Kind + " " + strconv.Quote(e.Code)
}

// ParseCountry validates a country code and returns its catalogue entry.
func ParseCountry(code string) (Country, error) {
	c, ok := LookupCountry(code)
	if !ok {
		return Country{}, &UnknownCodeError{Kind: "country", Code: code}
	}
	return c, nil
}

// ParseGroup validates a group name and returns its members, sorted. The
// slice is a copy.
func ParseGroup(name string) ([]string, error) {
	g, ok := Group(name)
	if !ok {
		return nil, &UnknownCodeError{Kind: "group", Code: name}
	}
	return g, nil
}

// ParseRegion validates a region id and returns its catalogue entry.
func ParseRegion(id string) (Region, error) {
	r, ok := LookupRegion(id)
	if !ok {
		return Region{}, &UnknownCodeError{Kind: "region", Code: id}
	}
	return r, nil
}
