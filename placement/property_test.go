package placement

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/oakmeet/oakmeet/geo"
	"github.com/oakmeet/oakmeet/policy"
)

// randomPolicy blocks a few catalogue countries and regions and sometimes
// has an allow-list.
func randomPolicy(r *rand.Rand) policy.Policy {
	countries, regions := geo.Countries(), geo.Regions()
	var p policy.Policy
	for range r.IntN(4) {
		p.BlockedCountries = append(p.BlockedCountries, countries[r.IntN(len(countries))].Code)
	}
	for range r.IntN(2) {
		p.BlockedRegions = append(p.BlockedRegions, regions[r.IntN(len(regions))].ID)
	}
	if r.IntN(4) == 0 {
		for range 1 + r.IntN(6) {
			p.AllowedCountries = append(p.AllowedCountries, countries[r.IntN(len(countries))].Code)
		}
	}
	return p
}

func randomEffective(r *rand.Rand) policy.Effective {
	e, err := policy.Combine(randomPolicy(r), randomPolicy(r))
	if err != nil {
		panic(fmt.Sprintf("random policy does not combine: %v", err))
	}
	return e
}

// randomSite is a node location: mostly a catalogue region or country point,
// sometimes a country the catalogue lacks.
func randomSite(r *rand.Rand) (country, region string, lat, lon float64) {
	regions, countries := geo.Regions(), geo.Countries()
	switch r.IntN(10) {
	case 0:
		return []string{"", "XX", "de "}[r.IntN(3)], "", r.Float64()*180 - 90, r.Float64()*360 - 180
	case 1, 2, 3, 4:
		reg := regions[r.IntN(len(regions))]
		return reg.Country, reg.ID, reg.Lat, reg.Lon
	default:
		c := countries[r.IntN(len(countries))]
		return c.Code, "", c.Lat + r.NormFloat64()*2, c.Lon + r.NormFloat64()*2
	}
}

func randomNodes(r *rand.Rand, n int) []Node {
	nodes := make([]Node, n)
	for i := range nodes {
		country, region, lat, lon := randomSite(r)
		max := r.IntN(5) * 10
		nodes[i] = Node{
			ID: fmt.Sprintf("n%d", i), Country: country, Region: region, Lat: lat, Lon: lon,
			Healthy:         r.IntN(5) != 0,
			Draining:        r.IntN(8) == 0,
			MaxParticipants: max,
			Participants:    r.IntN(max + 5),
			MaxBitrateBps:   int64(r.IntN(3)) * 1e8,
			BitrateBps:      r.Int64N(2e8),
		}
	}
	return nodes
}

func randomIDs(r *rand.Rand, nodes []Node, max int) []string {
	var ids []string
	for range r.IntN(max + 1) {
		if r.IntN(6) == 0 {
			ids = append(ids, "absent")
			continue
		}
		ids = append(ids, nodes[r.IntN(len(nodes))].ID)
	}
	return ids
}

func TestPropertyPlace(t *testing.T) {
	const nearEnough, tie = 1500.0, 50.0
	r := rand.New(rand.NewPCG(11, 13))
	placed, refused := 0, 0
	for c := range 4000 {
		nodes := randomNodes(r, 1+r.IntN(30))
		s := NewSnapshot(nodes)
		pol := randomEffective(r)
		req := Request{Policy: pol, MeetingNodes: randomIDs(r, nodes, 3), Exclude: randomIDs(r, nodes, 2)}
		if r.IntN(4) != 0 {
			req.From = geo.Location{Lat: r.Float64()*180 - 90, Lon: r.Float64()*360 - 180, Known: true}
		}
		d, err := s.Place(req, rand.New(rand.NewPCG(uint64(c), 1)))

		// The specification, evaluated node by node.
		var avail, cands []Node
		for _, n := range nodes {
			if pol.Allows(n.Country, n.Region) && n.Healthy && !slices.Contains(req.Exclude, n.ID) {
				avail = append(avail, n)
				if !n.Draining && hasHeadroom(n) {
					cands = append(cands, n)
				}
			}
		}
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("case %d: %s\nnodes %+v\nrequest %+v\npolicy %+v", c, fmt.Sprintf(format, args...), nodes, req, pol.Policy())
		}
		var ref *Refusal
		switch {
		case len(avail) == 0:
			if !errors.As(err, &ref) || ref.Code != CodeNoNodeInAllowedRegions {
				fail("got %+v, %v; want %s", d, err, CodeNoNodeInAllowedRegions)
			}
			refused++
			continue
		case len(cands) == 0:
			if !errors.As(err, &ref) || ref.Code != CodeNoCapacity {
				fail("got %+v, %v; want %s", d, err, CodeNoCapacity)
			}
			refused++
			continue
		case err != nil:
			fail("refused (%v) although %d candidates exist", err, len(cands))
		}
		placed++

		n := d.Node
		if !pol.Allows(n.Country, n.Region) || !n.Healthy || n.Draining || !hasHeadroom(n) || slices.Contains(req.Exclude, n.ID) {
			fail("placed on %+v, which is not a candidate", n)
		}
		if d.Reused != slices.Contains(req.MeetingNodes, n.ID) {
			fail("Reused = %v for %s", d.Reused, n.ID)
		}
		if !req.From.Known {
			if d.DistanceKm >= 0 {
				fail("distance %v for an unknown location", d.DistanceKm)
			}
			if !d.Reused && slices.ContainsFunc(cands, func(c Node) bool { return slices.Contains(req.MeetingNodes, c.ID) }) {
				fail("a meeting node was available but not reused")
			}
			continue
		}
		dist := func(n Node) float64 { return geo.DistanceKm(req.From.Lat, req.From.Lon, n.Lat, n.Lon) }
		nearest, nearestMeet := math.Inf(1), math.Inf(1)
		for _, c := range cands {
			nearest = min(nearest, dist(c))
			if slices.Contains(req.MeetingNodes, c.ID) {
				nearestMeet = min(nearestMeet, dist(c))
			}
		}
		if math.Abs(d.DistanceKm-dist(n)) > 1e-6 {
			fail("DistanceKm %v; want %v", d.DistanceKm, dist(n))
		}
		// A kilometre of slack absorbs rounding at the thresholds.
		if d.Reused {
			if nearestMeet > nearest+nearEnough+1 || dist(n) > nearestMeet+tie+1 {
				fail("reused %s at %.0f km; nearest %.0f km, nearest meeting node %.0f km", n.ID, dist(n), nearest, nearestMeet)
			}
		} else {
			if nearestMeet < nearest+nearEnough-1 {
				fail("meeting node at %.0f km not reused; nearest %.0f km", nearestMeet, nearest)
			}
			if dist(n) > nearest+tie+1 {
				fail("placed at %.0f km; nearest candidate %.0f km", dist(n), nearest)
			}
		}
	}
	if placed < 1000 || refused < 200 {
		t.Fatalf("placed %d, refused %d: the generator no longer covers both outcomes", placed, refused)
	}
}

// The same snapshot, request and seed always give the same decision.
func TestPlaceDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	for range 200 {
		nodes := randomNodes(r, 50)
		pol := randomEffective(r)
		req := Request{Policy: pol, From: berlin, MeetingNodes: randomIDs(r, nodes, 3)}
		seed := r.Uint64()
		a, errA := NewSnapshot(nodes).Place(req, rand.New(rand.NewPCG(seed, 0)))
		b, errB := NewSnapshot(nodes).Place(req, rand.New(rand.NewPCG(seed, 0)))
		if a != b || fmt.Sprint(errA) != fmt.Sprint(errB) {
			t.Fatalf("same input, different answers: %+v %v / %+v %v", a, errA, b, errB)
		}
	}
}
