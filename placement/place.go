package placement

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/oakmeet/oakmeet/geo"
)

// Place chooses a node for req. The filters apply in this order and are never
// relaxed: the policy (a node it forbids is not a candidate, whatever else),
// then health and not draining, then headroom; an excluded node is treated as
// absent. Among the remaining candidates a node the meeting already uses is
// preferred when it is within NearEnoughKm of the nearest candidate's
// distance; otherwise the nearest wins. Candidates equally near (within
// TieKm, or all of them when the participant's location is unknown) are
// decided by power of two choices on load, drawing from rnd; a nil rnd makes
// the choice deterministic. No candidate gives a *Refusal.
func (s *Snapshot) Place(req Request, rnd *rand.Rand) (Decision, error) {
	if req.Policy == nil {
		return Decision{}, ErrNoPolicy
	}
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)

	s.applyPolicy(req.Policy, sc)
	s.applyExclude(req.Exclude, sc)

	from, known := participant(req.From)
	var anyHealthy, anyCand bool
	bestDot := math.Inf(-1)
	for i := range s.locs {
		st := &sc.locs[i]
		anyHealthy = anyHealthy || st.healthy > 0
		if st.cand == 0 {
			continue
		}
		anyCand = true
		if known {
			if d := s.locs[i].dot(from); d > bestDot {
				bestDot = d
			}
		}
	}
	if !anyHealthy {
		return Decision{}, &Refusal{
			Code:   CodeNoNodeInAllowedRegions,
			Reason: "no healthy media node is in a country or region this meeting's routing policy allows",
		}
	}
	if !anyCand {
		return Decision{}, &Refusal{
			Code:   CodeNoCapacity,
			Reason: s.capacityReason(sc),
		}
	}

	if i, ok := s.pickMeetingNode(req.MeetingNodes, from, known, bestDot, sc, rnd); ok {
		return s.decide(i, from, known, true), nil
	}

	threshold := math.Inf(-1)
	if known {
		threshold = dotWithin(bestDot, s.opts.tieKm)
	}
	total := 0
	for i := range s.locs {
		if sc.locs[i].cand > 0 && (!known || s.locs[i].dot(from) >= threshold) {
			total += int(sc.locs[i].cand)
		}
	}
	var chosen int32
	if total == 1 {
		chosen = s.nthTied(0, from, known, threshold, sc)
	} else {
		a, b := pickTwo(rnd, total)
		na, nb := s.nthTied(a, from, known, threshold, sc), s.nthTied(b, from, known, threshold, sc)
		chosen = na
		if lessLoaded(s.nodes[nb], s.nodes[na]) {
			chosen = nb
		}
	}
	return s.decide(chosen, from, known, slices.Contains(req.MeetingNodes, s.nodes[chosen].ID)), nil
}

// applyPolicy asks the policy once per (country, region) pair that has a
// healthy node.
func (s *Snapshot) applyPolicy(pol Allower, sc *scratch) {
	clear(sc.verdict)
	for i := range s.locs {
		l := &s.locs[i]
		if l.nHealthy == 0 {
			sc.locs[i] = locState{}
			continue
		}
		v := &sc.verdict[l.key]
		if *v == unasked {
			*v = refused
			if pol.Allows(l.country, l.region) {
				*v = allowed
			}
		}
		if *v == allowed {
			sc.locs[i] = locState{allowed: true, cand: l.nCand, healthy: l.nHealthy}
		} else {
			sc.locs[i] = locState{}
		}
	}
}

// applyExclude removes excluded nodes from their location's counts.
func (s *Snapshot) applyExclude(ids []string, sc *scratch) {
	sc.excl = sc.excl[:0]
	for _, id := range ids {
		i, ok := s.byID[id]
		if !ok || slices.Contains(sc.excl, i) {
			continue
		}
		li := s.nodeLoc[i]
		st, l := &sc.locs[li], &s.locs[li]
		if !st.allowed {
			continue
		}
		sc.excl = append(sc.excl, i)
		switch off := i - l.start; {
		case off < l.nCand:
			st.cand--
			st.healthy--
			st.hasExcl = true
		case off < l.nHealthy:
			st.healthy--
		}
	}
}

// pickMeetingNode returns a candidate the meeting already uses if one is near
// enough; among several equally near, load decides.
func (s *Snapshot) pickMeetingNode(ids []string, from vec, known bool, bestDot float64, sc *scratch, rnd *rand.Rand) (int32, bool) {
	sc.meet = sc.meet[:0]
	bestMeet := math.Inf(-1)
	for _, id := range ids {
		i, ok := s.byID[id]
		if !ok || !s.isAvailable(i, sc) || slices.Contains(sc.meet, i) {
			continue
		}
		sc.meet = append(sc.meet, i)
		if d := s.locs[s.nodeLoc[i]].dot(from); known && d > bestMeet {
			bestMeet = d
		}
	}
	if len(sc.meet) == 0 {
		return 0, false
	}
	if known {
		if bestMeet < dotWithin(bestDot, s.opts.nearEnoughKm) {
			return 0, false
		}
		threshold := dotWithin(bestMeet, s.opts.tieKm)
		sc.meet = slices.DeleteFunc(sc.meet, func(i int32) bool {
			return s.locs[s.nodeLoc[i]].dot(from) < threshold
		})
	}
	if len(sc.meet) == 1 {
		return sc.meet[0], true
	}
	a, b := pickTwo(rnd, len(sc.meet))
	if lessLoaded(s.nodes[sc.meet[b]], s.nodes[sc.meet[a]]) {
		return sc.meet[b], true
	}
	return sc.meet[a], true
}

// isAvailable reports whether node i passes every filter for this request.
func (s *Snapshot) isAvailable(i int32, sc *scratch) bool {
	li := s.nodeLoc[i]
	return sc.locs[li].allowed && i-s.locs[li].start < s.locs[li].nCand && !slices.Contains(sc.excl, i)
}

// nthTied returns the k-th candidate, counting location by location, among
// locations whose dot product with from reaches threshold.
func (s *Snapshot) nthTied(k int, from vec, known bool, threshold float64, sc *scratch) int32 {
	for li := range s.locs {
		st := &sc.locs[li]
		if st.cand == 0 || (known && s.locs[li].dot(from) < threshold) {
			continue
		}
		if k >= int(st.cand) {
			k -= int(st.cand)
			continue
		}
		l := &s.locs[li]
		if !st.hasExcl {
			return l.start + int32(k)
		}
		for i := l.start; i < l.start+l.nCand; i++ {
			if slices.Contains(sc.excl, i) {
				continue
			}
			if k == 0 {
				return i
			}
			k--
		}
	}
	panic("placement: candidate index out of range") // counts and walk disagree: a bug here, not bad input
}

func (s *Snapshot) decide(i int32, from vec, known bool, reused bool) Decision {
	n := s.nodes[i]
	d := Decision{Node: n, DistanceKm: -1, Reused: reused}
	if known && s.locs[s.nodeLoc[i]].hasCoord {
		d.DistanceKm = geo.DistanceKm(from.lat, from.lon, n.Lat, n.Lon)
	}
	return d
}

func (s *Snapshot) capacityReason(sc *scratch) string {
	healthy := 0
	for i := range sc.locs {
		healthy += int(sc.locs[i].healthy)
	}
	return "all " + strconv.Itoa(healthy) + " healthy media nodes this meeting's routing policy allows are full or draining"
}

// vec is a point as a unit vector plus the coordinates it came from.
type vec struct {
	x, y, z  float64
	lat, lon float64
}

func participant(loc geo.Location) (vec, bool) {
	if !loc.Known || !validCoord(loc.Lat, loc.Lon) {
		return vec{}, false
	}
	x, y, z := unitVector(loc.Lat, loc.Lon)
	return vec{x, y, z, loc.Lat, loc.Lon}, true
}

func (l *location) dot(v vec) float64 {
	if !l.hasCoord {
		return noCoordDot
	}
	return l.x*v.x + l.y*v.y + l.z*v.z
}

// dotWithin is the smallest dot product of a point at most km farther away
// than a point with dot product best: comparing dot products this way keeps
// trigonometry out of the per-location loop.
func dotWithin(best, km float64) float64 {
	angle := math.Acos(max(-1, min(1, best))) + km/geo.EarthRadiusKm
	if angle >= math.Pi {
		return math.Inf(-1)
	}
	// The margin absorbs rounding so that locations at the same point as the
	// best one always tie with it.
	return math.Cos(angle) - 1e-12
}
