package token

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"time"
)

// A rotation statement is "k1." + base64url(payload) + "." +
// base64url(signature), built like a join token over the JSON of
// [RotationClaims] and signed by the key being retired. Nodes pin the
// control plane's token key; a statement is the only thing that moves them
// to another, and only when it verifies against the key they hold.
const rotationPrefix = "k1."

// maxRotations bounds a chain of statements a node walks.
const maxRotations = 16

// ErrRotation: a rotation statement does not lead from the pinned key.
var ErrRotation = errors.New("token: rotation statement does not verify against the pinned key")

// RotationClaims hand the token key over to New.
type RotationClaims struct {
	New      []byte    `json:"new"`
	IssuedAt time.Time `json:"iat"`
}

// SignRotation is the statement, signed by the retiring key old, that
// newPub replaces it.
func SignRotation(old ed25519.PrivateKey, newPub ed25519.PublicKey, issuedAt time.Time) (string, error) {
	if len(newPub) != ed25519.PublicKeySize {
		return "", fmt.Errorf("token: new key has %d bytes, want %d", len(newPub), ed25519.PublicKeySize)
	}
	if len(old) == ed25519.PrivateKeySize && old.Public().(ed25519.PublicKey).Equal(newPub) {
		return "", errors.New("token: a key cannot replace itself")
	}
	return signClaims(old, rotationPrefix, RotationClaims{New: newPub, IssuedAt: issuedAt.UTC()})
}

// VerifyRotation returns the key a statement signed by pinned hands over to.
// Errors wrap ErrMalformed or ErrRotation.
func VerifyRotation(pinned ed25519.PublicKey, stmt string) (ed25519.PublicKey, error) {
	var c RotationClaims
	if err := verifyClaims(pinned, rotationPrefix, stmt, &c); err != nil {
		if errors.Is(err, ErrBadSignature) {
			return nil, ErrRotation
		}
		return nil, err
	}
	if len(c.New) != ed25519.PublicKeySize || c.IssuedAt.IsZero() {
		return nil, fmt.Errorf("%w: rotation claims", ErrMalformed)
	}
	if pinned.Equal(ed25519.PublicKey(c.New)) {
		return nil, fmt.Errorf("%w: a key handed over to itself", ErrMalformed)
	}
	return ed25519.PublicKey(c.New), nil
}

// FollowRotations walks a chain of statements, one a line, oldest first,
// from pinned and returns the last key reached. A line that does not verify
// against the key reached so far is skipped: it can move nobody, whoever
// wrote it. Without any step from pinned the error wraps ErrRotation.
func FollowRotations(pinned ed25519.PublicKey, chain string) (ed25519.PublicKey, error) {
	lines := strings.Fields(chain)
	if len(lines) > maxRotations {
		lines = lines[len(lines)-maxRotations:]
	}
	key := pinned
	for _, l := range lines {
		if next, err := VerifyRotation(key, l); err == nil {
			key = next
		}
	}
	if key.Equal(pinned) {
		return nil, ErrRotation
	}
	return key, nil
}
