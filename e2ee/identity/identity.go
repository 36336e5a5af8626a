// Package identity holds a client's long-lived Ed25519 identity key: the key
// that signs its member announcements and, when it leads, the epoch key
// messages of a meeting. A client that keeps its identity across meetings
// (by persisting MarshalText's output) keeps the same public key.
package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// textPrefix marks the text form, so that a persisted key of another kind or
// version is refused instead of misread.
const textPrefix = "oakmeet-identity-v1:"

// ErrInvalid means a persisted identity could not be read.
var ErrInvalid = errors.New("identity: invalid")

// Identity is an Ed25519 key pair. The zero value is not usable; use
// Generate, FromSeed or UnmarshalText.
type Identity struct {
	priv ed25519.PrivateKey
}

// Generate makes a new random identity.
func Generate() (*Identity, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	return FromSeed(seed)
}

// FromSeed returns the identity whose RFC 8032 private key is seed
// (ed25519.SeedSize bytes).
func FromSeed(seed []byte) (*Identity, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: seed is %d bytes, want %d", ErrInvalid, len(seed), ed25519.SeedSize)
	}
	return &Identity{priv: ed25519.NewKeyFromSeed(seed)}, nil
}

// Public returns the public key (32 bytes).
func (id *Identity) Public() ed25519.PublicKey {
	return id.priv.Public().(ed25519.PublicKey)
}

// Sign signs msg with pure Ed25519.
func (id *Identity) Sign(msg []byte) []byte {
	return ed25519.Sign(id.priv, msg)
}

// Seed returns a copy of the private seed.
func (id *Identity) Seed() []byte {
	return id.priv.Seed()
}

// MarshalText returns "oakmeet-identity-v1:" followed by the seed in
// standard base64. It is secret: store it as one stores a password.
func (id *Identity) MarshalText() ([]byte, error) {
	if id == nil || id.priv == nil {
		return nil, fmt.Errorf("%w: empty identity", ErrInvalid)
	}
	return []byte(textPrefix + base64.StdEncoding.EncodeToString(id.priv.Seed())), nil
}

// UnmarshalText reads what MarshalText wrote.
func (id *Identity) UnmarshalText(text []byte) error {
	s, ok := strings.CutPrefix(string(text), textPrefix)
	if !ok {
		return fmt.Errorf("%w: missing %q prefix", ErrInvalid, textPrefix)
	}
	seed, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	n, err := FromSeed(seed)
	if err != nil {
		return err
	}
	*id = *n
	return nil
}
