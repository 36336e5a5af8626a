package placement

import (
	"cmp"
	"math"
	"slices"
	"sync"
)

// noCoordDot stands in for the dot product of a node without usable
// coordinates: farther than the antipode, so it is chosen only when nothing
// with coordinates is left.
const noCoordDot = -2

// Snapshot is the node set placement works from. It is built once per change
// of the node set and is then read-only, so any number of goroutines may call
// Place concurrently. NewSnapshot does the expensive work up front: nodes
// sharing a location are grouped, so Place asks the policy once per location
// rather than once per node; each location's unit vector is precomputed, so
// distance comparisons are three multiplications; and each location's nodes
// are ordered candidates first, so counting candidates is a subtraction.
type Snapshot struct {
	all     []Node // input order, one per id
	nodes   []Node // grouped by location, see location
	nodeLoc []int32
	byID    map[string]int32 // index into nodes
	locs    []location
	nKeys   int // distinct (country, region) pairs among locations
	opts    options

	// scratch holds per-call working memory so that Place allocates
	// nothing; it is a cache, not state, and never outlives a call.
	scratch sync.Pool
}

// location is the nodes sharing one (country, region, point). Its nodes are
// nodes[start:end]: first the candidates (healthy, not draining, with
// headroom) by increasing load, then other healthy nodes, then the rest.
type location struct {
	country, region string
	key             int32 // which (country, region) pair, for asking the policy once per pair
	x, y, z         float64
	hasCoord        bool
	start, end      int32
	nCand, nHealthy int32
}

type scratch struct {
	locs    []locState
	verdict []verdict // per (country, region) pair
	excl    []int32   // node indices excluded by the request
	meet    []int32   // candidate node indices the meeting already uses
}

// verdict caches the policy's answer for one (country, region) pair.
type verdict uint8

const (
	unasked verdict = iota
	allowed
	refused
)

// locState is a location as one request sees it.
type locState struct {
	allowed bool
	hasExcl bool  // an excluded node sits among its candidates
	cand    int32 // candidates not excluded
	healthy int32 // healthy nodes not excluded
}

// NewSnapshot builds a snapshot of nodes. When ids repeat, the last node with
// the id wins, as the most recent report. nodes is not retained.
func NewSnapshot(nodes []Node, opts ...Option) *Snapshot {
	s := &Snapshot{opts: defaultOptions()}
	for _, o := range opts {
		o(&s.opts)
	}

	last := make(map[string]int, len(nodes))
	for i, n := range nodes {
		last[n.ID] = i
	}
	s.all = make([]Node, 0, len(last))
	for i, n := range nodes {
		if last[n.ID] == i {
			s.all = append(s.all, n)
		}
	}

	type key struct {
		country, region string
		lat, lon        float64
		hasCoord        bool
	}
	keyOf := func(n Node) key {
		if !validCoord(n.Lat, n.Lon) {
			return key{country: n.Country, region: n.Region}
		}
		return key{n.Country, n.Region, n.Lat, n.Lon, true}
	}
	// Locations are numbered in order of first appearance so that a given
	// node list and random seed always give the same decisions.
	locOf := make(map[key]int32)
	pairs := make(map[[2]string]int32)
	var members [][]Node
	for _, n := range s.all {
		k := keyOf(n)
		li, ok := locOf[k]
		if !ok {
			li = int32(len(s.locs))
			locOf[k] = li
			pair := [2]string{k.country, k.region}
			pk, ok := pairs[pair]
			if !ok {
				pk = int32(len(pairs))
				pairs[pair] = pk
			}
			l := location{country: k.country, region: k.region, key: pk, hasCoord: k.hasCoord}
			if k.hasCoord {
				l.x, l.y, l.z = unitVector(k.lat, k.lon)
			}
			s.locs = append(s.locs, l)
			members = append(members, nil)
		}
		members[li] = append(members[li], n)
	}

	s.nodes = make([]Node, 0, len(s.all))
	s.nodeLoc = make([]int32, 0, len(s.all))
	s.byID = make(map[string]int32, len(s.all))
	for li, ns := range members {
		slices.SortStableFunc(ns, compareForLocation)
		l := &s.locs[li]
		l.start = int32(len(s.nodes))
		for _, n := range ns {
			if n.Healthy {
				l.nHealthy++
				if isCandidate(n) {
					l.nCand++
				}
			}
			s.byID[n.ID] = int32(len(s.nodes))
			s.nodes = append(s.nodes, n)
			s.nodeLoc = append(s.nodeLoc, int32(li))
		}
		l.end = int32(len(s.nodes))
	}

	s.nKeys = len(pairs)
	nLocs, nKeys := len(s.locs), s.nKeys
	s.scratch.New = func() any {
		return &scratch{locs: make([]locState, nLocs), verdict: make([]verdict, nKeys), excl: make([]int32, 0, 4), meet: make([]int32, 0, 8)}
	}
	return s
}

// Nodes returns the snapshot's nodes in the order given, one per id. The
// slice is a copy.
func (s *Snapshot) Nodes() []Node {
	return slices.Clone(s.all)
}

// Node returns the node with the given id.
func (s *Snapshot) Node(id string) (Node, bool) {
	i, ok := s.byID[id]
	if !ok {
		return Node{}, false
	}
	return s.nodes[i], true
}

func isCandidate(n Node) bool {
	return n.Healthy && !n.Draining && hasHeadroom(n)
}

// rank puts candidates first, other healthy nodes next, the rest last.
func rank(n Node) int {
	switch {
	case isCandidate(n):
		return 0
	case n.Healthy:
		return 1
	}
	return 2
}

func compareForLocation(a, b Node) int {
	if c := cmp.Compare(rank(a), rank(b)); c != 0 {
		return c
	}
	switch {
	case lessLoaded(a, b):
		return -1
	case lessLoaded(b, a):
		return 1
	}
	return cmp.Compare(a.ID, b.ID)
}

func validCoord(lat, lon float64) bool {
	return !math.IsNaN(lat) && !math.IsNaN(lon) && !math.IsInf(lat, 0) && !math.IsInf(lon, 0)
}

func unitVector(lat, lon float64) (x, y, z float64) {
	const rad = math.Pi / 180
	cl := math.Cos(lat * rad)
	return cl * math.Cos(lon*rad), cl * math.Sin(lon*rad), math.Sin(lat * rad)
}
