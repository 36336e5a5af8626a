package keyfile

import (
	"bytes"
	"crypto/ed25519"
	"testing"
)

// FuzzParsePublic checks that any public key file text is either refused or
// a 32-byte key whose canonical text parses back to the same key.
func FuzzParsePublic(f *testing.F) {
	f.Add(EncodePublic(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32)).Public().(ed25519.PublicKey)))
	f.Add([]byte("  iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pub, err := ParsePublic(data)
		if err != nil {
			return
		}
		if len(pub) != ed25519.PublicKeySize {
			t.Fatalf("ParsePublic(%q) = %d bytes", data, len(pub))
		}
		again, err := ParsePublic(EncodePublic(pub))
		if err != nil || !bytes.Equal(again, pub) {
			t.Fatalf("ParsePublic(%q) = %x, which does not round-trip: %x, %v", data, pub, again, err)
		}
	})
}
