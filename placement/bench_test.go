package placement

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/geo"
	"github.com/oakmeet/oakmeet/policy"
)

// benchNodes spreads n healthy, partly loaded nodes over nLocs distinct
// locations drawn from the catalogue, and makes policies that each block a
// few countries.
func benchNodes(r *rand.Rand, n, nLocs int) ([]Node, []policy.Effective) {
	type site struct {
		country, region string
		lat, lon        float64
	}
	sites := make([]site, nLocs)
	for i := range sites {
		country, region, lat, lon := randomSite(r)
		if country == "" || country == "XX" {
			c := geo.Countries()[0]
			country, lat, lon = c.Code, c.Lat, c.Lon
		}
		sites[i] = site{country, region, lat + r.Float64(), lon + r.Float64()}
	}
	nodes := make([]Node, n)
	for i := range nodes {
		st := sites[r.IntN(len(sites))]
		nodes[i] = Node{
			ID: fmt.Sprintf("node-%05d", i), Country: st.country, Region: st.region, Lat: st.lat, Lon: st.lon,
			Healthy: r.IntN(50) != 0, Draining: r.IntN(100) == 0,
			MaxParticipants: 500, Participants: r.IntN(520),
		}
	}
	countries := geo.Countries()
	policies := make([]policy.Effective, 64)
	for i := range policies {
		var p policy.Policy
		for range 1 + r.IntN(5) {
			p.BlockedCountries = append(p.BlockedCountries, countries[r.IntN(len(countries))].Code)
		}
		e, err := policy.Combine(policy.Policy{BlockedCountries: []string{"RU"}}, p)
		if err != nil {
			panic(err)
		}
		policies[i] = e
	}
	return nodes, policies
}

// BenchmarkPlace10k times single decisions over 10,000 nodes at 300
// locations and reports the median and 99th percentile.
func BenchmarkPlace10k(b *testing.B) {
	r := rand.New(rand.NewPCG(42, 42))
	nodes, policies := benchNodes(r, 10000, 300)
	s := NewSnapshot(nodes)
	reqs := make([]Request, 1024)
	for i := range reqs {
		req := Request{Policy: policies[r.IntN(len(policies))]}
		if r.IntN(10) != 0 {
			req.From = geo.Location{Lat: r.Float64()*140 - 60, Lon: r.Float64()*360 - 180, Known: true}
		}
		for range r.IntN(4) {
			req.MeetingNodes = append(req.MeetingNodes, nodes[r.IntN(len(nodes))].ID)
		}
		if r.IntN(4) == 0 {
			req.Exclude = []string{nodes[r.IntN(len(nodes))].ID}
		}
		reqs[i] = req
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	durations := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		_, _ = s.Place(reqs[i%len(reqs)], rnd)
		durations = append(durations, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(durations)
	if len(durations) > 0 {
		b.ReportMetric(float64(durations[len(durations)/2].Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(durations[len(durations)*99/100].Nanoseconds()), "p99-ns")
	}
}

func BenchmarkNewSnapshot10k(b *testing.B) {
	nodes, _ := benchNodes(rand.New(rand.NewPCG(42, 42)), 10000, 300)
	b.ReportAllocs()
	for b.Loop() {
		NewSnapshot(nodes)
	}
}
