package sframe

// ReplayWindow is how many counter values behind the newest accepted one a
// frame may arrive and still be accepted once. One KID covers every track of
// a sender (audio and video share the counter), and video can lag audio by a
// jitter buffer and a retransmission; 1024 values is several seconds of both.
const ReplayWindow = 1024

// replayWindow remembers which of the last ReplayWindow counters were
// accepted, as a ring of bits indexed by counter mod ReplayWindow.
type replayWindow struct {
	started bool
	top     uint64
	bits    [ReplayWindow / 64]uint64
}

// fresh reports whether ctr has not been accepted and is recent enough to
// tell.
func (w *replayWindow) fresh(ctr uint64) bool {
	if !w.started || ctr > w.top {
		return true
	}
	if w.top-ctr >= ReplayWindow {
		return false
	}
	slot := ctr % ReplayWindow
	return w.bits[slot/64]&(1<<(slot%64)) == 0
}

// accept records ctr; the caller has checked fresh and the tag.
func (w *replayWindow) accept(ctr uint64) {
	switch {
	case !w.started:
		w.started = true
		w.top = ctr
	case ctr > w.top:
		if ctr-w.top >= ReplayWindow {
			w.bits = [ReplayWindow / 64]uint64{}
		} else {
			// Slots between the old and new top held counters that have now
			// fallen out of the window.
			for v := w.top + 1; v < ctr; v++ {
				slot := v % ReplayWindow
				w.bits[slot/64] &^= 1 << (slot % 64)
			}
		}
		w.top = ctr
	}
	slot := ctr % ReplayWindow
	w.bits[slot/64] |= 1 << (slot % 64)
}
