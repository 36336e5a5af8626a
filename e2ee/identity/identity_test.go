package identity

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
)

func TestRoundTripText(t *testing.T) {
	id, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	text, err := id.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(text), "oakmeet-identity-v1:") {
		t.Fatalf("text %q", text)
	}
	var back Identity
	if err := back.UnmarshalText(text); err != nil {
		t.Fatal(err)
	}
	if !back.Public().Equal(id.Public()) {
		t.Fatal("public key changed across MarshalText/UnmarshalText")
	}
	msg := []byte("hello")
	if !ed25519.Verify(id.Public(), msg, back.Sign(msg)) {
		t.Fatal("restored identity signs with another key")
	}
}

func TestFromSeedIsDeterministic(t *testing.T) {
	seed := bytes.Repeat([]byte{1}, 32)
	a, _ := FromSeed(seed)
	b, _ := FromSeed(seed)
	if !a.Public().Equal(b.Public()) || !bytes.Equal(a.Seed(), seed) {
		t.Fatal("same seed, different identity")
	}
}

func TestUnmarshalRejects(t *testing.T) {
	for _, text := range []string{
		"",
		"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",                     // no prefix
		"oakmeet-identity-v2:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=", // other version
		"oakmeet-identity-v1:AQEB",                                         // short seed
		"oakmeet-identity-v1:not base64!",
	} {
		var id Identity
		if err := id.UnmarshalText([]byte(text)); !errors.Is(err, ErrInvalid) {
			t.Errorf("UnmarshalText(%q) = %v, want ErrInvalid", text, err)
		}
	}
	if _, err := FromSeed(make([]byte, 31)); !errors.Is(err, ErrInvalid) {
		t.Errorf("FromSeed(31 bytes) = %v", err)
	}
	if _, err := (&Identity{}).MarshalText(); !errors.Is(err, ErrInvalid) {
		t.Errorf("MarshalText of zero Identity = %v", err)
	}
}
