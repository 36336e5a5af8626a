package group

import (
	"errors"
	"fmt"

	"github.com/oakmeet/oakmeet/e2ee/keymsg"
)

// ErrReplay means a presence message's seq is not above the last one
// accepted from its sender: an old one replayed, or a copy.
var ErrReplay = errors.New("group: presence replayed")

// maxPresence bounds the participants whose last presence is kept; it
// outlives their leaving, so that an old presence cannot be replayed to
// an id that appears again.
const maxPresence = 4 * keymsg.MaxRoster

// PeerPresence is another member's latest verified presence: whether its
// microphone and camera are on, its hand raised, its screen shared.
type PeerPresence struct {
	Seq                       uint64
	Mic, Camera, Hand, Screen bool
	identity                  string // the key it verified with, as bytes
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

// Presence is participant p's latest verified presence, if one came.
func (m *Member) Presence(p string) (PeerPresence, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	pp, ok := m.presence[p]
	return pp, ok
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
	id := m.identityOf(from)
	if id == nil {
		return fmt.Errorf("group: presence message of %q, who has not announced themselves", from)
	}
	if err := p.Verify(id); err != nil {
		return fmt.Errorf("group: presence message of %q: %w", from, err)
	}
	prev, ok := m.presence[from]
	if ok && prev.identity == string(id) && p.Seq <= prev.Seq {
		return fmt.Errorf("%w: seq %d of %q, %d accepted", ErrReplay, p.Seq, from, prev.Seq)
	}
	if m.presence == nil {
		m.presence = make(map[string]PeerPresence)
	}
	if !ok && len(m.presence) >= maxPresence {
		// Forget one: map order is as good as any for a bound this large.
		for k := range m.presence {
			delete(m.presence, k)
			break
		}
	}
	m.presence[from] = PeerPresence{Seq: p.Seq, Mic: p.Mic, Camera: p.Camera, Hand: p.Hand, Screen: p.Screen, identity: string(id)}
	return nil
}
