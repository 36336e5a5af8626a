package nodecert

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"testing"
	"time"
)

// testKey is a fixed key made from a label, so that certificates (Ed25519
// signatures are deterministic) and the golden text are stable.
func testKey(label string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(label))
	return ed25519.NewKeyFromSeed(seed[:])
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

var (
	enrollKey = testKey("enrollment")
	otherKey  = testKey("other enrollment")
	nodeKey   = testKey("node identity")
	t0        = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

func testCert() Cert {
	return Cert{
		Serial:      "0123456789abcdef0123456789abcdef",
		NodeID:      "de-fra-1",
		Country:     "DE",
		Region:      "eu-central-1",
		IdentityKey: pubOf(nodeKey),
		NotBefore:   t0,
		NotAfter:    t0.Add(90 * 24 * time.Hour),
	}
}

func mustIssue(t testing.TB, key ed25519.PrivateKey, c Cert) []byte {
	t.Helper()
	data, err := Issue(key, c)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// sealRaw signs payload bytes as they are, so that tests can check what
// Parse and Verify do with content the enrollment key did sign but Issue
// would never have produced.
func sealRaw(key ed25519.PrivateKey, tag string, payload []byte) []byte {
	sig := ed25519.Sign(key, signedBytes(tag, payload))
	return []byte(tag + "." + b64.EncodeToString(payload) + "." + b64.EncodeToString(sig))
}

// certJSON is the payload of testCert signed by enrollKey, as a map that
// tests edit and re-encode.
func certJSON(t testing.TB) map[string]any {
	t.Helper()
	m := map[string]any{}
	if err := json.Unmarshal([]byte(mustJSON(t, toWire(withKID(testCert(), enrollKey)))), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func withKID(c Cert, key ed25519.PrivateKey) Cert {
	c.EnrollmentKeyID = KeyID(pubOf(key))
	return c
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
