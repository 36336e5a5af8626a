package group

import (
	"crypto/ed25519"
	"fmt"

	"github.com/oakmeet/oakmeet/e2ee/keymsg"
)

// Checkpoint messages: each member passes on the transparency log's
// checkpoints it holds, signed by its identity key, and hands the ones of
// others that verified to its caller (TakeCheckpoints), which checks them
// against the log's key and its own checkpoints. A server that forked the
// log between two members cannot hide it by dropping these without also
// dropping the key messages they travel with.

// maxPeerCheckpoints bounds the checkpoints of others kept until the
// caller takes them: the oldest are dropped first, as a newer one of the
// same member says more.
const maxPeerCheckpoints = 64

// PeerCheckpoint is a checkpoint another member holds, its message
// verified with that member's identity key.
type PeerCheckpoint struct {
	Participant string
	Checkpoint  string
}

// checkpointState is the member's checkpoint messages: those of others
// verified and not yet taken, and the newest of each participant whose
// identity is not known yet.
type checkpointState struct {
	verified []PeerCheckpoint
	waiting  map[string]*keymsg.Checkpoint
}

// ShareCheckpoint signs a checkpoint this member holds (a signed note of
// the transparency log, at most keymsg.MaxCheckpointLen bytes) for every
// other member.
func (m *Member) ShareCheckpoint(checkpoint string) (Outgoing, error) {
	c, err := keymsg.NewCheckpoint(m.cfg.Meeting, m.cfg.Participant, checkpoint, m.cfg.Identity)
	if err != nil {
		return Outgoing{}, fmt.Errorf("group: %w", err)
	}
	b, err := keymsg.Encode(c)
	if err != nil {
		return Outgoing{}, fmt.Errorf("group: %w", err)
	}
	return Outgoing{Payload: b}, nil
}

// TakeCheckpoints returns the checkpoints of other members verified since
// the last call, oldest first.
func (m *Member) TakeCheckpoints() []PeerCheckpoint {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.cps.verified
	m.cps.verified = nil
	return out
}

func (m *Member) handleCheckpoint(from string, c *keymsg.Checkpoint) error {
	if c.Meeting != m.cfg.Meeting {
		return fmt.Errorf("%w: checkpoint message of %q for %q", ErrWrongMeeting, c.Participant, c.Meeting)
	}
	if c.Participant != from {
		return fmt.Errorf("%w: %q sent a checkpoint message for %q", ErrSenderMismatch, from, c.Participant)
	}
	if m.removedPID[from] {
		return fmt.Errorf("%w: checkpoint message of %q", ErrRemoved, from)
	}
	id := m.identityOf(from)
	if id == nil {
		// As a node message, it may overtake the sender's announcement:
		// the newest waits, one per participant of the server's view.
		if m.cps.waiting == nil {
			m.cps.waiting = make(map[string]*keymsg.Checkpoint)
		}
		if _, ok := m.cps.waiting[from]; !ok && len(m.cps.waiting) >= 2*keymsg.MaxRoster {
			return fmt.Errorf("group: checkpoint message of %q: too many waiting", from)
		}
		m.cps.waiting[from] = c
		return nil
	}
	delete(m.cps.waiting, from)
	return m.acceptCheckpoint(c, id)
}

func (m *Member) acceptCheckpoint(c *keymsg.Checkpoint, id ed25519.PublicKey) error {
	if err := c.Verify(id); err != nil {
		return fmt.Errorf("group: checkpoint message of %q: %w", c.Participant, err)
	}
	if len(m.cps.verified) >= maxPeerCheckpoints {
		m.cps.verified = m.cps.verified[1:]
	}
	m.cps.verified = append(m.cps.verified, PeerCheckpoint{Participant: c.Participant, Checkpoint: c.Checkpoint})
	return nil
}

// checkWaitingCheckpoints verifies the waiting checkpoint messages whose
// senders' identities are now known; one that fails is dropped.
func (m *Member) checkWaitingCheckpoints() {
	for p, c := range m.cps.waiting {
		if id := m.identityOf(p); id != nil {
			delete(m.cps.waiting, p)
			_ = m.acceptCheckpoint(c, id)
		}
	}
}
