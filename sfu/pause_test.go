package sfu

import (
	"testing"

	"github.com/oakmeet/oakmeet/signal"
)

func TestPausedSubscriptionGetsNoLayer(t *testing.T) {
	if q, ok := layerName(signal.LayerOff); !ok || q != layerOff {
		t.Fatalf("layerName(off) = %d, %v", q, ok)
	}
	if got := pickLayer([numLayers]bool{true, true, true}, layerOff); got != layerOff {
		t.Fatalf("pickLayer(all, off) = %d", got)
	}
	all := [numLayers]bool{true, true, true}
	rates := [numLayers]uint64{150_000, 500_000, 1_500_000}
	tests := []struct {
		name   string
		budget uint64
		subs   []allocation
		want   []int
	}{
		{"paused alone", 10_000_000, []allocation{{want: layerOff, avail: all, rate: rates}}, []int{-1}},
		{"paused even when starved", 10_000, []allocation{{want: layerOff, avail: all, rate: rates}, {want: 2, avail: all, rate: rates}}, []int{-1, 0}},
		// 1.6 Mbit/s buys two medium layers, or one high when the other
		// track is paused: the paused track's low layer is not paid for.
		{"paused frees its share", 1_600_000, []allocation{{want: 2, avail: all, rate: rates}, {want: layerOff, avail: all, rate: rates}}, []int{2, -1}},
		{"both wanted share", 1_600_000, []allocation{{want: 2, avail: all, rate: rates}, {want: 2, avail: all, rate: rates}}, []int{1, 1}},
		{"paused single layer", 10_000_000, []allocation{{want: layerOff, avail: [numLayers]bool{true}, rate: rates}}, []int{-1}},
	}
	for _, tc := range tests {
		got := allocate(tc.budget, tc.subs)
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: allocate = %v, want %v", tc.name, got, tc.want)
				break
			}
		}
	}
}
