package sfu

import "github.com/oakmeet/oakmeet/signal"

// Simulcast layers are kept by quality index: 0 low, 1 medium, 2 high.
const numLayers = 3

// ridQuality maps the rids that browsers and our clients use to a quality
// index. Chrome's examples use q/h/f (quarter, half, full).
func ridQuality(rid string) (int, bool) {
	switch rid {
	case "q", "l", "low", "quarter", "0":
		return 0, true
	case "h", "m", "mid", "medium", "half", "1":
		return 1, true
	case "f", "high", "hi", "full", "2":
		return 2, true
	}
	return 0, false
}

// layerOff is the quality index of a paused subscription: nothing of the
// track is forwarded and no bandwidth is spent on it.
const layerOff = -1

// layerName maps a subscribe request's layer to a quality index.
func layerName(name string) (int, bool) {
	switch name {
	case signal.LayerOff:
		return layerOff, true
	case signal.LayerLow:
		return 0, true
	case signal.LayerMedium:
		return 1, true
	case signal.LayerHigh:
		return 2, true
	}
	return 0, false
}

// pickLayer chooses, among the available layers, the best one not above
// want; when every available layer is above want it takes the lowest. It
// returns -1 when no layer is available or want is layerOff.
func pickLayer(available [numLayers]bool, want int) int {
	if want < 0 {
		return layerOff
	}
	for q := min(want, numLayers-1); q >= 0; q-- {
		if available[q] {
			return q
		}
	}
	for q := 0; q < numLayers; q++ {
		if available[q] {
			return q
		}
	}
	return -1
}

// allocation is one video subscription as the bandwidth allocator sees it.
type allocation struct {
	want  int               // quality the subscriber asked for, layerOff when paused
	avail [numLayers]bool   // layers the publisher sends
	rate  [numLayers]uint64 // measured bits per second of each layer
}

// allocate spends a subscriber's estimated bandwidth (bits per second) over
// its video subscriptions: every subscription first gets its lowest layer,
// then subscriptions are raised one step at a time, round robin, while the
// budget allows and they stay at or below what was asked for. Paused
// subscriptions get nothing, so what they would cost goes to the others. It
// returns the highest layer each subscription may receive (-1: none).
func allocate(budget uint64, subs []allocation) []int {
	out := make([]int, len(subs))
	var spent uint64
	for i, s := range subs {
		out[i] = pickLayer(s.avail, min(s.want, 0))
		if out[i] >= 0 {
			spent += s.rate[out[i]]
		}
	}
	for raised := true; raised; {
		raised = false
		for i, s := range subs {
			cur := out[i]
			if cur < 0 {
				continue
			}
			next := -1
			for q := cur + 1; q <= min(s.want, numLayers-1); q++ {
				if s.avail[q] {
					next = q
					break
				}
			}
			if next < 0 {
				continue
			}
			cost := s.rate[next] - min(s.rate[next], s.rate[cur])
			if spent+cost > budget {
				continue
			}
			spent += cost
			out[i] = next
			raised = true
		}
	}
	return out
}
