package node

import (
	"crypto/rand"
	"strings"
)

// DefaultID is the id a node gets when its operator names none:
// "<country>-<region>" (e.g. "de-eu-central-1"), or "<country>-" and four
// random letters when it has no region either, so that two such nodes in
// one country do not collide.
func DefaultID(country, region string) string {
	suffix := region
	if suffix == "" {
		suffix = randomSuffix()
	}
	return strings.ToLower(country) + "-" + suffix
}

func randomSuffix() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
	var b [4]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)] // 32 letters: no bias
	}
	return string(b[:])
}
