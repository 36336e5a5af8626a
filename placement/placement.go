// Package placement chooses the media node a participant joins. It filters by
// the meeting's routing policy first, so a node the policy forbids is never a
// candidate whatever its load or distance; then by health and headroom; then
// prefers a node the meeting already uses, else the nearest, breaking ties by
// load. When nothing qualifies it refuses with a typed reason rather than
// falling back. Pure and fast: no I/O, and no allocation per decision.
package placement

import (
	"errors"
	"math/rand/v2"

	"github.com/oakmeet/oakmeet/geo"
)

// Node is a media node as last reported.
type Node struct {
	ID      string
	Country string
	Region  string
	Lat     float64
	Lon     float64

	Healthy  bool
	Draining bool

	Participants    int
	MaxParticipants int // 0 = unlimited
	BitrateBps      int64
	MaxBitrateBps   int64 // 0 = unlimited
}

// Allower is the routing policy as placement needs it; policy.Effective
// satisfies it.
type Allower interface {
	Allows(country, region string) bool
}

// Request is one participant to place.
type Request struct {
	Policy       Allower
	From         geo.Location // the participant; Known=false when unknown
	MeetingNodes []string     // ids of nodes the meeting already uses
	Exclude      []string     // ids never to choose, e.g. a node being left
}

// Decision is where the participant goes.
type Decision struct {
	Node Node
	// DistanceKm is from the participant to the node; negative when either
	// location is unknown.
	DistanceKm float64
	// Reused is true when the node already carries the meeting, so no new
	// relay is needed.
	Reused bool
}

// Refusal codes are stable and shown to clients and in the audit log.
const (
	// CodeNoNodeInAllowedRegions: no healthy node is where the policy allows.
	CodeNoNodeInAllowedRegions = "no_node_in_allowed_regions"
	// CodeNoCapacity: allowed healthy nodes exist but all are full or draining.
	CodeNoCapacity = "no_capacity_in_allowed_regions"
)

// Refusal is Place's answer when no node may take the participant. Callers
// tell it apart with errors.As and branch on Code.
type Refusal struct {
	Code   string
	Reason string // human-readable
}

func (r *Refusal) Error() string { return "placement refused: " + r.Code + ": " + r.Reason }

// ErrNoPolicy is returned for a request without a policy: placing without one
// could only guess, and guessing is what this package exists not to do.
var ErrNoPolicy = errors.New("placement: request has no routing policy")

// Option tunes a Snapshot's preferences. Policy, health and headroom are not
// tunable.
type Option func(*options)

type options struct {
	nearEnoughKm float64
	tieKm        float64
}

func defaultOptions() options {
	return options{nearEnoughKm: 1500, tieKm: 50}
}

// WithNearEnoughKm sets how much farther than the nearest candidate a node the
// meeting already uses may be and still be preferred (default 1500 km):
// joining an existing node saves a relay hop, which is worth some distance.
func WithNearEnoughKm(km float64) Option {
	return func(o *options) {
		if km >= 0 {
			o.nearEnoughKm = km
		}
	}
}

// WithTieKm sets how close in distance two candidates must be to count as
// equally near, so that load decides between them (default 50 km).
func WithTieKm(km float64) Option {
	return func(o *options) {
		if km >= 0 {
			o.tieKm = km
		}
	}
}

// hasHeadroom reports whether the node can take one more participant.
func hasHeadroom(n Node) bool {
	if n.MaxParticipants != 0 && n.Participants >= n.MaxParticipants {
		return false
	}
	if n.MaxBitrateBps != 0 && n.BitrateBps >= n.MaxBitrateBps {
		return false
	}
	return true
}

// loadRatio is the share of participant capacity in use; unlimited nodes
// count as empty.
func loadRatio(n Node) float64 {
	if n.MaxParticipants <= 0 {
		return 0
	}
	return float64(n.Participants) / float64(n.MaxParticipants)
}

// lessLoaded orders nodes for tie-breaking.
func lessLoaded(a, b Node) bool {
	ra, rb := loadRatio(a), loadRatio(b)
	if ra != rb {
		return ra < rb
	}
	return a.Participants < b.Participants
}

// pickTwo draws two distinct indices in [0, n) for power-of-two-choices; with
// no random source it takes the first two, keeping decisions reproducible.
func pickTwo(rnd *rand.Rand, n int) (int, int) {
	if rnd == nil {
		return 0, 1
	}
	a := rnd.IntN(n)
	b := rnd.IntN(n - 1)
	if b >= a {
		b++
	}
	return a, b
}
