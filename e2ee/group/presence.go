package group

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"

	"github.com/oakmeet/oakmeet/e2ee/keymsg"
)

// ErrReplay means a presence message's seq is not above the last one
// accepted from its sender: an old one replayed, or a copy.
var ErrReplay = errors.New("group: presence replayed")

// ErrNotInKeys means a presence message's sender is not in the sending
// epoch's roster, the one whose security code is shown: until it is, no
// key counts for it, however it was announced. The newest such presence
// of a participant a newer epoch or its own announcement names is kept
// and taken once the sending epoch names that participant with the key
// that signed it; the error wraps ErrDeferred.
var ErrNotInKeys = fmt.Errorf("%w: presence of a participant not in the sending epoch", ErrDeferred)

// ErrPresenceFull means a presence message came from a new participant id
// while the seqs kept are at their bound and all belong to participants
// the view or an epoch names, none of which is ever forgotten.
var ErrPresenceFull = errors.New("group: too many participants' presence")

// maxPresence bounds the participants whose last seq is kept; it outlives
// their leaving, so that an old presence cannot be replayed to an id that
// appears again.
const maxPresence = 4 * keymsg.MaxRoster

// maxPresenceWait bounds the presence messages kept for participants not
// yet in the sending epoch.
const maxPresenceWait = 2 * keymsg.MaxRoster

// PeerPresence is another member's latest verified presence: whether its
// microphone and camera are on, its hand raised, its screen shared.
type PeerPresence struct {
	Seq                       uint64
	Mic, Camera, Hand, Screen bool
	identity                  string // the key it verified with, as bytes
}

// presenceState is what a member holds of others' presence.
type presenceState struct {
	// shown is the latest accepted presence per participant, while its key
	// is the one the sending epoch names.
	shown map[string]PeerPresence
	// seq is the highest seq accepted per participant, whatever key it
	// came with: a key change never lets an older one in again.
	seq map[string]uint64
	// wait is the newest presence per participant not yet in the sending
	// epoch, with the key it verified with then.
	wait map[string]waitingPresence
}

type waitingPresence struct {
	p        *keymsg.Presence
	identity ed25519.PublicKey
}

// SharePresence signs this member's presence with seq, which must rise
// with every presence this participant id sends.
func (m *Member) SharePresence(seq uint64, mic, camera, hand, screen bool) (Outgoing, error) {
	p, err := keymsg.NewPresence(keymsg.Presence{Meeting: m.cfg.Meeting, Participant: m.cfg.Participant, Seq: seq,
		Mic: mic, Camera: camera, Hand: hand, Screen: screen}, m.cfg.Identity)
	if err != nil {
		return Outgoing{}, fmt.Errorf("group: %w", err)
	}
	b, err := keymsg.Encode(p)
	if err != nil {
		return Outgoing{}, fmt.Errorf("group: %w", err)
	}
	return Outgoing{Payload: b}, nil
}

// Presence is participant p's latest verified presence, if one came and
// p is still in the sending epoch with the key that signed it.
func (m *Member) Presence(p string) (PeerPresence, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	pp, ok := m.presence.shown[p]
	return pp, ok
}

// keyedIdentity is p's identity key in the sending epoch's roster, nil if
// it has none there (or the host removed that entry).
func (m *Member) keyedIdentity(p string) ed25519.PublicKey {
	if m.sending == nil {
		return nil
	}
	for _, e := range m.sending.roster {
		if e.Participant == p && !m.removed(e) {
			return e.Identity
		}
	}
	return nil
}

func (m *Member) handlePresence(from string, p *keymsg.Presence) error {
	if p.Meeting != m.cfg.Meeting {
		return fmt.Errorf("%w: presence message of %q for %q", ErrWrongMeeting, p.Participant, p.Meeting)
	}
	if p.Participant != from {
		return fmt.Errorf("%w: %q sent a presence message for %q", ErrSenderMismatch, from, p.Participant)
	}
	if m.removedPID[from] {
		return fmt.Errorf("%w: presence message of %q", ErrRemoved, from)
	}
	id := m.keyedIdentity(from)
	if id == nil {
		return m.waitPresence(from, p)
	}
	if err := p.Verify(id); err != nil {
		return fmt.Errorf("group: presence message of %q: %w", from, err)
	}
	return m.acceptPresence(from, p, id)
}

// acceptPresence takes p, verified with id, if its seq is new.
func (m *Member) acceptPresence(from string, p *keymsg.Presence, id ed25519.PublicKey) error {
	ps := &m.presence
	last, ok := ps.seq[from]
	if ok && p.Seq <= last {
		return fmt.Errorf("%w: seq %d of %q, %d accepted", ErrReplay, p.Seq, from, last)
	}
	if ps.seq == nil {
		ps.seq = make(map[string]uint64)
		ps.shown = make(map[string]PeerPresence)
	}
	if !ok && len(ps.seq) >= maxPresence && !m.forgetOnePresence() {
		return fmt.Errorf("%w: presence message of %q", ErrPresenceFull, from)
	}
	ps.seq[from] = p.Seq
	ps.shown[from] = PeerPresence{Seq: p.Seq, Mic: p.Mic, Camera: p.Camera, Hand: p.Hand, Screen: p.Screen, identity: string(id)}
	return nil
}

// forgetOnePresence drops the seq of one participant that neither the
// view nor any epoch names, so that throw-away ids can never push out the
// seq of someone present; false if there is none.
func (m *Member) forgetOnePresence() bool {
	for k := range m.presence.seq {
		if m.namedAnywhere(k) {
			continue
		}
		delete(m.presence.seq, k)
		delete(m.presence.shown, k)
		return true
	}
	return false
}

func (m *Member) namedAnywhere(p string) bool {
	if slices.Contains(m.view, p) {
		return true
	}
	for _, st := range m.epochs {
		if slices.ContainsFunc(st.roster, func(e keymsg.Entry) bool { return e.Participant == p }) {
			return true
		}
	}
	return false
}

// waitPresence keeps the presence of a participant not in the sending
// epoch for when it is, if it verifies with the key that participant
// announced or a newer epoch names.
func (m *Member) waitPresence(from string, p *keymsg.Presence) error {
	id := m.identityOf(from)
	if id == nil {
		return fmt.Errorf("group: presence message of %q, who has not announced themselves", from)
	}
	if err := p.Verify(id); err != nil {
		return fmt.Errorf("group: presence message of %q: %w", from, err)
	}
	ps := &m.presence
	prev, ok := ps.wait[from]
	switch {
	case ok && prev.p.Seq >= p.Seq && bytes.Equal(prev.identity, id):
	case !ok && len(ps.wait) >= maxPresenceWait:
		return fmt.Errorf("%w: presence message of %q", ErrPresenceFull, from)
	default:
		if ps.wait == nil {
			ps.wait = make(map[string]waitingPresence)
		}
		ps.wait[from] = waitingPresence{p, id}
	}
	return fmt.Errorf("%w: %q", ErrNotInKeys, from)
}

// presenceKeysChanged follows a new sending epoch: what is shown for a
// participant it does not name with the key the presence verified with
// goes (its seq stays), and waiting presence of those it now names is
// taken.
func (m *Member) presenceKeysChanged() {
	ps := &m.presence
	for p, pp := range ps.shown {
		if id := m.keyedIdentity(p); id == nil || string(id) != pp.identity {
			delete(ps.shown, p)
		}
	}
	for p, w := range ps.wait {
		id := m.keyedIdentity(p)
		if id == nil {
			if m.identityOf(p) == nil {
				delete(ps.wait, p)
			}
			continue
		}
		delete(ps.wait, p)
		if id.Equal(w.identity) {
			_ = m.acceptPresence(p, w.p, id) // a replayed one is dropped as it would be now
		}
	}
}
