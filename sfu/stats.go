package sfu

import (
	"sync/atomic"
	"time"
)

// Load is a node's current load, reported to the control plane for placement.
type Load struct {
	Participants  int
	Meetings      int
	TracksIn      int
	TracksOut     int
	BitrateInBps  uint64
	BitrateOutBps uint64
}

// counters are the SFU's atomic gauges and totals.
type counters struct {
	participants atomic.Int64
	tracksIn     atomic.Int64
	tracksOut    atomic.Int64
	bytesIn      atomic.Uint64
	bytesOut     atomic.Uint64
	pliSent      atomic.Uint64
	nacksIn      atomic.Uint64
	retransmits  atomic.Uint64

	// rates are sampled once per rateInterval by the SFU's meter goroutine.
	rateIn, rateOut atomic.Uint64
	lastIn, lastOut uint64
}

const rateInterval = time.Second

func (c *counters) sample(elapsed time.Duration) {
	in, out := c.bytesIn.Load(), c.bytesOut.Load()
	secs := elapsed.Seconds()
	if secs <= 0 {
		return
	}
	c.rateIn.Store(uint64(float64(in-c.lastIn) * 8 / secs))
	c.rateOut.Store(uint64(float64(out-c.lastOut) * 8 / secs))
	c.lastIn, c.lastOut = in, out
}

// Stats are cumulative RTCP and forwarding totals, for metrics and tests.
type Stats struct {
	BytesIn, BytesOut uint64
	PLISent           uint64
	NACKsIn           uint64
	Retransmits       uint64
}
