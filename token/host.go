// Package token makes and checks oakmeet's credentials: host tokens, random
// secrets that give a meeting's host authority over it (the server stores
// only their hash); join tokens, short-lived Ed25519-signed claims with
// which the control plane admits a participant to one meeting on one media
// node; and relay tokens, with which it lets one node open a relay link for
// a meeting to another, naming both nodes' identity keys and the meeting's
// effective policy; and rotation statements, with which a retiring token key
// hands over to its successor. Nodes check signed tokens without asking
// anyone, against the key they pinned.
//
// A join token is "v1." + base64url(payload) + "." + base64url(signature),
// unpadded, where the payload is the JSON of [JoinClaims] and the signature
// is Ed25519 over the ASCII text "v1." + base64url(payload). A relay token
// has the same shape with the prefix "r1." and [RelayClaims].
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// hostTokenBytes is the entropy of a host token.
const hostTokenBytes = 32

// NewHostToken returns a fresh host token to give the host, and its hash to
// store. The token is 256 random bits as unpadded base64url; the hash is the
// hex SHA-256 of the token text.
func NewHostToken() (token, hash string, err error) {
	var b [hostTokenBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("token: read random bytes: %w", err)
	}
	token = base64.RawURLEncoding.EncodeToString(b[:])
	return token, HashHostToken(token), nil
}

// HashHostToken returns the hash under which a host token is stored.
func HashHostToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// CheckHostToken reports whether token hashes to hash, in time that does not
// depend on how much of the hash matches. An empty token never matches.
func CheckHostToken(token, hash string) bool {
	want, err := hex.DecodeString(hash)
	if err != nil || len(want) != sha256.Size || token == "" {
		return false
	}
	got := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], want) == 1
}
