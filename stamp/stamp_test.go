package stamp

import (
	"bytes"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/clip"
)

func TestVP8RoundTrip(t *testing.T) {
	now := time.Unix(1700000000, 123456789)
	frame := []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a}
	s := AppendVP8(nil, frame, now)
	if !bytes.Equal(s[:len(frame)], frame) || len(s) != len(frame)+Len {
		t.Fatalf("stamped frame %x", s)
	}
	got, ok := ReadVP8(s)
	if !ok || !got.Equal(now) {
		t.Fatalf("read %v %v", got, ok)
	}
	if _, ok := ReadVP8(frame); ok {
		t.Fatal("unstamped frame read as stamped")
	}
}

func TestOpusRoundTripKeepsDuration(t *testing.T) {
	now := time.Unix(1700000000, 42)
	c, err := clip.Audio()
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range c.Frames[:5] {
		s, err := AppendOpus(nil, f.Data, now)
		if err != nil {
			t.Fatalf("packet %d (toc %#x): %v", i, f.Data[0], err)
		}
		got, ok := ReadOpus(s)
		if !ok || !got.Equal(now) {
			t.Fatalf("packet %d: read %v %v", i, got, ok)
		}
		d0, _ := clip.OpusDuration(f.Data)
		d1, err := clip.OpusDuration(s)
		if err != nil || d0 != d1 {
			t.Fatalf("packet %d: duration %s → %s (%v)", i, d0, d1, err)
		}
		// The frame bytes are unchanged between the header and the padding.
		if !bytes.Equal(s[3:len(s)-Len], f.Data[1:]) {
			t.Fatalf("packet %d: frame data changed", i)
		}
	}
	// Code 1 packets carry two frames.
	s, err := AppendOpus(nil, []byte{0xf9, 1, 2, 3, 4}, now)
	if err != nil || s[1]&0x3f != 2 {
		t.Fatalf("code 1: %x %v", s, err)
	}
	for _, bad := range [][]byte{nil, {0xf8}, {0xfa, 1, 2}, {0xfb, 1, 2}} {
		if _, err := AppendOpus(nil, bad, now); err == nil {
			t.Errorf("%x accepted", bad)
		}
	}
	if _, ok := ReadOpus([]byte{0xf8, 1, 2, 3}); ok {
		t.Fatal("unstamped packet read as stamped")
	}
}

func FuzzRead(f *testing.F) {
	f.Add([]byte("oakT12345678"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ReadVP8(b)
		ReadOpus(b)
	})
}
