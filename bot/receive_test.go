package bot

import (
	"testing"

	"github.com/pion/rtp"

	"github.com/oakmeet/oakmeet/e2ee/sframe"
)

func TestSeqTracker(t *testing.T) {
	cases := []struct {
		name string
		seqs []uint16
		lost int64
	}{
		{"none", nil, 0},
		{"in order", []uint16{1, 2, 3, 4}, 0},
		{"gap", []uint16{1, 2, 5, 6}, 2},
		{"reordered and duplicated", []uint16{1, 3, 2, 3, 2, 4}, 0},
		{"wrap", []uint16{65534, 65535, 0, 2}, 1},
		// 65535 is older than the first packet, across the wrap: the
		// range becomes 65535..6, eight numbers, of which four arrived.
		{"older than first across wrap", []uint16{5, 6, 65535, 4}, 4},
	}
	for _, tc := range cases {
		var s seqTracker
		for _, q := range tc.seqs {
			s.add(q)
		}
		if got := s.lost(); got != tc.lost {
			t.Errorf("%s: lost %d, want %d", tc.name, got, tc.lost)
		}
	}
}

func TestSeqTrackerLongRunConstantMemory(t *testing.T) {
	var s seqTracker
	for i := range 300000 {
		if i%1000 == 7 {
			continue // one loss per thousand
		}
		s.add(uint16(i))
	}
	if got := s.lost(); got != 300 {
		t.Fatalf("lost %d, want 300", got)
	}
}

func TestSummarize(t *testing.T) {
	var lat []float64
	for i := 100; i >= 1; i-- {
		lat = append(lat, float64(i))
	}
	l := Summarize(lat)
	if l.P50 != 50 || l.P95 != 95 || l.P99 != 99 {
		t.Fatalf("%+v", l)
	}
	if (Summarize(nil) != Latency{}) {
		t.Fatal("empty latency not zero")
	}
}

func vp8pkt(seq uint16, ts uint32, start, marker bool, data byte) *rtp.Packet {
	desc := byte(0x00)
	if start {
		desc = 0x10 // S bit, partition 0
	}
	return &rtp.Packet{Header: rtp.Header{SequenceNumber: seq, Timestamp: ts, Marker: marker}, Payload: []byte{desc, data}}
}

func TestFrameAssembler(t *testing.T) {
	var a frameAssembler
	if _, ok := a.push(vp8pkt(10, 1, true, false, 'a')); ok {
		t.Fatal("frame before marker")
	}
	if _, ok := a.push(vp8pkt(12, 1, false, true, 'c')); ok {
		t.Fatal("frame with a missing packet")
	}
	// Two packets in order, the second with the marker, make a frame.
	a = frameAssembler{}
	a.push(vp8pkt(20, 2, true, false, 'a'))
	if f, ok := a.push(vp8pkt(21, 2, false, true, 'b')); !ok || string(f) != "ab" {
		t.Fatalf("two-packet frame: %q %v", f, ok)
	}
	// Packets before the marker may arrive in any order.
	a.push(vp8pkt(24, 6, false, false, 'b'))
	a.push(vp8pkt(23, 6, true, false, 'a'))
	if f, ok := a.push(vp8pkt(25, 6, false, true, 'c')); !ok || string(f) != "abc" {
		t.Fatalf("reordered frame: %q %v", f, ok)
	}
	// A frame overtaken by the next one is dropped, the next one completes.
	a.push(vp8pkt(30, 3, true, false, 'x'))
	if f, ok := a.push(vp8pkt(32, 4, true, true, 'y')); !ok || string(f) != "y" {
		t.Fatalf("next frame: %q %v", f, ok)
	}
	// Wrap-around inside a frame.
	a.push(vp8pkt(65535, 5, true, false, '1'))
	if f, ok := a.push(vp8pkt(0, 5, false, true, '2')); !ok || string(f) != "12" {
		t.Fatalf("wrapped frame: %q %v", f, ok)
	}
	if _, ok := a.push(&rtp.Packet{Payload: nil}); ok {
		t.Fatal("empty payload made a frame")
	}
}

// TestDroppedFramesAreCountedByWhy: the same frame received twice (as on
// both connections of a bot moving make-before-break) is a replay, a
// frame under a key not held is no_key, and only a frame that fails
// authentication is a decrypt failure: what the soak's integrity verdict
// counts.
func TestDroppedFramesAreCountedByWhy(t *testing.T) {
	key := make([]byte, 16)
	s, err := sframe.NewSender(sframe.AES128GCM, 7, key)
	if err != nil {
		t.Fatal(err)
	}
	r, err := sframe.NewReceiver(sframe.AES128GCM)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddKey(7, key); err != nil {
		t.Fatal(err)
	}
	frame, err := s.Encrypt(nil, nil, []byte("opus frame"))
	if err != nil {
		t.Fatal(err)
	}
	var st TrackReport
	if _, err := r.Decrypt(nil, nil, frame); err != nil {
		t.Fatalf("first copy: %v", err)
	}
	_, err = r.Decrypt(nil, nil, frame)
	st.dropped(err)
	other, _ := sframe.NewSender(sframe.AES128GCM, 8, key)
	unknown, _ := other.Encrypt(nil, nil, []byte("opus frame"))
	_, err = r.Decrypt(nil, nil, unknown)
	st.dropped(err)
	next, _ := s.Encrypt(nil, nil, []byte("opus frame"))
	next[len(next)-1] ^= 1
	_, err = r.Decrypt(nil, nil, next)
	st.dropped(err)
	if st.Replayed != 1 || st.NoKey != 1 || st.DecryptFailures != 1 {
		t.Fatalf("replayed %d, no_key %d, decrypt_failures %d; want 1 each", st.Replayed, st.NoKey, st.DecryptFailures)
	}
}
