package sfu

import "testing"

// vp8Payload is a VP8 payload descriptor with a 15-bit PictureID,
// TL0PICIDX and TID, then one byte of VP8 payload header (key frame if key).
func vp8Payload(start, key bool, pic uint16, tl0, tid uint8) []byte {
	b0 := byte(0x80)
	if start {
		b0 |= 0x10
	}
	hdr := byte(0x01)
	if key {
		hdr = 0x00
	}
	return []byte{b0, 0xe0, 0x80 | byte(pic>>8), byte(pic), tl0, tid << 6, hdr}
}

func TestParseVP8Desc(t *testing.T) {
	p := vp8Payload(true, true, 0x1234, 77, 2)
	d, ok := parseVP8Desc(p)
	if !ok || d.picture(p) != 0x1234 || d.tl0(p) != 77 || !d.pic15 {
		t.Fatalf("parse = %+v %v, picture %#x tl0 %d", d, ok, d.picture(p), d.tl0(p))
	}
	d.setPicture(p, 0x7fff)
	d.setTL0(p, 3)
	if d.picture(p) != 0x7fff || d.tl0(p) != 3 || p[5] != 2<<6 || !vp8KeyFrameStart(p) {
		t.Fatalf("after set: % x", p)
	}
	short := []byte{0x90, 0x80, 0x05, 0x00} // 7-bit PictureID, no TL0PICIDX
	d, ok = parseVP8Desc(short)
	if !ok || d.pic15 || d.picture(short) != 5 || d.tl0At != 0 {
		t.Fatalf("7-bit parse = %+v %v", d, ok)
	}
	d.setPicture(short, 200)
	if d.picture(short) != 200&0x7f {
		t.Fatalf("7-bit set wraps: %d", d.picture(short))
	}
	for _, bad := range [][]byte{nil, {0x80}, {0x90, 0x80}, {0x90, 0x80, 0x80}, {0x90, 0xc0, 0x01}} {
		if _, ok := parseVP8Desc(bad); ok {
			t.Errorf("parseVP8Desc(% x) ok", bad)
		}
	}
	if d, ok := parseVP8Desc([]byte{0x10, 0x00}); !ok || d.picAt != 0 || d.tl0At != 0 {
		t.Errorf("no extension: %+v %v", d, ok)
	}
}

// TestRewriterVP8Continuous: across a layer switch and a pause, the
// outgoing PictureID and TL0PICIDX continue from the last ones sent, and a
// NACK for an old packet gets the offsets of its stretch.
func TestRewriterVP8Continuous(t *testing.T) {
	const clock, ms = 90000, int64(1e6)
	r := newRewriter()
	step := func(layer, target int, seq uint16, key bool, pic uint16, tl0 uint8, now int64) (uint16, uint8, bool) {
		res := r.rewrite(layer, target, seq, uint32(now/ms*90), key, true, now, clock)
		if !res.forward {
			return 0, 0, false
		}
		p, l := r.vp8(pic, tl0, res.newest)
		return p, l, true
	}
	// Layer 0 from its key frame, unchanged: nothing to continue from.
	if p, l, ok := step(0, 0, 10, true, 500, 20, 0); !ok || p != 500 || l != 20 {
		t.Fatalf("first = %d %d %v", p, l, ok)
	}
	if p, l, _ := step(0, 0, 11, false, 501, 20, 33*ms); p != 501 || l != 20 {
		t.Fatalf("delta = %d %d", p, l)
	}
	// Switch to layer 2, whose counters are elsewhere and about to wrap.
	if _, _, ok := step(2, 2, 7000, false, 32766, 255, 40*ms); ok {
		t.Fatal("switched on a delta frame")
	}
	if p, l, ok := step(2, 2, 7001, true, 32767, 255, 66*ms); !ok || p != 502 || l != 21 {
		t.Fatalf("switch = %d %d %v", p, l, ok)
	}
	if p, l, _ := step(2, 2, 7002, false, 0, 0, 99*ms); p != 503 || l != 22 {
		t.Fatalf("after wrap = %d %d", p, l)
	}
	// A late packet of the frame before does not move the counters back.
	if p, _, _ := step(2, 2, 7001, true, 32767, 255, 100*ms); p != 502 {
		t.Fatalf("late = %d", p)
	}
	if p, _, _ := step(2, 2, 7003, false, 1, 0, 132*ms); p != 504 {
		t.Fatalf("after late = %d", p)
	}
	// Pause, resume on the same layer: continues again.
	r.restart()
	if p, l, ok := step(2, 2, 7100, true, 90, 40, 2000*ms); !ok || p != 505 || l != 23 {
		t.Fatalf("resume = %d %d %v", p, l, ok)
	}
	// NACKs map back with the offsets of their stretch.
	for _, tc := range []struct {
		out     uint16
		srcPic  uint16
		wantPic uint16
	}{{11, 501, 501}, {12, 32767, 502}, {13, 0, 503}} {
		p, _, ok := r.lookupPoint(tc.out)
		if !ok {
			t.Fatalf("lookup(%d) failed", tc.out)
		}
		if got := (tc.srcPic - p.picOff) & 0x7fff; got != tc.wantPic {
			t.Errorf("retransmitted %d has picture %d, want %d", tc.out, got, tc.wantPic)
		}
	}
}
