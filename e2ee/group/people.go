package group

import (
	"crypto/ed25519"
	"slices"

	"github.com/oakmeet/oakmeet/e2ee/keymsg"
)

// Person is one participant as this member knows it, from the signed
// epochs it holds and from the server's list, for a user interface to show
// (docs/E2EE.md §6.8 says which flags to raise).
type Person struct {
	Participant string
	Name        string            // from the signed announcement; "" if none is known
	Identity    ed25519.PublicKey // nil if no announcement is known
	Self        bool
	Leader      bool // signed the sending epoch (or, before one, leads by the view)
	InKeys      bool // in the sending epoch's roster
	Pending     bool // in the newest installed epoch, not yet committed, only
	Listed      bool // in the server's roster view
	Heard       bool // announced itself to this member directly, with these keys
	Removed     bool // removed by the host (Remove)
	// NodeCert is the certificate text of the node the participant says it
	// is on, from its node message signed with Identity (this member's own
	// from Config); "" if none verified yet. It is unchecked here: the
	// caller verifies it against its host-signed policy.
	NodeCert string
}

// Status sums up where this member's key schedule stands.
type Status struct {
	Epoch  uint64 // the sending epoch, 0 before the first
	Newest uint64 // the newest installed epoch
	// AwaitingAcks, for a leader whose newest epoch is not committed, are
	// the roster members that have not acked it.
	AwaitingAcks []string
	// Unheard are the members of the sending and newest epochs that have
	// not announced themselves to this member directly.
	Unheard []string
}

// People lists everyone in the sending epoch, the newest epoch or the
// server's view, in that order of discovery.
func (m *Member) People() []Person {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Person
	index := map[string]int{}
	add := func(p string) *Person {
		if i, ok := index[p]; ok {
			return &out[i]
		}
		index[p] = len(out)
		out = append(out, Person{Participant: p, Self: p == m.cfg.Participant})
		return &out[len(out)-1]
	}
	setEntry := func(ps *Person, e keymsg.Entry) {
		if ps.Identity == nil {
			ps.Name, ps.Identity = e.Name, slices.Clone(e.Identity)
		}
		ps.Heard = ps.Self || m.isHeard(e)
		ps.Removed = ps.Removed || m.removed(e)
	}
	newest := m.newest()
	if m.sending != nil {
		for _, e := range m.sending.roster {
			ps := add(e.Participant)
			ps.InKeys = true
			setEntry(ps, e)
		}
	}
	if newest != nil && newest != m.sending {
		for _, e := range newest.roster {
			ps := add(e.Participant)
			ps.Pending = !ps.InKeys
			setEntry(ps, e)
		}
	}
	for _, p := range m.view {
		ps := add(p)
		ps.Listed = true
		if ps.Identity == nil {
			if e, ok := m.heard[p]; ok {
				setEntry(ps, e)
			} else if ps.Self {
				setEntry(ps, m.self)
			}
		}
		ps.Removed = ps.Removed || m.removedPID[p]
	}
	leader := m.expectedLeader()
	if m.sending != nil {
		leader = m.sending.leader.Participant
	}
	if i, ok := index[leader]; ok {
		out[i].Leader = true
	}
	for i := range out {
		if !out[i].Removed || out[i].Self {
			out[i].NodeCert = m.nodeCert(out[i].Participant, out[i].Identity)
		}
	}
	return out
}

// Status returns the sending and newest epochs and who holds them up.
func (m *Member) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	var s Status
	if m.sending != nil {
		s.Epoch = m.sending.number
	}
	newest := m.newest()
	if newest == nil {
		return s
	}
	s.Newest = newest.number
	if newest.own(m) && !newest.committed {
		for i, e := range newest.roster {
			if i != newest.index && !newest.acks[e.Participant] {
				s.AwaitingAcks = append(s.AwaitingAcks, e.Participant)
			}
		}
	}
	for _, st := range []*epochState{m.sending, newest} {
		if st == nil {
			continue
		}
		for i, e := range st.roster {
			if i != st.index && !m.isHeard(e) && !slices.Contains(s.Unheard, e.Participant) {
				s.Unheard = append(s.Unheard, e.Participant)
			}
		}
	}
	return s
}
