package group

import (
	"bytes"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/e2ee/identity"
	"github.com/oakmeet/oakmeet/e2ee/mediaframe"
)

// fakeClock is the only fake the tests use besides the network below.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type delivery struct {
	from, to string
	payload  []byte
}

// simNet is an in-memory relay, like the media node's: it delivers each
// Outgoing to one participant or to every other participant, in order. A
// test can make it lie as a malicious server would: drop or rewrite
// deliveries (intercept) and show each member another roster (viewOf).
type simNet struct {
	t       *testing.T
	clock   *fakeClock
	members map[string]*Member
	order   []string // join order: the roster every member is told, unless viewOf says otherwise
	queue   []delivery
	// intercept, if set, may rewrite or drop (return false) a delivery.
	intercept func(*delivery) bool
	// viewOf, if set, is the roster shown to member, given the real one.
	viewOf func(member string, order []string) []string
	errs   map[string][]error // errors HandleMessage returned, by recipient
	log    []delivery         // every delivery made
}

func newSimNet(t *testing.T) *simNet {
	return &simNet{
		t:       t,
		clock:   &fakeClock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)},
		members: map[string]*Member{},
		errs:    map[string][]error{},
	}
}

func testIdentity(t *testing.T, name string) *identity.Identity {
	seed := bytes.Repeat([]byte(name+"-"), 32)[:32]
	id, err := identity.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// displayName is the name every test member announces: its id, capitalised.
func displayName(id string) string { return strings.ToUpper(id[:1]) + id[1:] }

func (n *simNet) newMember(name string) *Member {
	n.t.Helper()
	m, err := NewMember(Config{Meeting: "meeting-1", Participant: name, Name: displayName(name), Identity: testIdentity(n.t, name), Now: n.clock.Now})
	if err != nil {
		n.t.Fatal(err)
	}
	return m
}

// join adds a participant the way a client does: announce, then everyone
// learns the new roster; then time passes until nothing is due soon (the
// leader's join batch).
func (n *simNet) join(name string) *Member {
	n.t.Helper()
	return n.joinMember(n.newMember(name))
}

func (n *simNet) joinMember(m *Member) *Member {
	n.t.Helper()
	n.arrive(m)
	n.settle()
	return m
}

// arrive is join without letting time pass.
func (n *simNet) arrive(m *Member) {
	n.t.Helper()
	n.members[m.Participant()] = m
	if !slices.Contains(n.order, m.Participant()) {
		n.order = append(n.order, m.Participant())
	}
	n.send(m.Participant(), m.Introduce())
	n.rosterChanged()
}

func (n *simNet) view(name string) []string {
	if n.viewOf == nil {
		return n.order
	}
	return n.viewOf(name, slices.Clone(n.order))
}

func (n *simNet) leave(name string) *Member {
	m := n.members[name]
	delete(n.members, name)
	n.order = slices.DeleteFunc(n.order, func(p string) bool { return p == name })
	n.rosterChanged()
	return m
}

func (n *simNet) rosterChanged() {
	n.t.Helper()
	for _, name := range n.order {
		out, err := n.members[name].OnRosterChange(n.view(name))
		if err != nil {
			n.t.Fatalf("%s OnRosterChange: %v", name, err)
		}
		n.send(name, out)
	}
	n.run()
}

func (n *simNet) send(from string, out []Outgoing) {
	for _, o := range out {
		if o.To != "" {
			n.queue = append(n.queue, delivery{from, o.To, o.Payload})
			continue
		}
		for _, to := range n.order {
			if to != from {
				n.queue = append(n.queue, delivery{from, to, o.Payload})
			}
		}
	}
}

// run delivers until nothing is left to deliver.
func (n *simNet) run() {
	n.t.Helper()
	for steps := 0; len(n.queue) > 0; steps++ {
		if steps > 10000 {
			n.t.Fatal("messages never settle")
		}
		d := n.queue[0]
		n.queue = n.queue[1:]
		if n.intercept != nil && !n.intercept(&d) {
			continue
		}
		m := n.members[d.to]
		if m == nil {
			continue
		}
		n.log = append(n.log, d)
		out, err := m.HandleMessage(d.from, d.payload)
		if err != nil {
			n.errs[d.to] = append(n.errs[d.to], err)
		}
		n.send(d.to, out)
	}
}

// tick ticks every member once, delivers, then settles.
func (n *simNet) tick() {
	n.t.Helper()
	n.tickOnce()
	n.settle()
}

func (n *simNet) tickOnce() {
	n.t.Helper()
	for _, name := range n.order {
		out, err := n.members[name].Tick()
		if err != nil {
			n.t.Fatalf("%s Tick: %v", name, err)
		}
		n.send(name, out)
	}
	n.run()
}

// settle lets time pass, tick by tick, while some member has something due
// within DefaultJoinBatch: a join batch closes, an ack or an announcement
// goes again. Anything due later (periodic re-keys, the grace window) is
// the test's to reach.
func (n *simNet) settle() {
	n.t.Helper()
	for range 50 {
		var next time.Time
		for _, name := range n.order {
			next = earliest(next, n.members[name].nextDueLocked())
		}
		now := n.clock.Now()
		if next.IsZero() || next.After(now.Add(DefaultJoinBatch)) {
			return
		}
		if next.After(now) {
			n.clock.Advance(next.Sub(now))
		}
		n.tickOnce()
	}
	n.t.Fatal("something is due again and again")
}

// converged checks that every member holds the same epoch, roster and code,
// that the roster is the join order, and that every member decrypts every
// other member's frames.
func (n *simNet) converged() uint64 {
	n.t.Helper()
	first := n.members[n.order[0]]
	epoch := first.Epoch()
	code, ok := first.SecurityCode()
	if !ok || epoch == 0 {
		n.t.Fatalf("%s has no epoch", first.Participant())
	}
	for _, name := range n.order {
		m := n.members[name]
		c, _ := m.SecurityCode()
		if m.Epoch() != epoch || c != code {
			n.t.Fatalf("%s at epoch %d code %v; %s at epoch %d code %v", name, m.Epoch(), c, first.Participant(), epoch, code)
		}
		var roster []string
		for _, e := range m.Roster() {
			roster = append(roster, e.Participant)
		}
		if !slices.Equal(roster, n.order) {
			n.t.Fatalf("%s roster %v, want %v", name, roster, n.order)
		}
	}
	for _, from := range n.order {
		for _, to := range n.order {
			if from != to {
				mustExchange(n.t, n.members[from], n.members[to])
			}
		}
	}
	return epoch
}

var testFrame = append([]byte{0x50, 0x2d, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01}, bytes.Repeat([]byte("vp8 key frame "), 20)...)

func protect(t *testing.T, m *Member) []byte {
	t.Helper()
	f, err := m.Protect(nil, mediaframe.VP8, testFrame)
	if err != nil {
		t.Fatalf("%s Protect: %v", m.Participant(), err)
	}
	return f
}

func mustExchange(t *testing.T, from, to *Member) {
	t.Helper()
	got, err := to.Unprotect(nil, mediaframe.VP8, protect(t, from))
	if err != nil || !bytes.Equal(got, testFrame) {
		t.Fatalf("%s cannot decrypt %s's frame: %v", to.Participant(), from.Participant(), err)
	}
}
