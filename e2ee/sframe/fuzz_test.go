package sframe

import (
	"bytes"
	"testing"
)

func FuzzParseHeader(f *testing.F) {
	for _, h := range []Header{{0, 0}, {7, 7}, {8, 0}, {291, 17767}, {1 << 63, 1<<64 - 1}} {
		f.Add(h.Append(nil))
	}
	f.Add([]byte{0x88})
	f.Add([]byte{0xff, 1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := ParseHeader(b)
		if err != nil {
			if n != 0 || h != (Header{}) {
				t.Fatalf("error %v with header %+v, length %d", err, h, n)
			}
			return
		}
		// Only minimal encodings parse, so re-encoding gives the same bytes.
		if n > len(b) || n != h.Len() || !bytes.Equal(h.Append(nil), b[:n]) {
			t.Fatalf("ParseHeader(%x) = %+v, %d: does not re-encode to its input", b, h, n)
		}
	})
}

// FuzzDecrypt feeds arbitrary frames and metadata to receivers holding one
// key. Whatever the input, Decrypt must not panic, must return plaintext only
// with a nil error, and then only for a frame the sender made.
func FuzzDecrypt(f *testing.F) {
	for _, suite := range []Suite{AES128GCM, AES128CTRHMAC32} {
		s, _ := newPair(f, suite, 5)
		for i, pt := range []string{"", "x", "a longer media frame"} {
			md := []byte("md")[:i%3]
			fr, err := s.Encrypt(nil, md, []byte(pt))
			if err != nil {
				f.Fatal(err)
			}
			f.Add(suite == AES128GCM, fr, md)
		}
	}
	f.Add(true, []byte{0x50}, []byte(nil))
	f.Fuzz(func(t *testing.T, gcm bool, frame, metadata []byte) {
		suite := AES128CTRHMAC32
		if gcm {
			suite = AES128GCM
		}
		_, r := newPair(t, suite, 5)
		dst := make([]byte, 0, len(frame)+8)
		out, err := r.Decrypt(dst, metadata, frame)
		if err != nil {
			if out != nil {
				t.Fatalf("error %v with output %x", err, out)
			}
			if !allZero(dst[:cap(dst)]) {
				t.Fatalf("error %v left bytes in dst", err)
			}
			return
		}
		// Success is only possible for an untouched seed: the same KID/CTR
		// re-encrypted must give the same frame back.
		h, _, _ := ParseHeader(frame)
		s, _ := newPair(t, suite, 5)
		s.next = h.CTR
		again, err := s.Encrypt(nil, metadata, out)
		if err != nil || !bytes.Equal(again, frame) {
			t.Fatalf("accepted a frame the sender did not make: %x", frame)
		}
	})
}
