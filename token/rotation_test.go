package token

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRotation(t *testing.T) {
	oldPub, oldKey, _ := ed25519.GenerateKey(nil)
	newPub, newKey, _ := ed25519.GenerateKey(nil)
	now := time.Now()
	stmt, err := SignRotation(oldKey, newPub, now)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := VerifyRotation(oldPub, stmt); err != nil || !got.Equal(newPub) {
		t.Fatalf("verify: %v", err)
	}
	// The new key vouching for itself moves nobody.
	self, _ := SignRotation(newKey, newPub, now)
	if self != "" {
		t.Fatal("a key signed its own hand-over")
	}
	forged, err := signClaims(newKey, rotationPrefix, RotationClaims{New: newPub, IssuedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{
		"signed by the new key": forged,
		"garbage":               "k1.abc.def",
		"a join token":          strings.Replace(stmt, "k1.", "v1.", 1),
		"empty":                 "",
	} {
		if _, err := VerifyRotation(oldPub, s); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := VerifyRotation(oldPub, forged); !errors.Is(err, ErrRotation) {
		t.Errorf("forged: %v, want ErrRotation", err)
	}
}

func TestFollowRotations(t *testing.T) {
	aPub, a, _ := ed25519.GenerateKey(nil)
	bPub, b, _ := ed25519.GenerateKey(nil)
	cPub, _, _ := ed25519.GenerateKey(nil)
	evilPub, evil, _ := ed25519.GenerateKey(nil)
	now := time.Now()
	ab, _ := SignRotation(a, bPub, now)
	bc, _ := SignRotation(b, cPub, now)
	aEvil, _ := SignRotation(evil, aPub, now) // a stranger's statements
	bEvil, _ := SignRotation(evil, evilPub, now)
	chain := strings.Join([]string{aEvil, ab, bEvil, bc, "junk"}, "\n")
	if got, err := FollowRotations(aPub, chain); err != nil || !got.Equal(cPub) {
		t.Fatalf("from a: %v", err)
	}
	// A node that already followed a to b continues from b.
	if got, err := FollowRotations(bPub, chain); err != nil || !got.Equal(cPub) {
		t.Fatalf("from b: %v", err)
	}
	// Nothing leads from c or from a key that signed nothing here.
	strangerPub, _, _ := ed25519.GenerateKey(nil)
	for _, k := range []ed25519.PublicKey{cPub, strangerPub} {
		if _, err := FollowRotations(k, chain); !errors.Is(err, ErrRotation) {
			t.Errorf("moved: %v", err)
		}
	}
}
