package audit

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

func TestCheckpointText(t *testing.T) {
	l := smallLog(t)
	root, _ := l.tree.Root(l.size())
	c := Checkpoint{Origin: l.signer.Name(), Size: l.size(), Root: root}
	back, err := ParseCheckpoint(c.Text())
	if err != nil || back != c {
		t.Fatalf("ParseCheckpoint(%q) = %+v, %v", c.Text(), back, err)
	}
	for _, body := range []string{
		"",
		"o\n1\n",
		"o\n01\n" + strings.Split(c.Text(), "\n")[2] + "\n",
		"o\n-1\n" + strings.Split(c.Text(), "\n")[2] + "\n",
		"o\n1\nAAAA\n",
		"o o\n1\n" + strings.Split(c.Text(), "\n")[2] + "\n",
		"\n1\n" + strings.Split(c.Text(), "\n")[2] + "\n",
		c.Text() + "extension\n",
		strings.TrimSuffix(c.Text(), "\n"),
	} {
		if _, err := ParseCheckpoint(body); !errors.Is(err, ErrCheckpoint) {
			t.Errorf("ParseCheckpoint(%q) = %v, want ErrCheckpoint", body, err)
		}
	}
}

func TestOpenCheckpoint(t *testing.T) {
	l := smallLog(t)
	signed := l.checkpoint(l.size())
	c, err := OpenCheckpoint(signed, l.verifier)
	if err != nil || c.Size != l.size() || c.Origin != DefaultOrigin(l.key.Public().(ed25519.PublicKey)) {
		t.Fatalf("OpenCheckpoint = %+v, %v", c, err)
	}
	other := newTestLog(t, 2)
	if _, err := OpenCheckpoint(signed, other.verifier); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("another log's key: %v", err)
	}
	// The right key under another name is another log.
	renamed, _ := VerifierKey("other.origin", l.key.Public().(ed25519.PublicKey))
	rv, _ := NewVerifier(renamed)
	if _, err := OpenCheckpoint(signed, rv); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("renamed key: %v", err)
	}
	// Signed by the log's key for another origin.
	s, _ := NewSigner("other.origin", l.key)
	mis, err := note.Sign(&note.Note{Text: Checkpoint{Origin: l.signer.Name(), Size: 1}.Text()}, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenCheckpoint(mis, rv); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("origin not the signer's name: %v", err)
	}
	if _, err := SignCheckpoint(s, Checkpoint{Origin: l.signer.Name()}); err == nil {
		t.Fatal("signed a checkpoint of another origin")
	}
	if _, err := OpenCheckpoint(bytes.Repeat([]byte("x"), maxCheckpoint+1), l.verifier); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("huge: %v", err)
	}
	edited := bytes.Replace(signed, []byte("\n"+strconv.FormatInt(l.size(), 10)+"\n"), []byte("\n"+strconv.FormatInt(l.size()+1, 10)+"\n"), 1)
	if _, err := OpenCheckpoint(edited, l.verifier); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("edited size: %v", err)
	}
}

func TestCosign(t *testing.T) {
	l := smallLog(t)
	w1, v1 := testWitness(t, 5, "w1.example")
	w2, v2 := testWitness(t, 6, "w2.example")
	signed := l.checkpoint(l.size())
	one, err := Cosign(signed, l.verifier, w1)
	if err != nil {
		t.Fatal(err)
	}
	two, err := Cosign(one, l.verifier, w2) // w2 does not know w1: w1's signature stays
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenCheckpoint(two, l.verifier, v1, v2); err != nil {
		t.Fatalf("both cosignatures: %v", err)
	}
	if _, err := OpenCheckpoint(signed, l.verifier, v1); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("witness required but absent: %v", err)
	}
	again, err := Cosign(two, l.verifier, w1)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(again), "— w1.example "); n != 1 {
		t.Fatalf("cosigning twice left %d signatures", n)
	}
	other := newTestLog(t, 2)
	if _, err := Cosign(signed, other.verifier, w1); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("cosigned a checkpoint of another log: %v", err)
	}
}

func TestSplitCheckpoints(t *testing.T) {
	l := smallLog(t)
	a, b, c := l.checkpoint(3), l.checkpoint(7), l.checkpoint(9)
	w, _ := testWitness(t, 5, "w1.example")
	bw, _ := Cosign(b, l.verifier, w)
	file := string(a) + "\n\n" + string(bw) + string(c)
	got, err := SplitCheckpoints([]byte("\n" + file))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || !bytes.Equal(got[0], a) || !bytes.Equal(got[1], bw) || !bytes.Equal(got[2], c) {
		t.Fatalf("split into %q", got)
	}
	for _, cp := range got {
		if _, err := OpenCheckpoint(cp, l.verifier); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := SplitCheckpoints(nil); err != nil || len(got) != 0 {
		t.Fatalf("empty file: %q %v", got, err)
	}
	if _, err := SplitCheckpoints([]byte(string(a) + "o\n1\n")); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("unsigned tail: %v", err)
	}
	if _, err := SplitCheckpoints(bytes.Repeat([]byte("x\n"), maxCheckpoint)); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("huge: %v", err)
	}
}

func TestPublicKeyOf(t *testing.T) {
	l := smallLog(t)
	pub, err := PublicKeyOf(l.vkey)
	if err != nil || !pub.Equal(l.key.Public()) {
		t.Fatalf("PublicKeyOf = %x, %v", pub, err)
	}
	if !LogPublicKey(l.verifier).Equal(l.key.Public()) {
		t.Fatal("LogPublicKey")
	}
	for _, bad := range []string{"", "a+b", "a+b+!!", "a+00000000+AAAA", strings.Replace(l.vkey, "+A", "+B", 1)} {
		if _, err := PublicKeyOf(bad); err == nil {
			t.Errorf("PublicKeyOf(%q) succeeded", bad)
		}
		if _, err := NewVerifier(bad); err == nil {
			t.Errorf("NewVerifier(%q) succeeded", bad)
		}
	}
}

func TestPeekCheckpoint(t *testing.T) {
	l := smallLog(t)
	w, _ := testWitness(t, 5, "w1.example")
	signed, _ := Cosign(l.checkpoint(7), l.verifier, w)
	c, err := PeekCheckpoint(signed)
	if err != nil || c.Size != 7 || c.Origin != l.signer.Name() {
		t.Fatalf("PeekCheckpoint = %+v, %v", c, err)
	}
	for _, bad := range []string{"", "o\n1\n", string(signed[:20]), strings.Repeat("x", maxCheckpoint+1)} {
		if _, err := PeekCheckpoint([]byte(bad)); !errors.Is(err, ErrCheckpoint) {
			t.Errorf("PeekCheckpoint(%.40q) = %v", bad, err)
		}
	}
}
