package keymsg

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/sha256"
	"fmt"

	"github.com/oakmeet/oakmeet/e2ee/identity"
)

// The HPKE suite epoch secrets are sealed with (RFC 9180, base mode):
// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM.
var (
	kem  = hpke.DHKEM(ecdh.X25519())
	kdf  = hpke.HKDFSHA256()
	aead = hpke.AES128GCM()
)

// KEM is the HPKE KEM members make their per-meeting keys with.
func KEM() hpke.KEM { return kem }

// Epoch is the leader's key message: a new epoch number, the roster that
// holds it (the leader first), one sealed copy of the epoch secret per roster
// entry in the same order, and the leader's signature.
type Epoch struct {
	Meeting   string
	Epoch     uint64
	Roster    []Entry
	Sealed    [][]byte
	Signature []byte
}

// Type implements Message.
func (*Epoch) Type() string { return "epoch" }

// NewEpoch seals secret to every roster entry's HPKE key and signs the
// result with leader, who must be the first entry.
func NewEpoch(meeting string, epoch uint64, roster []Entry, secret []byte, leader *identity.Identity) (*Epoch, error) {
	m := &Epoch{Meeting: meeting, Epoch: epoch, Roster: roster}
	if err := checkLen("secret", secret, SecretSize); err != nil {
		return nil, err
	}
	if len(roster) > 0 && !bytes.Equal(roster[0].Identity, leader.Public()) {
		return nil, fmt.Errorf("%w: the leader must be the first roster entry", ErrMalformed)
	}
	info := sealInfo(meeting, epoch)
	m.Sealed = make([][]byte, len(roster))
	for i, e := range roster {
		pk, err := kem.NewPublicKey(e.HPKE)
		if err != nil {
			return nil, fmt.Errorf("%w: %w: hpke key of %q: %w", ErrSeal, ErrBadKey, e.Participant, err)
		}
		if m.Sealed[i], err = hpke.Seal(pk, kdf, aead, info, secret); err != nil {
			return nil, fmt.Errorf("%w: to %q: %w", ErrSeal, e.Participant, err)
		}
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	m.Signature = leader.Sign(epochTBS(meeting, epoch, roster, m.Sealed))
	return m, nil
}

// Leader is the entry of the member who made and signed the message.
func (m *Epoch) Leader() Entry { return m.Roster[0] }

// Index returns participant's position in the roster, or -1.
func (m *Epoch) Index(participant string) int {
	for i, e := range m.Roster {
		if e.Participant == participant {
			return i
		}
	}
	return -1
}

// check validates the structure: what Decode also enforces.
func (m *Epoch) check() error {
	if err := checkID("meeting", m.Meeting); err != nil {
		return err
	}
	if err := checkEpoch(m.Epoch); err != nil {
		return err
	}
	if len(m.Roster) == 0 || len(m.Roster) > MaxRoster {
		return fmt.Errorf("%w: roster of %d entries, want 1 to %d", ErrMalformed, len(m.Roster), MaxRoster)
	}
	if len(m.Sealed) != len(m.Roster) {
		return fmt.Errorf("%w: %d sealed copies for %d roster entries", ErrMalformed, len(m.Sealed), len(m.Roster))
	}
	seen := make(map[string]bool, len(m.Roster))
	for i, e := range m.Roster {
		if err := e.check(); err != nil {
			return fmt.Errorf("roster entry %d: %w", i, err)
		}
		if seen[e.Participant] {
			return fmt.Errorf("%w: participant %q twice in the roster", ErrMalformed, e.Participant)
		}
		seen[e.Participant] = true
		if err := checkLen("sealed copy", m.Sealed[i], SealedSize); err != nil {
			return fmt.Errorf("roster entry %d: %w", i, err)
		}
	}
	return nil
}

// Verify checks the structure, every roster entry's announcement signature
// and the leader's signature over the whole message.
func (m *Epoch) Verify() error { return m.VerifyCached(nil) }

// Digest is SHA-256 of the epoch's signed bytes: what acks and commits
// name, so that they are about exactly this roster and these sealed copies.
func (m *Epoch) Digest() [DigestSize]byte {
	return sha256.Sum256(epochTBS(m.Meeting, m.Epoch, m.Roster, m.Sealed))
}

// VerifyCached is Verify for a caller that remembers entries it verified
// before: known (if not nil) reports whether an entry, by its CacheKey, was
// verified for this meeting already, and its signature is then not checked
// again. Every other check is made.
func (m *Epoch) VerifyCached(known func(Entry) bool) error {
	if err := m.check(); err != nil {
		return err
	}
	for _, e := range m.Roster {
		if known != nil && known(e) {
			continue
		}
		if err := e.Verify(m.Meeting); err != nil {
			return err
		}
	}
	if len(m.Signature) != SignatureSize ||
		!ed25519.Verify(m.Leader().Identity, epochTBS(m.Meeting, m.Epoch, m.Roster, m.Sealed), m.Signature) {
		return fmt.Errorf("%w: epoch %d by %q", ErrBadSignature, m.Epoch, m.Leader().Participant)
	}
	return nil
}

// Open decrypts the copy sealed to roster entry i with that member's HPKE
// private key.
func (m *Epoch) Open(i int, priv hpke.PrivateKey) ([]byte, error) {
	if i < 0 || i >= len(m.Sealed) {
		return nil, fmt.Errorf("%w: no copy %d", ErrSeal, i)
	}
	secret, err := hpke.Open(priv, kdf, aead, sealInfo(m.Meeting, m.Epoch), m.Sealed[i])
	if err != nil {
		return nil, fmt.Errorf("%w: open copy %d: %w", ErrSeal, i, err)
	}
	if len(secret) != SecretSize {
		return nil, fmt.Errorf("%w: secret of %d bytes", ErrSeal, len(secret))
	}
	return secret, nil
}
