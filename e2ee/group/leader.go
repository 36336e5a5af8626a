package group

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/oakmeet/oakmeet/e2ee/keymsg"
)

// batchState is a leader's wait for further joins: set while its desired
// roster only adds participants to its newest epoch's.
type batchState struct {
	first, last time.Time // first and latest addition seen
	size        int       // desired roster size at last
}

// desiredCache keeps the desired roster and how it compares with the
// newest epoch's until the view, the announcements, the removals or the
// epochs change (m.gen), so that a leader of 1,000 does not rebuild it for
// each of 1,000 acks.
type desiredCache struct {
	gen     uint64
	valid   bool
	roster  []keymsg.Entry
	compare rosterChange
}

type rosterChange int

const (
	rosterSame  rosterChange = iota
	rosterAdds               // only additions: batched
	rosterOther              // a leave, removal, key change, or nothing yet: at once
)

// desiredRoster is the roster a leader keys: itself first, then the
// participants of its view in join order that announced themselves to it
// and were not removed.
func (m *Member) desiredRoster() ([]keymsg.Entry, rosterChange) {
	if m.desired.valid && m.desired.gen == m.gen {
		return m.desired.roster, m.desired.compare
	}
	roster := []keymsg.Entry{m.self}
	for _, p := range m.view {
		if p == m.cfg.Participant {
			continue
		}
		if e, ok := m.heard[p]; ok && !m.removed(e) {
			roster = append(roster, e)
		}
	}
	m.desired = desiredCache{gen: m.gen, valid: true, roster: roster, compare: m.compareWithNewest(roster)}
	return roster, m.desired.compare
}

func (m *Member) compareWithNewest(want []keymsg.Entry) rosterChange {
	newest := m.newest()
	if newest == nil || !newest.own(m) {
		return rosterOther
	}
	have := make(map[string]keymsg.Entry, len(newest.roster))
	for _, e := range newest.roster {
		have[e.Participant] = e
	}
	kept := 0
	for _, e := range want {
		if h, ok := have[e.Participant]; ok {
			if !h.Same(e) {
				return rosterOther
			}
			kept++
		}
	}
	switch {
	case kept < len(newest.roster):
		return rosterOther
	case len(want) == len(newest.roster):
		return rosterSame
	default:
		return rosterAdds
	}
}

// rekeyDue reports whether the leader should make a new epoch now.
func (m *Member) rekeyDue(now time.Time) bool {
	_, change := m.desiredRoster()
	newest := m.newest()
	switch change {
	case rosterOther:
		m.batch = batchState{}
		return true
	case rosterAdds:
		if m.batch.first.IsZero() {
			m.batch = batchState{first: now, last: now, size: len(m.desired.roster)}
		} else if len(m.desired.roster) != m.batch.size {
			m.batch.last, m.batch.size = now, len(m.desired.roster)
		}
		return !now.Before(m.batchDeadline())
	default:
		m.batch = batchState{}
		return now.Sub(newest.at) >= m.cfg.RekeyInterval
	}
}

func (m *Member) batchDeadline() time.Time {
	d := m.batch.last.Add(m.cfg.JoinBatch)
	if limit := m.batch.first.Add(m.cfg.JoinBatchMax); limit.Before(d) {
		return limit
	}
	return d
}

// A leader that takes over the numbering from someone else skips at least
// takeoverJump and less than twice that, at random (docs/E2EE.md §5.3).
const takeoverJump = 1 << 20

// nextNumber is the number of the epoch this leader makes next: one above
// its newest epoch when it made that one itself and knows of nothing newer
// (it leads on), and otherwise, when it takes the numbering over from
// another leader or from nothing (a first epoch, a restart, a takeover, a
// sync saying someone holds another leader's epoch), a random jump above
// every number it knows of. Two leaders that mint without knowing of each
// other's epochs then pick the same number, and so the same KIDs for
// different secrets, with a chance of 2^-20, where consecutive numbers
// made them collide every time.
func (m *Member) nextNumber(synced bool) (uint64, error) {
	base := max(m.floor, m.newestNumber())
	if m.pending != nil {
		base = max(base, m.pending.msg.Epoch)
	}
	if newest := m.newest(); !synced && newest != nil && newest.own(m) && newest.number == base {
		if base >= keymsg.MaxEpoch {
			return 0, ErrEpochExhausted
		}
		return base + 1, nil
	}
	var b [8]byte
	if _, err := io.ReadFull(m.cfg.Rand, b[:]); err != nil {
		return 0, fmt.Errorf("group: epoch number: %w", err)
	}
	jump := takeoverJump + binary.BigEndian.Uint64(b[:])%takeoverJump
	if base > keymsg.MaxEpoch-jump {
		return 0, ErrEpochExhausted
	}
	return base + jump, nil
}

// rekey makes, installs and returns a new epoch for the desired roster;
// synced says a sync message asked for it.
func (m *Member) rekey(now time.Time, synced bool) ([]Outgoing, error) {
	m.batch = batchState{}
	number, err := m.nextNumber(synced)
	if err != nil {
		return nil, err
	}
	secret := make([]byte, keymsg.SecretSize)
	defer clear(secret)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("group: epoch secret: %w", err)
	}
	roster, _ := m.desiredRoster()
	msg, err := keymsg.NewEpoch(m.cfg.Meeting, number, roster, secret, m.cfg.Identity)
	if err != nil {
		return nil, fmt.Errorf("group: epoch %d: %w", number, err)
	}
	payload, err := keymsg.Encode(msg)
	if err != nil {
		return nil, fmt.Errorf("group: epoch %d: %w", number, err)
	}
	if _, err := m.install(msg, 0, secret, now); err != nil {
		return nil, err
	}
	return []Outgoing{{Payload: payload}}, nil
}

// NextTick is when this member next has something due (a join batch to
// close, an ack to re-send, an announcement to repeat, keys to retire, a
// periodic re-key): callers tick then, within their bounds of 50 ms and 1 s.
func (m *Member) NextTick() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now()
	next := m.nextDue()
	if next.IsZero() || next.After(now.Add(time.Second)) {
		return now.Add(time.Second)
	}
	if next.Before(now.Add(50 * time.Millisecond)) {
		return now.Add(50 * time.Millisecond)
	}
	return next
}

// nextDueLocked is nextDue for a caller that does not hold the lock.
func (m *Member) nextDueLocked() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nextDue()
}

// nextDue is when something is next due, unbounded; zero if nothing is.
func (m *Member) nextDue() time.Time {
	next := m.nextAnnounce()
	for _, r := range m.retired {
		next = earliest(next, r.until)
	}
	for _, st := range m.epochs {
		if !st.committed && !st.own(m) && !st.ackedAt.IsZero() {
			next = earliest(next, st.ackedAt.Add(m.cfg.AnnounceRetry))
		}
	}
	if m.isLeader() {
		if !m.batch.first.IsZero() {
			next = earliest(next, m.batchDeadline())
		}
		if newest := m.newest(); newest != nil {
			next = earliest(next, newest.at.Add(m.cfg.RekeyInterval))
		}
	}
	return next
}
