package group

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/oakmeet/oakmeet/e2ee/mediaframe"
	"github.com/oakmeet/oakmeet/e2ee/sframe"
)

func TestKID(t *testing.T) {
	tests := []struct {
		epoch uint64
		index int
		kid   uint64
	}{
		{1, 0, 0x10000},
		{3, 1, 0x30001},
		{0xffff, 0x3ff, 0xffff03ff},
		{1<<48 - 1, 1023, 0xffffffffffff03ff},
	}
	for _, tc := range tests {
		if got := KID(tc.epoch, tc.index); got != tc.kid {
			t.Errorf("KID(%d, %d) = %#x, want %#x", tc.epoch, tc.index, got, tc.kid)
		}
		if e, i := SplitKID(tc.kid); e != tc.epoch || i != tc.index {
			t.Errorf("SplitKID(%#x) = %d, %d", tc.kid, e, i)
		}
	}
}

func TestSenderBaseKeyBounds(t *testing.T) {
	for _, i := range []int{-1, 1024} {
		if _, err := SenderBaseKey(make([]byte, 32), i); err == nil {
			t.Errorf("index %d accepted", i)
		}
	}
}

// TestWorkedExampleFrame is the example in docs/E2EE.md, from epoch secret
// to the bytes on the wire. Another implementation that reproduces it has
// the key schedule, SFrame and the clear prefix right.
func TestWorkedExampleFrame(t *testing.T) {
	secret := make([]byte, 32)
	for i := range secret {
		secret[i] = byte(i)
	}
	base, err := SenderBaseKey(secret, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(base), "d7ccc9fdcd795a9410a673f5bac932dcc171488184580343d0cf7143dc97ca59"; got != want {
		t.Fatalf("base key %s, want %s", got, want)
	}
	s, err := sframe.NewSender(sframe.AES128GCM, KID(3, 1), base)
	if err != nil {
		t.Fatal(err)
	}
	opus := []byte{0x78, 0x01, 0x02, 0x03}
	out, err := mediaframe.NewProtector(s).Protect(nil, mediaframe.Opus, opus)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("protected %x", out)
	if got := hex.EncodeToString(out); got != workedExampleFrame {
		t.Fatalf("protected %s, want %s", got, workedExampleFrame)
	}
	r, _ := sframe.NewReceiver(sframe.AES128GCM)
	if err := r.AddKey(KID(3, 1), base); err != nil {
		t.Fatal(err)
	}
	back, err := mediaframe.NewUnprotector(r).Unprotect(nil, mediaframe.Opus, out)
	if err != nil || !bytes.Equal(back, opus) {
		t.Fatalf("Unprotect = %x, %v", back, err)
	}
}

const workedExampleFrame = "78a0030001e86fd89e140f40d323b42a6b7be5e892f1a8ee"
