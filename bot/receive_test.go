package bot

import "testing"

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
		{"older than first across wrap", []uint16{5, 6, 65535, 4}, 1}, // 65535,0..6: 0,1,2,3 missing... see below
	}
	cases[5].lost = 4 // first becomes 65535 (ext -1): -1..6 is 8 numbers, 4 seen
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
	l := summarize(lat)
	if l.P50 != 50 || l.P95 != 95 || l.P99 != 99 {
		t.Fatalf("%+v", l)
	}
	if (summarize(nil) != Latency{}) {
		t.Fatal("empty latency not zero")
	}
}
