package keymsg

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"

	"github.com/oakmeet/oakmeet/e2ee/identity"
)

// presenceLabel starts a presence message's signed bytes.
const presenceLabel = "oakmeet-e2ee-v2 presence"

// MaxPresenceSeq bounds a presence message's sequence number: like an
// epoch number it must stay exact in a JavaScript number.
const MaxPresenceSeq = 1<<48 - 1

// Presence tells the other members whether the sender's microphone and
// camera are on, whether its hand is raised and whether it shares its
// screen, signed by the sender's identity key so that the server can
// neither fake anyone's mute nor replay an older one: receivers keep the
// highest Seq they accepted per participant and drop anything not above
// it. Like a node message it is no part of any roster entry.
type Presence struct {
	Meeting     string
	Participant string
	Seq         uint64
	Mic         bool
	Camera      bool
	Hand        bool
	Screen      bool
	Signature   []byte
}

// Type implements Message.
func (*Presence) Type() string { return "presence" }

// NewPresence signs p's fields (its Signature is replaced) with id.
func NewPresence(p Presence, id *identity.Identity) (*Presence, error) {
	p.Signature = make([]byte, SignatureSize)
	if err := p.check(); err != nil {
		return nil, err
	}
	p.Signature = id.Sign(p.tbs())
	return &p, nil
}

func (p *Presence) check() error {
	if err := checkID("meeting", p.Meeting); err != nil {
		return err
	}
	if err := checkID("participant", p.Participant); err != nil {
		return err
	}
	if p.Seq == 0 || p.Seq > MaxPresenceSeq {
		return fmt.Errorf("%w: presence seq %d outside 1..2^48-1", ErrMalformed, p.Seq)
	}
	return checkLen("sig", p.Signature, SignatureSize)
}

// Verify checks the structure and that the signature is by identityKey,
// the key the receiver's sending epoch lists for the participant (an
// announced key alone does not count, docs/E2EE.md §8.10). Whether Seq is
// new is the receiver's check.
func (p *Presence) Verify(identityKey ed25519.PublicKey) error {
	if err := p.check(); err != nil {
		return err
	}
	if len(identityKey) != IdentityKeySize || !ed25519.Verify(identityKey, p.tbs(), p.Signature) {
		return fmt.Errorf("%w: presence message of %q", ErrBadSignature, p.Participant)
	}
	return nil
}

// tbs is what a presence message's signature covers:
// label ‖ 0x00 ‖ lp16(meeting) ‖ lp16(participant) ‖ u64(seq) ‖ mic(1) ‖
// camera(1) ‖ hand(1) ‖ screen(1), each flag 0x01 for true and 0x00 for
// false.
func (p *Presence) tbs() []byte {
	b := make([]byte, 0, len(presenceLabel)+1+4+len(p.Meeting)+len(p.Participant)+8+4)
	b = append(b, presenceLabel...)
	b = append(b, 0)
	b = appendLP16(b, p.Meeting)
	b = appendLP16(b, p.Participant)
	b = binary.BigEndian.AppendUint64(b, p.Seq)
	for _, f := range []bool{p.Mic, p.Camera, p.Hand, p.Screen} {
		if f {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	return b
}

type wirePresence struct {
	V           int    `json:"v"`
	Type        string `json:"type"`
	Meeting     string `json:"meeting"`
	Participant string `json:"participant"`
	Seq         uint64 `json:"seq"`
	// Pointers, to refuse a message that leaves a flag out rather than
	// read it as off.
	Mic    *bool  `json:"mic"`
	Camera *bool  `json:"camera"`
	Hand   *bool  `json:"hand"`
	Screen *bool  `json:"screen"`
	Sig    string `json:"sig"`
}

func (p *Presence) wire() wirePresence {
	return wirePresence{Version, p.Type(), p.Meeting, p.Participant, p.Seq, &p.Mic, &p.Camera, &p.Hand, &p.Screen, enc(p.Signature)}
}

func decodePresence(b []byte) (*Presence, error) {
	var w wirePresence
	if err := strict(b, &w); err != nil {
		return nil, err
	}
	if w.Mic == nil || w.Camera == nil || w.Hand == nil || w.Screen == nil {
		return nil, fmt.Errorf("%w: presence needs mic, camera, hand and screen", ErrMalformed)
	}
	p := &Presence{Meeting: w.Meeting, Participant: w.Participant, Seq: w.Seq, Mic: *w.Mic, Camera: *w.Camera, Hand: *w.Hand, Screen: *w.Screen}
	var err error
	if p.Signature, err = dec("sig", w.Sig); err != nil {
		return nil, err
	}
	return p, p.check()
}
