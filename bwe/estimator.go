// Package bwe estimates how fast a media node can send to one receiver,
// from that receiver's transport-wide congestion control feedback
// (draft-holmer-rmcat-transport-wide-cc-extensions-01), the way Google
// Congestion Control does (draft-ietf-rmcat-gcc-02): a delay-based
// controller that backs off when queues grow, and a loss-based one that
// backs off when more than a tenth of the packets are lost.
//
// It exists because the per-packet side is the forwarding path's hot loop:
// sending a packet takes a transport sequence number and one slot of a
// fixed ring, under one short lock, and allocates nothing. Feedback is read
// in place from the RTCP bytes. There are no goroutines: all the work of a
// feedback message is done in the call that hands it over.
//
// The package does no I/O; Interceptor plugs it into pion's RTP and RTCP
// paths.
package bwe

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Config bounds an estimate, in bits per second.
type Config struct {
	Initial int // the estimate before any feedback
	Min     int
	Max     int
}

// histSize is how many sent packets are remembered for their feedback: a
// power of two. At 5,000 packets a second (about 50 Mbit/s) it covers
// 200 ms, twice the usual feedback interval; feedback about older packets
// is ignored.
const histSize = 1024

type sentPacket struct {
	at   int64 // µs after the estimator's start, local clock
	size uint32
	seq  uint16
	live bool // sent and not yet reported on
}

// Estimator is the estimate for one receiver (one PeerConnection: the
// transport sequence numbers are shared by all its streams). It is safe
// for concurrent use.
type Estimator struct {
	cfg   Config
	start time.Time

	target atomic.Int64 // bits per second
	bad    atomic.Uint64

	// mu guards everything below. It is taken once per packet sent and
	// once per feedback message, and never held while calling out.
	mu   sync.Mutex
	next uint16
	hist [histSize]sentPacket

	haveRef bool
	lastRef uint32 // 24 bits
	ref     int64  // lastRef unwrapped, in µs of the receiver's clock

	rtt    int64  // µs, 0 until measured
	visits uint64 // statuses looked up in the history, for tests of the bound
	delay  delayController
	loss   lossController
	acked  ackedRate
}

// New returns an estimator that starts at cfg.Initial. start is the
// origin of the times later passed to it.
func New(cfg Config, start time.Time) *Estimator {
	if cfg.Min <= 0 {
		cfg.Min = 10_000
	}
	if cfg.Max < cfg.Min {
		cfg.Max = cfg.Min
	}
	cfg.Initial = min(max(cfg.Initial, cfg.Min), cfg.Max)
	e := &Estimator{cfg: cfg, start: start}
	e.delay.init(float64(cfg.Initial))
	e.loss.bitrate = float64(cfg.Initial)
	e.target.Store(int64(cfg.Initial))
	return e
}

// Target is the current estimate in bits per second.
func (e *Estimator) Target() int { return int(e.target.Load()) }

// Unreadable is how many feedback messages could not be read.
func (e *Estimator) Unreadable() uint64 { return e.bad.Load() }

// OnSend records a packet of size bytes sent at and returns the transport
// sequence number to send it with.
func (e *Estimator) OnSend(size int, at time.Time) uint16 {
	us := at.Sub(e.start).Microseconds()
	e.mu.Lock()
	seq := e.next
	e.next++
	e.hist[seq&(histSize-1)] = sentPacket{at: us, size: uint32(size), seq: seq, live: true}
	e.mu.Unlock()
	return seq
}

// OnRTCP takes a compound RTCP packet from the receiver, received at now,
// and updates the estimate from the transport-cc feedback in it. Other
// RTCP is ignored; feedback that cannot be read is counted (Unreadable)
// and changes nothing.
func (e *Estimator) OnRTCP(b []byte, now time.Time) {
	us := now.Sub(e.start).Microseconds()
	e.mu.Lock()
	defer e.mu.Unlock()
	if bad := eachFeedback(b, func(f feedback) { e.onFeedback(f, us) }); bad > 0 {
		e.bad.Add(uint64(bad))
	}
	e.target.Store(int64(math.Round(min(e.delay.target, e.loss.bitrate))))
}

// maxRefJump is the largest change of reference time between two
// feedback messages taken as the receiver's clock moving on (64 s, in
// 64 ms ticks); a larger one is a new clock, and what was measured
// against the old one starts afresh. Without the bound a receiver could
// push the unwrapped clock, message by message, until it overflowed.
const maxRefJump = 1000

// unwrap turns the feedback's 24-bit reference time into µs of the
// receiver's clock that keep counting across the wrap (every 12 days).
func (e *Estimator) unwrap(r uint32) int64 {
	d := int64((r - e.lastRef) & 0xffffff)
	if d >= 1<<23 {
		d -= 1 << 24
	}
	if !e.haveRef || d > maxRefJump || d < -maxRefJump {
		if e.haveRef {
			e.delay.cur, e.delay.prev = group{}, group{}
			e.acked = ackedRate{}
		}
		e.haveRef, e.lastRef, e.ref = true, r, int64(r)*refUnit
		return e.ref
	}
	e.lastRef = r
	e.ref += d * refUnit
	return e.ref
}

func (e *Estimator) onFeedback(f feedback, now int64) {
	ref := e.unwrap(f.reference)
	lost, total := 0, 0
	// The receiver sends feedback right after the newest arrival it
	// reports, so a packet's round trip is now minus its departure, less
	// the time it waited at the receiver for the newest one.
	minSpan, newest, any := int64(math.MaxInt64), int64(math.MinInt64), false
	status := func(seq uint16, received bool, arrival int64) {
		e.visits++
		p := &e.hist[seq&(histSize-1)]
		if !p.live || p.seq != seq {
			return // never sent, already reported, or too old
		}
		p.live = false
		total++
		if !received {
			lost++
			return
		}
		at := ref + arrival
		e.acked.add(at, int(p.size))
		e.delay.onAck(p.at, at, now, e.acked.bps(), e.rtt, e.cfg)
		minSpan = min(minSpan, now-p.at+at)
		newest = max(newest, at)
		any = true
	}
	// Of a run of lost packets only those still in the history can count:
	// at most histSize per message, whatever the run says.
	gap := func(seq uint16, n int) {
		a := int(uint16(e.next - seq)) // how many sends ago seq was
		for j := max(a-histSize, 0); j < min(a, n); j++ {
			status(seq+uint16(j), false, 0)
		}
		for j := 1<<16 + a - histSize; a < histSize && j < n; j++ {
			status(seq+uint16(j), false, 0)
		}
	}
	f.each(status, gap)
	if any {
		if rtt := minSpan - newest; rtt >= 0 {
			e.rtt = rtt
		}
	}
	e.loss.update(lost, total, now, e.cfg)
	e.loss.bitrate = min(e.loss.bitrate, e.delay.target)
}

// ackedRate is the rate at which the receiver got packets, over the last
// half second of its clock, in 25 ms buckets.
type ackedRate struct {
	stamp  [rateBuckets]int64 // bucket number + 1; 0 is empty
	bytes  [rateBuckets]int
	newest int64
	first  int64
	have   bool
}

const (
	rateBuckets = 20
	minBuckets  = 8
	bucketUs    = 25_000
)

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

func (r *ackedRate) add(at int64, size int) {
	i := floorDiv(at, bucketUs)
	if !r.have {
		r.have, r.first, r.newest = true, i, i
	}
	if i <= r.newest-rateBuckets {
		return // older than the window
	}
	s := int(((i % rateBuckets) + rateBuckets) % rateBuckets)
	if r.stamp[s] != i+1 {
		r.stamp[s], r.bytes[s] = i+1, 0
	}
	r.bytes[s] += size
	r.newest = max(r.newest, i)
}

// bps is the acked rate in bits per second, 0 before anything arrived.
func (r *ackedRate) bps() float64 {
	if !r.have {
		return 0
	}
	sum := 0
	for s := range rateBuckets {
		if i := r.stamp[s] - 1; r.stamp[s] != 0 && i > r.newest-rateBuckets && i <= r.newest {
			sum += r.bytes[s]
		}
	}
	// A young window is counted as at least 200 ms long: one frame's
	// burst is not a rate.
	span := min(max(r.newest-r.first+1, minBuckets), rateBuckets)
	return float64(sum) * 8 / (float64(span) * bucketUs / 1e6)
}
