package keymsg

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"fmt"
	"unicode/utf8"

	"github.com/oakmeet/oakmeet/e2ee/identity"
)

// Version is the wire version, the "v" field of every message.
const Version = 2

// Limits, enforced by Decode and by the constructors.
const (
	MaxIDLen       = 256  // bytes of a meeting or participant id
	MaxNameLen     = 256  // bytes of a display name (which may be empty)
	MaxRoster      = 1024 // entries in an epoch roster
	MaxEpoch       = 1<<48 - 1
	MaxMessageSize = 1 << 20 // bytes of one encoded message
)

// Sizes of the binary fields.
const (
	IdentityKeySize = ed25519.PublicKeySize // 32
	HPKEKeySize     = 32                    // X25519 public key
	SignatureSize   = ed25519.SignatureSize // 64
	SecretSize      = 32                    // epoch secret
	SealedSize      = 32 + SecretSize + 16  // HPKE enc ‖ AES-128-GCM ciphertext ‖ tag
	DigestSize      = 32                    // SHA-256 of an epoch's signed bytes
)

// Message is one of *Announcement, *Epoch, *Ack, *Commit, *Sync, *Node,
// *Checkpoint or *Presence.
type Message interface {
	// Type is the wire "type": "announce", "epoch", "ack", "commit",
	// "sync", "node", "checkpoint" or "presence".
	Type() string
}

// Entry is a participant's signed announcement without the meeting id: one
// member of a roster. Signature is by Identity over the announcement's
// signed bytes, so an entry can be checked by anyone who knows the meeting.
type Entry struct {
	Participant string
	// Name is the display name the participant chose, signed with the
	// rest, so that the server cannot rename anyone.
	Name      string
	Identity  ed25519.PublicKey
	HPKE      []byte
	Signature []byte
}

// SameKeys reports whether e and o name the same participant with the same
// identity and HPKE keys.
func (e Entry) SameKeys(o Entry) bool {
	return e.Participant == o.Participant && bytes.Equal(e.Identity, o.Identity) && bytes.Equal(e.HPKE, o.HPKE)
}

// Same reports whether e and o are the same announcement: same participant,
// name and keys.
func (e Entry) Same(o Entry) bool { return e.SameKeys(o) && e.Name == o.Name }

// CacheKey is a string that is equal for two entries exactly when every
// signed field and the signature are equal: a verified entry's key can stand
// for its successful verification (within one meeting).
func (e Entry) CacheKey() string {
	b := make([]byte, 0, 4+len(e.Participant)+len(e.Name)+len(e.Identity)+len(e.HPKE)+len(e.Signature))
	b = appendLP16(b, e.Participant)
	b = appendLP16(b, e.Name)
	b = append(b, e.Identity...)
	b = append(b, e.HPKE...)
	return string(append(b, e.Signature...))
}

// Verify checks the entry's fields and its signature for meeting.
func (e Entry) Verify(meeting string) error {
	if err := e.check(); err != nil {
		return err
	}
	if !ed25519.Verify(e.Identity, announceTBS(meeting, &e), e.Signature) {
		return fmt.Errorf("%w: announcement of %q", ErrBadSignature, e.Participant)
	}
	return nil
}

func (e Entry) check() error {
	if err := checkID("participant", e.Participant); err != nil {
		return err
	}
	if err := checkName(e.Name); err != nil {
		return err
	}
	if err := checkLen("identity", e.Identity, IdentityKeySize); err != nil {
		return err
	}
	if err := checkLen("hpke", e.HPKE, HPKEKeySize); err != nil {
		return err
	}
	return checkLen("sig", e.Signature, SignatureSize)
}

// Announcement is what each member publishes on joining: who it is in this
// meeting and the HPKE key the leader seals epoch secrets to.
type Announcement struct {
	Meeting string
	Entry
}

// Type implements Message.
func (*Announcement) Type() string { return "announce" }

// NewAnnouncement signs an announcement for participant, shown as name, in
// meeting with id.
func NewAnnouncement(meeting, participant, name string, id *identity.Identity, hpkePublic []byte) (*Announcement, error) {
	a := &Announcement{Meeting: meeting, Entry: Entry{
		Participant: participant,
		Name:        name,
		Identity:    id.Public(),
		HPKE:        bytes.Clone(hpkePublic),
	}}
	if err := checkID("meeting", meeting); err != nil {
		return nil, err
	}
	if err := checkID("participant", participant); err != nil {
		return nil, err
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := checkLen("hpke", hpkePublic, HPKEKeySize); err != nil {
		return nil, err
	}
	a.Signature = id.Sign(announceTBS(meeting, &a.Entry))
	return a, nil
}

// Verify checks the signature and that the HPKE key can be sealed to.
func (a *Announcement) Verify() error {
	if err := checkID("meeting", a.Meeting); err != nil {
		return err
	}
	if err := a.Entry.Verify(a.Meeting); err != nil {
		return err
	}
	return checkHPKEKey(a.HPKE)
}

// Sync tells the leader that the sender already holds Epoch, made by
// Leader. It is not signed: at worst a forged one makes a leader skip epoch
// numbers.
type Sync struct {
	Meeting string
	Epoch   uint64
	Leader  string
}

// Type implements Message.
func (*Sync) Type() string { return "sync" }

func checkID(field, s string) error {
	if s == "" || len(s) > MaxIDLen || !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s must be 1 to %d bytes of UTF-8", ErrMalformed, field, MaxIDLen)
	}
	return nil
}

func checkName(s string) error {
	if len(s) > MaxNameLen || !utf8.ValidString(s) {
		return fmt.Errorf("%w: name must be at most %d bytes of UTF-8", ErrMalformed, MaxNameLen)
	}
	return nil
}

func checkLen(field string, b []byte, n int) error {
	if len(b) != n {
		return fmt.Errorf("%w: %s is %d bytes, want %d", ErrMalformed, field, len(b), n)
	}
	return nil
}

func checkEpoch(epoch uint64) error {
	if epoch == 0 || epoch > MaxEpoch {
		return fmt.Errorf("%w: epoch %d outside 1..2^48-1", ErrMalformed, epoch)
	}
	return nil
}

// lowOrderProbe is any X25519 scalar: a point of low order multiplied by a
// clamped scalar gives the all-zero output crypto/ecdh refuses, whatever the
// scalar, so one multiplication tells such points apart.
var lowOrderProbe = bytes.Repeat([]byte{0x5a}, 32)

func checkHPKEKey(pub []byte) error {
	curve := ecdh.X25519()
	pk, err := curve.NewPublicKey(pub)
	if err != nil {
		return fmt.Errorf("%w: hpke: %w", ErrBadKey, err)
	}
	probe, err := curve.NewPrivateKey(lowOrderProbe)
	if err != nil {
		return err
	}
	if _, err := probe.ECDH(pk); err != nil {
		return fmt.Errorf("%w: hpke key of low order", ErrBadKey)
	}
	return nil
}
