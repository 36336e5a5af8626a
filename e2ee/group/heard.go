package group

import (
	"fmt"
	"slices"
	"time"

	"github.com/oakmeet/oakmeet/e2ee/keymsg"
)

// The heard rule: a member only acks, and so only lets anyone send under,
// an epoch whose every other roster entry announced itself to this member
// directly, with the same keys and name. The server relays those
// announcements too, but it cannot make one up, and showing an extra
// participant to the leader alone then gains nothing: the others never
// hear from it, never ack, and the epoch is never committed.

func (m *Member) handleAnnouncement(from string, a *keymsg.Announcement, now time.Time) ([]Outgoing, error) {
	if a.Meeting != m.cfg.Meeting {
		return nil, fmt.Errorf("%w: announcement of %q for %q", ErrWrongMeeting, a.Participant, a.Meeting)
	}
	if a.Participant != from {
		return nil, fmt.Errorf("%w: %q sent an announcement for %q", ErrSenderMismatch, from, a.Participant)
	}
	if m.removed(a.Entry) {
		return nil, fmt.Errorf("%w: announcement of %q", ErrRemoved, from)
	}
	prev, known := m.heard[from]
	if !known || !prev.Same(a.Entry) {
		if err := a.Verify(); err != nil {
			return nil, fmt.Errorf("group: announcement of %q: %w", from, err)
		}
	}
	if !known && len(m.heard) >= 2*keymsg.MaxRoster && !slices.Contains(m.view, from) {
		return nil, fmt.Errorf("group: announcement of %q: too many announcements", from)
	}
	if !known || !prev.Same(a.Entry) {
		// The latest wins: a participant that restarted announces new keys.
		m.heard[from] = a.Entry
		m.remember(a.Entry)
		m.gen++
	}
	// Answer, so that it hears this member too; an announcement replacing
	// another (a restart) is answered even if one went out a moment ago, as
	// the restarted member lost it.
	return m.announceTo(from, now, known && !prev.Same(a.Entry)), nil
}

// announceTo sends this member's announcement to p unless one reached p
// (sent to p, or to everyone while p was present) within AnnounceRetry/2,
// and force is false.
func (m *Member) announceTo(p string, now time.Time, force bool) []Outgoing {
	if last, ok := m.sentTo[p]; ok && !force && now.Sub(last) < m.cfg.AnnounceRetry/2 {
		return nil
	}
	m.sentTo[p] = now
	return m.announcement(p)
}

// announcement is this member's announcement to p ("" for everyone) and
// its node message right after it, to the same recipients.
func (m *Member) announcement(p string) []Outgoing {
	out := []Outgoing{{To: p, Payload: m.announce}}
	if m.nodeMsg != nil {
		out = append(out, Outgoing{To: p, Payload: m.nodeMsg})
	}
	return out
}

// broadcastAnnounce records an announcement to everyone: it reaches those
// present now, the participants of the view.
func (m *Member) broadcastAnnounce(now time.Time) []Outgoing {
	m.lastAnnounce = now
	for _, p := range m.view {
		if p != m.cfg.Participant {
			m.sentTo[p] = now
		}
	}
	return m.announcement("")
}

// announceUnheard sends this member's announcement, at most every
// AnnounceRetry, to every entry of its epochs it has not heard from: the
// answer rule brings theirs back. The deferred epoch counts too: one that
// lists keys other than those this member heard (a participant restarted,
// and its new announcement to this member was lost) waits for exactly that
// answer.
func (m *Member) announceUnheard(now time.Time) []Outgoing {
	var out []Outgoing
	seen := map[string]bool{}
	// Until the leader keys it, a member reminds the leader of itself: its
	// announcements may all have been lost (or overtaken by a stale copy of
	// its earlier instance's), and an epoch left over from a leader that has
	// gone stops the re-announcing below. And a leader asks whoever the view
	// lists but it has not heard: the answer rule brings their announcement
	// back.
	for _, p := range m.reminded() {
		seen[p] = true
		if now.Sub(m.sentTo[p]) >= m.cfg.AnnounceRetry {
			m.sentTo[p] = now
			out = append(out, m.announcement(p)...)
		}
	}
	for _, roster := range m.rosters() {
		for _, e := range roster {
			if seen[e.Participant] || e.Participant == m.cfg.Participant || m.removed(e) || m.isHeard(e) {
				continue
			}
			seen[e.Participant] = true
			if now.Sub(m.sentTo[e.Participant]) >= m.cfg.AnnounceRetry {
				m.sentTo[e.Participant] = now
				out = append(out, m.announcement(e.Participant)...)
			}
		}
	}
	return out
}

// nextAnnounce is when announceUnheard or the no-epoch broadcast next has
// something to send; zero if never.
func (m *Member) nextAnnounce() time.Time {
	var next time.Time
	if len(m.epochs) == 0 {
		next = m.lastAnnounce.Add(m.cfg.AnnounceRetry)
	}
	for _, p := range m.reminded() {
		next = earliest(next, m.sentTo[p].Add(m.cfg.AnnounceRetry))
	}
	for _, roster := range m.rosters() {
		for _, e := range roster {
			if e.Participant == m.cfg.Participant || m.removed(e) || m.isHeard(e) {
				continue
			}
			next = earliest(next, m.sentTo[e.Participant].Add(m.cfg.AnnounceRetry))
		}
	}
	return next
}

// reminded are who get this member's announcement every AnnounceRetry
// besides the unheard of its epochs: the leader of its view while it holds
// no epoch of that leader's, and, leading, the participants of its view it
// has not heard and the host did not remove.
func (m *Member) reminded() []string {
	leader := m.expectedLeader()
	if leader != m.cfg.Participant {
		if newest := m.newest(); leader != "" && (newest == nil || newest.leader.Participant != leader) {
			return []string{leader}
		}
		return nil
	}
	var out []string
	for _, p := range m.view {
		if _, ok := m.heard[p]; !ok && p != m.cfg.Participant && !m.removedPID[p] {
			out = append(out, p)
		}
	}
	return out
}

// rosters are the rosters of the installed epochs and of the deferred one.
func (m *Member) rosters() [][]keymsg.Entry {
	out := make([][]keymsg.Entry, 0, len(m.epochs)+1)
	for _, st := range m.epochs {
		out = append(out, st.roster)
	}
	if m.pending != nil {
		out = append(out, m.pending.msg.Roster)
	}
	return out
}

func (m *Member) isHeard(e keymsg.Entry) bool {
	h, ok := m.heard[e.Participant]
	return ok && h.Same(e)
}

// ready reports whether st may be acked (or, by its leader, committed) by
// this member: everyone else in it heard, nobody in it removed, and this
// member in it with its own keys. The answer is cached until the view,
// the heard announcements or the removals change.
func (m *Member) ready(st *epochState) bool {
	if st.readyGen == m.gen && st.readyKnown {
		return st.readyVal
	}
	ok := st.roster[st.index].Same(m.self)
	for i, e := range st.roster {
		if !ok {
			break
		}
		ok = !m.removed(e) && (i == st.index || m.isHeard(e))
	}
	st.readyGen, st.readyKnown, st.readyVal = m.gen, true, ok
	return ok
}

// remember records that e's signature verified, for this meeting.
func (m *Member) remember(e keymsg.Entry) {
	if len(m.verified) >= maxVerified {
		clear(m.verified)
	}
	m.verified[e.CacheKey()] = struct{}{}
}

func (m *Member) known(e keymsg.Entry) bool {
	_, ok := m.verified[e.CacheKey()]
	return ok
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
