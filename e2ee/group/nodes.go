package group

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"slices"

	"github.com/oakmeet/oakmeet/e2ee/keymsg"
)

// Node messages: each member names the certificate of the node it is on,
// signed by its identity key. This package only checks that signature, so
// that the server cannot say a member is on another node than the member
// itself says; whether the certificate is genuine and the node allowed is
// the caller's to judge against its host-signed policy (People hands it
// the text).

// nodeClaim is a node message that verified with its sender's identity
// key.
type nodeClaim struct {
	cert     string
	identity ed25519.PublicKey
	sig      []byte
}

func (m *Member) handleNode(from string, n *keymsg.Node) error {
	if n.Meeting != m.cfg.Meeting {
		return fmt.Errorf("%w: node message of %q for %q", ErrWrongMeeting, n.Participant, n.Meeting)
	}
	if n.Participant != from {
		return fmt.Errorf("%w: %q sent a node message for %q", ErrSenderMismatch, from, n.Participant)
	}
	if m.removedPID[from] {
		return fmt.Errorf("%w: node message of %q", ErrRemoved, from)
	}
	id := m.identityOf(from)
	if id == nil {
		// It may overtake the sender's announcement (or the epoch naming
		// it): keep the newest, one per participant, until its identity is
		// known.
		if _, ok := m.nodeWait[from]; !ok && len(m.nodeWait) >= 2*keymsg.MaxRoster && !slices.Contains(m.view, from) {
			return fmt.Errorf("group: node message of %q: too many waiting", from)
		}
		m.nodeWait[from] = n
		return nil
	}
	delete(m.nodeWait, from)
	return m.acceptNode(n, id)
}

// acceptNode keeps n if it verifies with id, the sender's identity key.
func (m *Member) acceptNode(n *keymsg.Node, id ed25519.PublicKey) error {
	if c, ok := m.nodes[n.Participant]; ok && c.cert == n.Cert && c.identity.Equal(id) && bytes.Equal(c.sig, n.Signature) {
		return nil // a copy of one that verified: sent after every announcement
	}
	if err := n.Verify(id); err != nil {
		return fmt.Errorf("group: node message of %q: %w", n.Participant, err)
	}
	m.nodes[n.Participant] = nodeClaim{cert: n.Cert, identity: slices.Clone(id), sig: slices.Clone(n.Signature)}
	return nil
}

// checkWaitingNodes verifies the waiting node messages whose senders'
// identities are now known; one that fails is dropped (its sender sends
// it again after its next announcement).
func (m *Member) checkWaitingNodes() {
	for p, n := range m.nodeWait {
		if id := m.identityOf(p); id != nil {
			delete(m.nodeWait, p)
			_ = m.acceptNode(n, id)
		}
	}
}

// identityOf is p's identity key as this member verified it: from the
// announcement p sent it, else from the newest epoch naming p (the
// leader signed it, and each entry is p's own signed announcement); nil if
// neither, or if the host removed it.
func (m *Member) identityOf(p string) ed25519.PublicKey {
	if e, ok := m.heard[p]; ok {
		return e.Identity
	}
	for i := len(m.epochs) - 1; i >= 0; i-- {
		for _, e := range m.epochs[i].roster {
			if e.Participant == p && !m.removed(e) {
				return e.Identity
			}
		}
	}
	return nil
}

// nodeCert is the certificate p's verified node message names under
// identity id, "" if none.
func (m *Member) nodeCert(p string, id ed25519.PublicKey) string {
	if p == m.cfg.Participant {
		return m.cfg.NodeCert
	}
	if c, ok := m.nodes[p]; ok && id != nil && c.identity.Equal(id) {
		return c.cert
	}
	return ""
}
