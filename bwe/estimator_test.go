package bwe

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// path is a simulated network path from the node to one receiver: a
// FIFO bottleneck of capacity bits/s (0: none), a propagation delay, and
// random loss. The receiver sends transport-cc feedback every 100 ms, as
// browsers and pion do.
type path struct {
	capacity func(at int64) float64
	prop     int64 // µs, one way
	loss     float64
	buffer   int64   // µs: a packet that would queue longer is dropped (drop-tail)
	offered  float64 // what the publishers send, bits/s: the node sends min(offered, estimate)

	r        *rand.Rand
	est      *Estimator
	start    time.Time
	busy     int64 // the bottleneck is busy until then
	arrived  map[uint16]int64
	next     uint16 // first sequence number not yet reported
	clockOff int64  // the receiver's clock is not ours
	maxDelay int64  // the longest one-way delay of the last second
	delays   []int64
	sent     int // packets that entered the path
	dropped  int // packets the bottleneck's buffer had no room for
}

func newPath(capacity float64, prop time.Duration, loss, offered float64) *path {
	return &path{
		capacity: func(int64) float64 { return capacity },
		prop:     prop.Microseconds(),
		loss:     loss,
		offered:  offered,
		r:        rand.New(rand.NewPCG(7, 8)),
		est:      New(Config{Initial: 4_000_000, Min: 100_000, Max: 50_000_000}, time.Unix(1000, 0)),
		start:    time.Unix(1000, 0),
		arrived:  map[uint16]int64{},
		clockOff: 987_654_321,
		buffer:   500_000,
	}
}

func (p *path) at(us int64) time.Time { return p.start.Add(time.Duration(us) * time.Microsecond) }

// run simulates from us to us+d, a 30 fps source sending each frame as a
// burst, and returns the time reached.
func (p *path) run(from int64, d time.Duration) int64 {
	const frame, feedbackEvery = 33_333, 100_000
	end := from + d.Microseconds()
	nextFB := from + feedbackEvery
	for now := from; now < end; now += frame {
		rate := min(p.offered, float64(p.est.Target()))
		bytes := int(rate / 8 / 30)
		for bytes > 0 {
			size := min(bytes, 1200)
			bytes -= size
			seq := p.est.OnSend(size, p.at(now))
			if p.r.Float64() < p.loss {
				continue
			}
			arr := now + p.prop
			if c := p.capacity(now); c > 0 {
				if p.busy-now > p.buffer {
					p.dropped++
					continue
				}
				arr = max(arr, p.busy) + int64(float64(size*8)/c*1e6)
				p.busy = arr
			}
			p.sent++
			p.arrived[seq] = arr
			p.delays = append(p.delays, arr-now)
		}
		for nextFB <= now+frame {
			p.feedback(nextFB)
			nextFB += feedbackEvery
		}
	}
	return end
}

// feedback reports every packet that arrived by at, and the ones lost
// between them, as the receiver would; it reaches the node prop later.
func (p *path) feedback(at int64) {
	var seqs []uint16
	for s, a := range p.arrived {
		if a <= at {
			seqs = append(seqs, s)
		}
	}
	if len(seqs) == 0 {
		return
	}
	slices.SortFunc(seqs, func(a, b uint16) int { return int(int16(a-p.next)) - int(int16(b-p.next)) })
	last := seqs[len(seqs)-1]
	first := p.arrived[seqs[0]]
	for _, s := range seqs {
		first = min(first, p.arrived[s])
	}
	ref := (first + p.clockOff) / refUnit
	var rs []report
	for s := p.next; ; s++ {
		r := report{seq: s}
		if a, ok := p.arrived[s]; ok && a <= at {
			r.received = true
			r.arrival = (a + p.clockOff - ref*refUnit) / deltaUnit * deltaUnit
			delete(p.arrived, s)
		}
		rs = append(rs, r)
		if s == last {
			break
		}
	}
	p.next = last + 1
	p.est.OnRTCP(encodeFeedback(uint32(ref)&0xffffff, rs, false), p.at(at+p.prop))
	p.maxDelay = 0
	for _, d := range p.delays[max(0, len(p.delays)-300):] {
		p.maxDelay = max(p.maxDelay, d)
	}
}

func TestEstimateFallsToABottleneckAndKeepsTheQueueShort(t *testing.T) {
	// 3 Mbit/s of media for a 1 Mbit/s path with half a second of buffer.
	// The estimate starts at 4 Mbit/s, so the first seconds overflow it.
	p := newPath(1_000_000, 20*time.Millisecond, 0, 3_000_000)
	now := p.run(0, 5*time.Second)
	if got := p.est.Target(); got > 1_300_000 {
		t.Fatalf("after 5 s on a 1 Mbit/s path the estimate is %d bit/s", got)
	}
	now = p.run(now, 5*time.Second)
	dropped := p.dropped
	p.run(now, 20*time.Second)
	got := p.est.Target()
	if got < 500_000 || got > 1_300_000 {
		t.Fatalf("after 30 s on a 1 Mbit/s path the estimate is %d bit/s, want 0.5-1.3 Mbit/s", got)
	}
	if p.dropped != dropped {
		t.Fatalf("the buffer overflowed %d times in the last 20 s", p.dropped-dropped)
	}
	if p.maxDelay > 200_000 {
		t.Fatalf("one-way delay reached %d ms: the estimate keeps a queue", p.maxDelay/1000)
	}
}

func TestEstimateFollowsAPathThatNarrows(t *testing.T) {
	p := newPath(0, 20*time.Millisecond, 0, 8_000_000)
	switchAt := (15 * time.Second).Microseconds()
	p.capacity = func(at int64) float64 {
		if at < switchAt {
			return 10_000_000
		}
		return 2_000_000
	}
	now := p.run(0, 15*time.Second)
	if got := p.est.Target(); got < 4_000_000 {
		t.Fatalf("on a 10 Mbit/s path the estimate is %d bit/s", got)
	}
	p.run(now, 10*time.Second)
	if got := p.est.Target(); got > 2_600_000 || got < 1_000_000 {
		t.Fatalf("10 s after the path narrowed to 2 Mbit/s the estimate is %d bit/s", got)
	}
}

func TestEstimateGrowsOnAnOpenPath(t *testing.T) {
	p := newPath(100_000_000, 20*time.Millisecond, 0, 2_000_000)
	p.run(0, 20*time.Second)
	// The node sends less than the estimate (2 Mbit/s of media): that is
	// no sign of a narrow path, so the estimate grows past it, which is
	// what lets a subscriber move up a layer.
	if got := p.est.Target(); got < 8_000_000 {
		t.Fatalf("after 20 s on an open path the estimate is %d bit/s", got)
	}
}

func TestEstimateFallsUnderHeavyLossAndNotUnderLight(t *testing.T) {
	heavy := newPath(0, 20*time.Millisecond, 0.3, 3_000_000)
	heavy.run(0, 10*time.Second)
	if got := heavy.est.Target(); got > 1_000_000 {
		t.Fatalf("with 30 %% loss the estimate is %d bit/s after 10 s", got)
	}
	light := newPath(0, 20*time.Millisecond, 0.01, 3_000_000)
	light.run(0, 10*time.Second)
	if got := light.est.Target(); got < 4_000_000 {
		t.Fatalf("with 1 %% loss the estimate fell to %d bit/s", got)
	}
}

func TestFeedbackThatIsNotAboutSentPacketsChangesNothing(t *testing.T) {
	e := New(Config{Initial: 2_000_000, Min: 100_000, Max: 10_000_000}, time.Unix(0, 0))
	at := time.Unix(1, 0)
	// Never sent: every one lost, but the estimator has no such packets.
	lost := make([]report, 200)
	for i := range lost {
		lost[i].seq = 5000 + uint16(i)
	}
	e.OnRTCP(encodeFeedback(1, lost, true), at)
	// Unreadable.
	e.OnRTCP([]byte{0x8f, 205, 0, 1, 0, 0}, at)
	e.OnRTCP(nil, at)
	if got := e.Target(); got != 2_000_000 {
		t.Fatalf("estimate moved to %d on feedback about nothing it sent", got)
	}
	if e.Unreadable() != 1 {
		t.Fatalf("unreadable feedback counted %d times, want 1", e.Unreadable())
	}
	// A packet reported twice counts once: the second report is ignored.
	seq := e.OnSend(1000, at)
	fb := encodeFeedback(1, []report{{seq: seq}}, false)
	e.OnRTCP(fb, at)
	before := e.loss.average
	e.OnRTCP(fb, at.Add(time.Second))
	if e.loss.average != before {
		t.Fatalf("a repeated report changed the loss average from %v to %v", before, e.loss.average)
	}
}

func TestReferenceTimeUnwraps(t *testing.T) {
	e := New(Config{Initial: 1}, time.Unix(0, 0))
	if got := e.unwrap(0xfffffe); got != 0xfffffe*refUnit {
		t.Fatal(got)
	}
	if got := e.unwrap(1); got != (0xfffffe+3)*refUnit {
		t.Fatalf("across the wrap: %d", got)
	}
	if got := e.unwrap(0xffffff); got != (0xfffffe+1)*refUnit {
		t.Fatalf("a late message from before the wrap: %d", got)
	}
}

func TestConfigIsBounded(t *testing.T) {
	e := New(Config{Initial: 50, Min: 100, Max: 90}, time.Unix(0, 0))
	if e.Target() != 100 || e.cfg.Max != 100 {
		t.Fatalf("target %d max %d", e.Target(), e.cfg.Max)
	}
}

func TestSendingAllocatesNothing(t *testing.T) {
	e := New(Config{Initial: 1_000_000}, time.Unix(0, 0))
	at := time.Unix(1, 0)
	if n := testing.AllocsPerRun(1000, func() { e.OnSend(1200, at) }); n != 0 {
		t.Fatalf("OnSend allocates %v times", n)
	}
	fb := encodeFeedback(3, randomReports(rand.New(rand.NewPCG(1, 1)), 50), false)
	if n := testing.AllocsPerRun(100, func() { e.OnRTCP(fb, at) }); n != 0 {
		t.Fatalf("OnRTCP allocates %v times", n)
	}
}

func BenchmarkOnSend(b *testing.B) {
	e := New(Config{Initial: 1_000_000}, time.Unix(0, 0))
	at := time.Unix(1, 0)
	for b.Loop() {
		e.OnSend(1200, at)
	}
}

// A subscriber's feedback can say in a few bytes that 65,535 packets
// were lost. Only the packets the estimator still remembers are looked
// at, so such a message costs no more than one about real packets.
func TestALongRunOfLossesCostsNoMoreThanTheHistory(t *testing.T) {
	e := New(Config{Initial: 2_000_000, Min: 100_000, Max: 10_000_000}, time.Unix(0, 0))
	at := time.Unix(1, 0)
	for range 3000 {
		e.OnSend(1000, at)
	}
	// 65,535 statuses, all lost, from 100 packets before the oldest one
	// remembered: eight run-length chunks of 8,191 and one of 7.
	b := encodeFeedback(1, nil, true)
	binary.BigEndian.PutUint16(b[12:], 3000-histSize-100)
	binary.BigEndian.PutUint16(b[14:], 0xffff)
	b = b[:feedbackHeaderLen]
	for range 8 {
		b = binary.BigEndian.AppendUint16(b, 0x1fff)
	}
	b = binary.BigEndian.AppendUint16(b, 7)
	b = append(b, 0, 0) // to a 32-bit boundary
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)/4-1))
	e.OnRTCP(b, at)
	if e.Unreadable() != 0 {
		t.Fatal("the message was not read")
	}
	if e.visits > histSize {
		t.Fatalf("%d statuses looked up for a message about %d remembered packets", e.visits, histSize)
	}
	if e.loss.average != 1 {
		t.Fatalf("loss average %v: the remembered packets were not all counted lost", e.loss.average)
	}
	// Every remembered packet was reported on; another report of them
	// changes nothing.
	for i := range histSize {
		if e.hist[i].live {
			t.Fatalf("packet %d still waits for a report", e.hist[i].seq)
		}
	}
}

// However the reference time jumps, the unwrapped clock stays where a
// 24-bit reference can put it: a receiver cannot push it to overflow.
func TestReferenceTimeJumpsAreBounded(t *testing.T) {
	e := New(Config{Initial: 1}, time.Unix(0, 0))
	r := uint32(0)
	for i := range 100_000 {
		r = (r + 1<<23 - 1) & 0xffffff // just under half the range forward, every time
		if got := e.unwrap(r); got < 0 || got >= 1<<24*refUnit {
			t.Fatalf("after %d jumps the clock is at %d µs", i+1, got)
		}
	}
	e.unwrap(10)
	if got := e.unwrap(20); got != 20*refUnit {
		t.Fatalf("a small step after a resync: %d", got)
	}
}
