package placement

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/oakmeet/oakmeet/geo"
	"github.com/oakmeet/oakmeet/policy"
)

// Points used throughout; coordinates are the cities'.
var (
	berlin    = geo.Location{Country: "DE", Lat: 52.52, Lon: 13.40, Known: true}
	frankfurt = [2]float64{50.11, 8.68}
	munich    = [2]float64{48.14, 11.58}
	moscow    = [2]float64{55.75, 37.62}
	virginia  = [2]float64{38.95, -77.45}
	tokyo     = [2]float64{35.68, 139.69}
	unknown   = geo.Location{}
)

func node(id, country, region string, at [2]float64) Node {
	return Node{ID: id, Country: country, Region: region, Lat: at[0], Lon: at[1], Healthy: true, MaxParticipants: 100}
}

func with(n Node, f func(*Node)) Node { f(&n); return n }

func mustCombine(t testing.TB, floor, meeting policy.Policy) policy.Effective {
	t.Helper()
	e, err := policy.Combine(floor, meeting)
	if err != nil {
		t.Fatalf("Combine: %v", err)
	}
	return e
}

func TestPlaceRules(t *testing.T) {
	open := mustCombine(t, policy.Policy{}, policy.Policy{})
	noRU := mustCombine(t, policy.Policy{BlockedCountries: []string{"RU"}}, policy.Policy{})
	noFrankfurt := mustCombine(t, policy.Policy{BlockedRegions: []string{"eu-central-1"}}, policy.Policy{})
	onlyUS := mustCombine(t, policy.Policy{}, policy.Policy{AllowedCountries: []string{"US"}})

	fra := node("fra", "DE", "eu-central-1", frankfurt)
	muc := node("muc", "DE", "", munich)
	mow := node("mow", "RU", "", moscow)
	iad := node("iad", "US", "us-east-1", virginia)
	nrt := node("nrt", "JP", "ap-northeast-1", tokyo)

	tests := []struct {
		name     string
		nodes    []Node
		opts     []Option
		req      Request
		wantID   string
		wantReus bool
		wantCode string
	}{
		{
			name:   "nearest allowed node",
			nodes:  []Node{iad, fra, nrt},
			req:    Request{Policy: open, From: berlin},
			wantID: "fra",
		},
		{
			name:   "policy first: a blocked node is skipped however near and empty",
			nodes:  []Node{with(mow, func(n *Node) { n.Participants = 0 }), iad},
			req:    Request{Policy: noRU, From: geo.Location{Lat: moscow[0], Lon: moscow[1], Known: true}},
			wantID: "iad",
		},
		{
			name:     "only blocked nodes: refused, never placed there",
			nodes:    []Node{mow},
			req:      Request{Policy: noRU, From: berlin},
			wantCode: CodeNoNodeInAllowedRegions,
		},
		{
			name:   "blocked region, other region of the same country allowed",
			nodes:  []Node{fra, muc, iad},
			req:    Request{Policy: noFrankfurt, From: geo.Location{Lat: frankfurt[0], Lon: frankfurt[1], Known: true}},
			wantID: "muc",
		},
		{
			name:     "allowed but unhealthy: no node",
			nodes:    []Node{with(iad, func(n *Node) { n.Healthy = false }), fra},
			req:      Request{Policy: onlyUS, From: berlin},
			wantCode: CodeNoNodeInAllowedRegions,
		},
		{
			name:     "allowed but full: no capacity, even with blocked room elsewhere",
			nodes:    []Node{with(iad, func(n *Node) { n.Participants = 100 }), fra},
			req:      Request{Policy: onlyUS, From: berlin},
			wantCode: CodeNoCapacity,
		},
		{
			name:     "allowed but draining: no capacity",
			nodes:    []Node{with(iad, func(n *Node) { n.Draining = true }), fra},
			req:      Request{Policy: onlyUS, From: berlin},
			wantCode: CodeNoCapacity,
		},
		{
			name:     "allowed but bitrate exhausted: no capacity",
			nodes:    []Node{with(iad, func(n *Node) { n.BitrateBps, n.MaxBitrateBps = 5e9, 5e9 })},
			req:      Request{Policy: onlyUS, From: berlin},
			wantCode: CodeNoCapacity,
		},
		{
			name:   "unlimited capacity is headroom",
			nodes:  []Node{with(iad, func(n *Node) { n.MaxParticipants, n.Participants, n.BitrateBps = 0, 1e6, 1e12 })},
			req:    Request{Policy: onlyUS, From: berlin},
			wantID: "iad",
		},
		{
			name:   "full nearest node is passed over for a farther one with room",
			nodes:  []Node{with(fra, func(n *Node) { n.Participants = 100 }), iad},
			req:    Request{Policy: open, From: berlin},
			wantID: "iad",
		},
		{
			name:     "draining nearest node is passed over",
			nodes:    []Node{with(fra, func(n *Node) { n.Draining = true }), nrt},
			req:      Request{Policy: open, From: berlin},
			wantID:   "nrt",
			wantReus: false,
		},
		{
			name:     "meeting node near enough is reused",
			nodes:    []Node{muc, with(mow, func(n *Node) { n.Participants = 99 })},
			req:      Request{Policy: open, From: berlin, MeetingNodes: []string{"mow"}},
			wantID:   "mow",
			wantReus: true,
		},
		{
			name:   "meeting node too far is not reused",
			nodes:  []Node{fra, nrt},
			req:    Request{Policy: open, From: berlin, MeetingNodes: []string{"nrt"}},
			wantID: "fra",
		},
		{
			name:   "near-enough distance is an option",
			nodes:  []Node{muc, mow},
			opts:   []Option{WithNearEnoughKm(100)},
			req:    Request{Policy: open, From: berlin, MeetingNodes: []string{"mow"}},
			wantID: "muc",
		},
		{
			name:   "full meeting node is not reused",
			nodes:  []Node{muc, with(fra, func(n *Node) { n.Participants = 100 })},
			req:    Request{Policy: open, From: berlin, MeetingNodes: []string{"fra"}},
			wantID: "muc",
		},
		{
			name:   "blocked meeting node is not reused",
			nodes:  []Node{iad, mow},
			req:    Request{Policy: noRU, From: berlin, MeetingNodes: []string{"mow"}},
			wantID: "iad",
		},
		{
			name:   "excluded meeting node is not reused",
			nodes:  []Node{iad, fra},
			req:    Request{Policy: open, From: berlin, MeetingNodes: []string{"fra"}, Exclude: []string{"fra"}},
			wantID: "iad",
		},
		{
			name:     "unknown location: a meeting node is reused",
			nodes:    []Node{fra, nrt, iad},
			req:      Request{Policy: open, From: unknown, MeetingNodes: []string{"gone", "nrt"}},
			wantID:   "nrt",
			wantReus: true,
		},
		{
			name:   "unknown location: load decides",
			nodes:  []Node{with(fra, func(n *Node) { n.Participants = 90 }), with(iad, func(n *Node) { n.Participants = 10 })},
			req:    Request{Policy: open, From: unknown},
			wantID: "iad",
		},
		{
			name: "ties within 50 km go to the less loaded node",
			nodes: []Node{
				with(node("fra1", "DE", "eu-central-1", frankfurt), func(n *Node) { n.Participants = 80 }),
				with(node("fra2", "DE", "eu-central-1", [2]float64{50.3, 8.9}), func(n *Node) { n.Participants = 20 }),
			},
			req:    Request{Policy: open, From: berlin},
			wantID: "fra2",
		},
		{
			name: "tie distance is an option",
			nodes: []Node{
				with(node("fra1", "DE", "eu-central-1", frankfurt), func(n *Node) { n.Participants = 20 }),
				with(node("fra2", "DE", "eu-central-1", [2]float64{50.3, 8.9}), func(n *Node) { n.Participants = 80 }),
			},
			opts:   []Option{WithTieKm(10)},
			req:    Request{Policy: open, From: berlin},
			wantID: "fra2",
		},
		{
			name: "equally near meeting nodes: the less loaded is reused",
			nodes: []Node{
				muc,
				with(node("fra1", "DE", "eu-central-1", frankfurt), func(n *Node) { n.Participants = 80 }),
				with(node("fra2", "DE", "eu-central-1", frankfurt), func(n *Node) { n.Participants = 20 }),
			},
			req:      Request{Policy: open, From: berlin, MeetingNodes: []string{"fra1", "fra2"}},
			wantID:   "fra2",
			wantReus: true,
		},
		{
			name:   "equal load ratio: fewer participants",
			nodes:  []Node{with(fra, func(n *Node) { n.Participants, n.MaxParticipants = 20, 200 }), with(iad, func(n *Node) { n.Participants = 10 })},
			req:    Request{Policy: open, From: unknown},
			wantID: "iad",
		},
		{
			name:   "load ratio, not raw count",
			nodes:  []Node{with(fra, func(n *Node) { n.Participants, n.MaxParticipants = 50, 1000 }), with(node("fra-small", "DE", "eu-central-1", frankfurt), func(n *Node) { n.Participants, n.MaxParticipants = 10, 20 })},
			req:    Request{Policy: open, From: unknown},
			wantID: "fra",
		},
		{
			name:   "excluded nearest node",
			nodes:  []Node{fra, muc, iad},
			req:    Request{Policy: open, From: berlin, Exclude: []string{"muc", "fra"}},
			wantID: "iad",
		},
		{
			name: "excluded node sharing a location with others is never chosen",
			nodes: []Node{
				with(node("fra1", "DE", "eu-central-1", frankfurt), func(n *Node) { n.Participants = 10 }),
				with(node("fra2", "DE", "eu-central-1", frankfurt), func(n *Node) { n.Participants = 20 }),
				with(node("fra3", "DE", "eu-central-1", frankfurt), func(n *Node) { n.Participants = 30 }),
			},
			req:    Request{Policy: open, From: berlin, Exclude: []string{"fra1"}},
			wantID: "fra2",
		},
		{
			name:     "excluding the only allowed node leaves none",
			nodes:    []Node{iad, fra},
			req:      Request{Policy: onlyUS, From: berlin, Exclude: []string{"iad"}},
			wantCode: CodeNoNodeInAllowedRegions,
		},
		{
			name:     "node with an unknown or empty country is never chosen",
			nodes:    []Node{node("x", "", "", frankfurt), node("y", "XX", "", frankfurt), node("z", "Germany", "", frankfurt)},
			req:      Request{Policy: open, From: berlin},
			wantCode: CodeNoNodeInAllowedRegions,
		},
		{
			name:     "empty node set",
			req:      Request{Policy: open, From: berlin},
			wantCode: CodeNoNodeInAllowedRegions,
		},
		{
			name:     "zero policy allows nothing",
			nodes:    []Node{fra},
			req:      Request{Policy: policy.Effective{}, From: berlin},
			wantCode: CodeNoNodeInAllowedRegions,
		},
		{
			name:   "node without coordinates is chosen last",
			nodes:  []Node{node("nowhere", "DE", "", [2]float64{math.NaN(), 0}), nrt},
			req:    Request{Policy: open, From: berlin},
			wantID: "nrt",
		},
		{
			name:   "node without coordinates is still usable",
			nodes:  []Node{node("nowhere", "DE", "", [2]float64{math.Inf(1), 0})},
			req:    Request{Policy: open, From: berlin},
			wantID: "nowhere",
		},
		{
			name:   "repeated id: the last report wins",
			nodes:  []Node{fra, with(fra, func(n *Node) { n.Healthy = false }), iad},
			req:    Request{Policy: open, From: berlin},
			wantID: "iad",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSnapshot(tt.nodes, tt.opts...)
			for seed := range uint64(20) {
				d, err := s.Place(tt.req, rand.New(rand.NewPCG(seed, 0)))
				if tt.wantCode != "" {
					var r *Refusal
					if !errors.As(err, &r) || r.Code != tt.wantCode {
						t.Fatalf("Place = %+v, %v; want refusal %s", d, err, tt.wantCode)
					}
					if r.Reason == "" {
						t.Fatal("refusal without a reason")
					}
					return
				}
				if err != nil {
					t.Fatalf("Place: %v", err)
				}
				if d.Node.ID != tt.wantID || d.Reused != tt.wantReus {
					t.Fatalf("seed %d: placed on %s (reused %v); want %s (reused %v)", seed, d.Node.ID, d.Reused, tt.wantID, tt.wantReus)
				}
			}
		})
	}
}

func TestPlaceNoPolicy(t *testing.T) {
	s := NewSnapshot([]Node{node("fra", "DE", "", frankfurt)})
	if _, err := s.Place(Request{From: berlin}, nil); !errors.Is(err, ErrNoPolicy) {
		t.Fatalf("err = %v; want ErrNoPolicy", err)
	}
}

func TestPlaceDistance(t *testing.T) {
	open := mustCombine(t, policy.Policy{}, policy.Policy{})
	s := NewSnapshot([]Node{node("fra", "DE", "eu-central-1", frankfurt)})
	d, err := s.Place(Request{Policy: open, From: berlin}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := geo.DistanceKm(berlin.Lat, berlin.Lon, frankfurt[0], frankfurt[1]); math.Abs(d.DistanceKm-want) > 1e-9 {
		t.Fatalf("DistanceKm = %v; want %v", d.DistanceKm, want)
	}
	d, err = s.Place(Request{Policy: open, From: unknown}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.DistanceKm >= 0 {
		t.Fatalf("DistanceKm = %v for an unknown location; want negative", d.DistanceKm)
	}
}

// With three equally near nodes, power of two choices never picks the most
// loaded one and picks the least loaded about two times in three.
func TestPowerOfTwoChoices(t *testing.T) {
	open := mustCombine(t, policy.Policy{}, policy.Policy{})
	var nodes []Node
	for i, p := range []int{10, 50, 90} {
		nodes = append(nodes, with(node(string(rune('a'+i)), "DE", "eu-central-1", frankfurt), func(n *Node) { n.Participants = p }))
	}
	s := NewSnapshot(nodes)
	rnd := rand.New(rand.NewPCG(7, 7))
	count := map[string]int{}
	const n = 3000
	for range n {
		d, err := s.Place(Request{Policy: open, From: berlin}, rnd)
		if err != nil {
			t.Fatal(err)
		}
		count[d.Node.ID]++
	}
	if count["c"] != 0 {
		t.Fatalf("most loaded node chosen %d times", count["c"])
	}
	if got := float64(count["a"]) / n; got < 0.6 || got > 0.73 {
		t.Fatalf("least loaded node chosen %.2f of the time; want about 2/3", got)
	}
}

func TestSnapshotNodes(t *testing.T) {
	in := []Node{node("b", "DE", "", frankfurt), node("a", "US", "", virginia), node("b", "JP", "", tokyo)}
	s := NewSnapshot(in)
	got := s.Nodes()
	if len(got) != 2 || got[0].ID != "a" || got[1].ID != "b" || got[1].Country != "JP" {
		t.Fatalf("Nodes = %+v; want a then the last b", got)
	}
	got[0].Country = "RU"
	if n, ok := s.Node("a"); !ok || n.Country != "US" {
		t.Fatalf("Node(a) = %+v, %v after mutating Nodes()", n, ok)
	}
	in[0].Country = "CN"
	if s.Nodes()[1].Country != "JP" {
		t.Fatal("snapshot retained the input slice")
	}
}

func TestPlaceAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	nodes, policies := benchNodes(rand.New(rand.NewPCG(1, 1)), 2000, 100)
	s := NewSnapshot(nodes)
	rnd := rand.New(rand.NewPCG(2, 2))
	req := Request{
		Policy:       policies[0],
		From:         berlin,
		MeetingNodes: []string{nodes[5].ID, nodes[900].ID, "gone"},
		Exclude:      []string{nodes[7].ID},
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := s.Place(req, rnd); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Place allocates %.1f times per call", allocs)
	}
}

func TestPlaceConcurrent(t *testing.T) {
	nodes, policies := benchNodes(rand.New(rand.NewPCG(3, 3)), 500, 40)
	s := NewSnapshot(nodes)
	done := make(chan error)
	for g := range 4 {
		go func() {
			rnd := rand.New(rand.NewPCG(uint64(g), 9))
			var err error
			for i := range 500 {
				req := Request{Policy: policies[i%len(policies)], From: berlin, Exclude: []string{nodes[i%len(nodes)].ID}}
				if _, e := s.Place(req, rnd); e != nil && err == nil {
					var r *Refusal
					if !errors.As(e, &r) {
						err = e
					}
				}
			}
			done <- err
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
