package keymsg

import (
	"crypto/ed25519"
	"fmt"
	"unicode/utf8"

	"github.com/oakmeet/oakmeet/e2ee/identity"
)

// checkpointLabel starts a checkpoint message's signed bytes.
const checkpointLabel = "oakmeet-e2ee-v2 checkpoint"

// MaxCheckpointLen bounds the checkpoint text a checkpoint message carries:
// a signed checkpoint of the transparency log is a few hundred bytes, and
// the log's own reader refuses one of more than this.
const MaxCheckpointLen = 4096

// Checkpoint passes on a checkpoint of the deployment's transparency log
// that the sender holds (the signed note's text, as the control plane gave
// it), signed by the sender's identity key, so that members compare the
// logs they were shown without the server's help: one the server forked
// between them shows as two checkpoints that are not one log. Like a node
// message it is no part of any roster entry. Each receiver checks the
// checkpoint against the log's key and the checkpoints it holds; this
// package does not read it.
type Checkpoint struct {
	Meeting     string
	Participant string
	Checkpoint  string
	Signature   []byte
}

// Type implements Message.
func (*Checkpoint) Type() string { return "checkpoint" }

// NewCheckpoint signs a checkpoint message for participant in meeting,
// carrying checkpoint.
func NewCheckpoint(meeting, participant, checkpoint string, id *identity.Identity) (*Checkpoint, error) {
	c := &Checkpoint{Meeting: meeting, Participant: participant, Checkpoint: checkpoint, Signature: make([]byte, SignatureSize)}
	if err := c.check(); err != nil {
		return nil, err
	}
	c.Signature = id.Sign(checkpointTBS(meeting, participant, checkpoint))
	return c, nil
}

func (c *Checkpoint) check() error {
	if err := checkID("meeting", c.Meeting); err != nil {
		return err
	}
	if err := checkID("participant", c.Participant); err != nil {
		return err
	}
	if c.Checkpoint == "" || len(c.Checkpoint) > MaxCheckpointLen || !utf8.ValidString(c.Checkpoint) {
		return fmt.Errorf("%w: checkpoint must be 1 to %d bytes of UTF-8", ErrMalformed, MaxCheckpointLen)
	}
	return checkLen("sig", c.Signature, SignatureSize)
}

// Verify checks the structure and that the signature is by identityKey,
// the key of the participant's verified announcement or roster entry.
func (c *Checkpoint) Verify(identityKey ed25519.PublicKey) error {
	if err := c.check(); err != nil {
		return err
	}
	if len(identityKey) != IdentityKeySize || !ed25519.Verify(identityKey, checkpointTBS(c.Meeting, c.Participant, c.Checkpoint), c.Signature) {
		return fmt.Errorf("%w: checkpoint message of %q", ErrBadSignature, c.Participant)
	}
	return nil
}

// checkpointTBS is what a checkpoint message's signature covers:
// label ‖ 0x00 ‖ lp16(meeting) ‖ lp16(participant) ‖ lp16(checkpoint).
func checkpointTBS(meeting, participant, checkpoint string) []byte {
	b := make([]byte, 0, len(checkpointLabel)+1+6+len(meeting)+len(participant)+len(checkpoint))
	b = append(b, checkpointLabel...)
	b = append(b, 0)
	b = appendLP16(b, meeting)
	b = appendLP16(b, participant)
	return appendLP16(b, checkpoint)
}

type wireCheckpoint struct {
	V           int    `json:"v"`
	Type        string `json:"type"`
	Meeting     string `json:"meeting"`
	Participant string `json:"participant"`
	Checkpoint  string `json:"checkpoint"`
	Sig         string `json:"sig"`
}

func decodeCheckpoint(b []byte) (*Checkpoint, error) {
	var w wireCheckpoint
	if err := strict(b, &w); err != nil {
		return nil, err
	}
	c := &Checkpoint{Meeting: w.Meeting, Participant: w.Participant, Checkpoint: w.Checkpoint}
	var err error
	if c.Signature, err = dec("sig", w.Sig); err != nil {
		return nil, err
	}
	return c, c.check()
}
