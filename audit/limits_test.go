package audit

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// TestHugeSizesAreRefused: tlog's arithmetic loops forever on sizes past
// 2^62, so a checkpoint naming such a size must be refused before any
// proof is checked against it, by parsing and by the checks themselves.
func TestHugeSizesAreRefused(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	origin := DefaultOrigin(pub)
	s, err := NewSigner(origin, priv)
	if err != nil {
		t.Fatal(err)
	}
	vk, _ := VerifierKey(origin, pub)
	v, _ := NewVerifier(vk)
	for _, size := range []int64{MaxLogSize + 1, 1<<62 + 1, 1<<63 - 1} {
		body := strings.Replace(Checkpoint{Origin: origin, Size: 1}.Text(), "\n1\n", "\n"+itoa(size)+"\n", 1)
		signed, err := note.Sign(&note.Note{Text: body}, s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := OpenCheckpoint(signed, v); !errors.Is(err, ErrCheckpoint) {
			t.Errorf("size %d: opened (%v)", size, err)
		}
		huge := Checkpoint{Origin: origin, Size: size}
		if err := CheckConsistency(Checkpoint{Origin: origin, Size: 1}, huge, nil); !errors.Is(err, ErrCheckpoint) {
			t.Errorf("size %d: consistency %v", size, err)
		}
		if err := CheckInclusion(huge, 0, []byte("x"), nil); !errors.Is(err, ErrCheckpoint) {
			t.Errorf("size %d: inclusion %v", size, err)
		}
	}
}

func itoa(n int64) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
		if n == 0 {
			return string(b)
		}
	}
}

// TestCosignKeepsAFewSignatures: junk signature lines a log adds do not
// pile up in the witness's cosigned note: it keeps the log's, its own and
// the first maxOtherSigs others.
func TestCosignKeepsAFewSignatures(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	origin := DefaultOrigin(pub)
	s, _ := NewSigner(origin, priv)
	vk, _ := VerifierKey(origin, pub)
	v, _ := NewVerifier(vk)
	signed, err := SignCheckpoint(s, Checkpoint{Origin: origin, Size: 0})
	if err != nil {
		t.Fatal(err)
	}
	wskey, wvkey, _ := note.GenerateKey(nil, "witness.example")
	ws, _ := note.NewSigner(wskey)
	wv, _ := note.NewVerifier(wvkey)
	junk := string(signed)
	for i := range 10 {
		junk += "— junk" + itoa(int64(i)) + " " + base64.StdEncoding.EncodeToString(make([]byte, 68)) + "\n"
	}
	co, err := Cosign([]byte(junk), v, ws)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(co), "\n— "); got != 2+maxOtherSigs {
		t.Fatalf("cosigned note has %d signatures, want the log's, the witness's and %d others:\n%s", got, maxOtherSigs, co)
	}
	if _, err := OpenCheckpoint(co, v, wv); err != nil {
		t.Fatal(err)
	}
}
