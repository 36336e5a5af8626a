package keymsg

import (
	"bytes"
	"crypto/ed25519"
	"fmt"

	"github.com/oakmeet/oakmeet/e2ee/identity"
)

// Ack tells the leader that Participant installed Epoch, whose signed bytes
// hash to Digest, and that every other member of its roster has announced
// itself to Participant directly. It is signed by Participant's identity
// key, so the server cannot make one up.
type Ack struct {
	Meeting     string
	Epoch       uint64
	Participant string
	Digest      []byte
	Signature   []byte
}

// Type implements Message.
func (*Ack) Type() string { return "ack" }

// NewAck signs an ack of the epoch with digest for participant.
func NewAck(meeting string, epoch uint64, participant string, digest []byte, id *identity.Identity) (*Ack, error) {
	a := &Ack{Meeting: meeting, Epoch: epoch, Participant: participant, Digest: bytes.Clone(digest)}
	a.Signature = make([]byte, SignatureSize) // a placeholder for check
	if err := a.check(); err != nil {
		return nil, err
	}
	a.Signature = id.Sign(ackTBS(meeting, epoch, participant, a.Digest))
	return a, nil
}

func (a *Ack) check() error {
	if err := checkID("meeting", a.Meeting); err != nil {
		return err
	}
	if err := checkEpoch(a.Epoch); err != nil {
		return err
	}
	if err := checkID("participant", a.Participant); err != nil {
		return err
	}
	if err := checkLen("digest", a.Digest, DigestSize); err != nil {
		return err
	}
	return checkLen("sig", a.Signature, SignatureSize)
}

// Verify checks the structure and that the signature is by identityKey
// (the key the acking participant has in the epoch's roster).
func (a *Ack) Verify(identityKey ed25519.PublicKey) error {
	if err := a.check(); err != nil {
		return err
	}
	if len(identityKey) != IdentityKeySize || !ed25519.Verify(identityKey, ackTBS(a.Meeting, a.Epoch, a.Participant, a.Digest), a.Signature) {
		return fmt.Errorf("%w: ack of epoch %d by %q", ErrBadSignature, a.Epoch, a.Participant)
	}
	return nil
}

// Commit tells everyone that every member of epoch Epoch (with Digest) has
// acked it: members may now send under it. It is signed by the leader who
// made the epoch.
type Commit struct {
	Meeting   string
	Epoch     uint64
	Digest    []byte
	Signature []byte
}

// Type implements Message.
func (*Commit) Type() string { return "commit" }

// NewCommit signs a commit of the epoch with digest with the leader's id.
func NewCommit(meeting string, epoch uint64, digest []byte, leader *identity.Identity) (*Commit, error) {
	c := &Commit{Meeting: meeting, Epoch: epoch, Digest: bytes.Clone(digest)}
	c.Signature = make([]byte, SignatureSize)
	if err := c.check(); err != nil {
		return nil, err
	}
	c.Signature = leader.Sign(commitTBS(meeting, epoch, c.Digest))
	return c, nil
}

func (c *Commit) check() error {
	if err := checkID("meeting", c.Meeting); err != nil {
		return err
	}
	if err := checkEpoch(c.Epoch); err != nil {
		return err
	}
	if err := checkLen("digest", c.Digest, DigestSize); err != nil {
		return err
	}
	return checkLen("sig", c.Signature, SignatureSize)
}

// Verify checks the structure and that the signature is by leaderKey (the
// identity key of the epoch's first roster entry).
func (c *Commit) Verify(leaderKey ed25519.PublicKey) error {
	if err := c.check(); err != nil {
		return err
	}
	if len(leaderKey) != IdentityKeySize || !ed25519.Verify(leaderKey, commitTBS(c.Meeting, c.Epoch, c.Digest), c.Signature) {
		return fmt.Errorf("%w: commit of epoch %d", ErrBadSignature, c.Epoch)
	}
	return nil
}
