package node

import (
	"errors"
	"sync"
	"time"

	"github.com/oakmeet/oakmeet/turncred"
)

// maxAllocationsPerSeat bounds the allocations one participant's
// credential holds at once: a browser makes one per local address it
// gathers from, not more.
const maxAllocationsPerSeat = 8

// errSeatGone: the credential's participant left or was removed.
var errSeatGone = errors.New("the participant has left this node")

type seat struct{ meeting, participant string }

type allocation struct{ src, username string }

// grants is what the TURN server knows of the node's participants: the
// allocations made with each credential, and who has left. A credential
// is accepted while valid; after its expiry only for the allocation it
// made in time, from the same client address (its refreshes and
// permissions), so a call outlives the join token without any new
// allocation being made on an old credential. Once its participant leaves
// or is removed, nothing made with it is accepted again.
//
// pion/turn asks for a verdict synchronously from its own goroutines, so
// this is a narrow lock rather than an owning goroutine: no I/O under it.
type grants struct {
	mu   sync.Mutex
	live map[allocation]seat
	// gone holds a departed participant until every credential issued
	// before the departure has expired.
	gone map[seat]time.Time
}

func newGrants() *grants {
	return &grants{live: map[allocation]seat{}, gone: map[seat]time.Time{}}
}

// admit decides whether credential c, presented as username from src, is
// accepted at now.
func (g *grants) admit(c turncred.Claims, src, username string, now time.Time) error {
	s := seat{c.Meeting, c.Participant}
	g.mu.Lock()
	defer g.mu.Unlock()
	if until, ok := g.gone[s]; ok && now.Before(until) {
		return errSeatGone
	}
	err := c.Check(now)
	if errors.Is(err, turncred.ErrExpired) {
		if _, ok := g.live[allocation{src, username}]; ok {
			return nil
		}
	}
	return err
}

// underQuota reports whether username's participant may make another
// allocation.
func (g *grants) underQuota(username string) bool {
	c, err := turncred.Parse(username)
	if err != nil {
		return false
	}
	s := seat{c.Meeting, c.Participant}
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, v := range g.live {
		if v == s {
			n++
		}
	}
	return n < maxAllocationsPerSeat
}

func (g *grants) allocated(src, username string) {
	c, err := turncred.Parse(username)
	if err != nil {
		return // pion accepted it, so the auth handler did; cannot happen
	}
	g.mu.Lock()
	g.live[allocation{src, username}] = seat{c.Meeting, c.Participant}
	g.mu.Unlock()
}

func (g *grants) deallocated(src, username string) {
	g.mu.Lock()
	delete(g.live, allocation{src, username})
	g.mu.Unlock()
}

// left records that a participant left the node or was removed at now.
func (g *grants) left(meeting, participant string, now time.Time) {
	s := seat{meeting, participant}
	g.mu.Lock()
	defer g.mu.Unlock()
	for a, v := range g.live {
		if v == s {
			delete(g.live, a)
		}
	}
	for k, until := range g.gone {
		if !now.Before(until) {
			delete(g.gone, k)
		}
	}
	g.gone[s] = now.Add(turncred.MaxLifetime + turncred.MaxClockSkew)
}

// returned records that a participant connected (again): a connection
// lost and re-made with the same join token keeps its relay.
func (g *grants) returned(meeting, participant string) {
	g.mu.Lock()
	delete(g.gone, seat{meeting, participant})
	g.mu.Unlock()
}
