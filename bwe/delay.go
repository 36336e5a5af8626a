package bwe

import "math"

// The delay-based controller of draft-ietf-rmcat-gcc-02 with the trendline
// filter of today's libwebrtc: packets sent within 5 ms of each other form
// a group; the change in one-way delay from group to group is accumulated,
// smoothed and fitted with a line over the last 20 groups; a slope above
// an adaptive threshold for more than 10 ms is overuse (queues are
// growing), below minus the threshold underuse. The rate controller cuts
// to 0.85 of the acked rate on overuse, holds on underuse and grows
// otherwise. Times are µs; the group clock is the receiver's.
const (
	burstUs         = 5_000
	trendWindow     = 20
	trendSmoothing  = 0.9
	trendGain       = 4.0
	maxTrendDeltas  = 60
	overuseTimeMs   = 10.0
	thresholdInit   = 12.5 // ms
	thresholdMin    = 6.0
	thresholdMax    = 600.0
	thresholdUp     = 0.0087
	thresholdDown   = 0.039
	thresholdJumpMs = 15.0
	beta            = 0.85
)

type usage int8

const (
	usageNormal usage = iota
	usageOver
	usageUnder
)

type rateState int8

const (
	stateIncrease rateState = iota
	stateDecrease
	stateHold
)

// next is the rate controller's state machine (draft-ietf-rmcat-gcc-02,
// section 6).
func (s rateState) next(u usage) rateState {
	switch u {
	case usageOver:
		return stateDecrease
	case usageUnder:
		return stateHold
	}
	if s == stateDecrease {
		return stateHold
	}
	return stateIncrease
}

type group struct {
	first, dep, arr int64 // first and last departure, last arrival
	ok              bool
}

type point struct{ x, y float64 }

type delayController struct {
	cur, prev group

	// trendline
	acc, smoothed float64
	window        [trendWindow]point
	n, at         int // points held, next slot
	origin        int64
	haveOrigin    bool
	deltas        int
	trend         float64
	prevTrend     float64

	// overuse detector
	threshold    float64
	lastThresh   int64
	haveThresh   bool
	overMs       float64 // -1: not over
	overCount    int
	lastGroupArr int64

	// rate controller
	state      rateState
	target     float64
	lastUpdate int64
	haveUpdate bool
	maxRate    ema // acked rates at which overuse was seen
}

func (d *delayController) init(initial float64) {
	d.target = initial
	d.threshold = thresholdInit
	d.overMs = -1
}

// onAck takes one packet that arrived, in feedback order: sent at dep
// (local clock), arrived at arr (receiver's clock); now is the local time
// of the feedback, acked the current acked rate.
func (d *delayController) onAck(dep, arr, now int64, acked float64, rtt int64, cfg Config) {
	g := &d.cur
	if !g.ok {
		*g = group{first: dep, dep: dep, arr: arr, ok: true}
		return
	}
	if arr < g.arr || dep < g.first {
		return // reordered: its group is gone
	}
	if dep-g.first <= burstUs {
		g.dep, g.arr = max(g.dep, dep), arr
		return
	}
	// A packet that arrives in the same burst as the group, having queued
	// no longer than it, belongs to it too (a burst through a queue).
	if ia := arr - g.arr; ia <= burstUs && ia-(dep-g.dep) < 0 {
		g.dep, g.arr = dep, arr
		return
	}
	if d.prev.ok {
		variation := float64((g.arr-d.prev.arr)-(g.dep-d.prev.dep)) / 1000
		u := d.detect(variation, g.arr)
		d.control(u, now, acked, rtt, cfg)
	}
	d.prev = *g
	*g = group{first: dep, dep: dep, arr: arr, ok: true}
}

// detect adds one group's delay variation (ms) and says what the trend is.
func (d *delayController) detect(variation float64, arr int64) usage {
	if !d.haveOrigin {
		d.origin, d.haveOrigin = arr, true
	}
	d.acc += variation
	d.smoothed = trendSmoothing*d.smoothed + (1-trendSmoothing)*d.acc
	d.window[d.at] = point{x: float64(arr-d.origin) / 1000, y: d.smoothed}
	d.at = (d.at + 1) % trendWindow
	d.n = min(d.n+1, trendWindow)
	d.deltas = min(d.deltas+1, maxTrendDeltas)
	if d.n == trendWindow {
		if s, ok := slope(d.window[:]); ok {
			d.trend = s
		}
	}
	sinceMs := 0.0
	if d.lastGroupArr != 0 {
		sinceMs = float64(arr-d.lastGroupArr) / 1000
	}
	d.lastGroupArr = arr
	if d.deltas < 2 {
		return usageNormal
	}
	m := float64(d.deltas) * d.trend * trendGain
	u := usageNormal
	switch {
	case m > d.threshold:
		if d.overMs < 0 {
			d.overMs = sinceMs / 2
		} else {
			d.overMs += sinceMs
		}
		d.overCount++
		if d.overMs > overuseTimeMs && d.overCount > 1 && d.trend >= d.prevTrend {
			d.overMs, d.overCount = 0, 0
			u = usageOver
		}
	case m < -d.threshold:
		d.overMs, d.overCount = -1, 0
		u = usageUnder
	default:
		d.overMs, d.overCount = -1, 0
	}
	d.prevTrend = d.trend
	d.adapt(m, arr)
	return u
}

// adapt moves the threshold towards |m|: quickly down, slowly up, so
// that a competing flow's delay does not starve this one, and not at all
// for a spike well beyond it.
func (d *delayController) adapt(m float64, arr int64) {
	if !d.haveThresh {
		d.lastThresh, d.haveThresh = arr, true
	}
	a := math.Abs(m)
	if a > d.threshold+thresholdJumpMs {
		d.lastThresh = arr
		return
	}
	k := thresholdUp
	if a < d.threshold {
		k = thresholdDown
	}
	dt := min(float64(arr-d.lastThresh)/1000, 100)
	d.threshold = min(max(d.threshold+k*(a-d.threshold)*dt, thresholdMin), thresholdMax)
	d.lastThresh = arr
}

// slope fits a line to the points by least squares.
func slope(ps []point) (float64, bool) {
	var sx, sy float64
	for _, p := range ps {
		sx += p.x
		sy += p.y
	}
	mx, my := sx/float64(len(ps)), sy/float64(len(ps))
	var num, den float64
	for _, p := range ps {
		num += (p.x - mx) * (p.y - my)
		den += (p.x - mx) * (p.x - mx)
	}
	if den == 0 {
		return 0, false
	}
	return num / den, true
}

func (d *delayController) control(u usage, now int64, acked float64, rtt int64, cfg Config) {
	d.state = d.state.next(u)
	switch d.state {
	case stateIncrease:
		d.target = d.increase(now, acked, rtt)
	case stateDecrease:
		d.target = d.decrease(now, acked)
	default:
		return
	}
	d.target = min(max(d.target, float64(cfg.Min)), float64(cfg.Max))
}

func (d *delayController) increase(now int64, acked float64, rtt int64) float64 {
	if !d.haveUpdate {
		d.lastUpdate, d.haveUpdate = now, true
	}
	dt := float64(now-d.lastUpdate) / 1e6
	d.lastUpdate = now
	if d.maxRate.ok && math.Abs(acked-d.maxRate.mean) <= 3*d.maxRate.dev() {
		// Near the rate that last overused: grow by about a packet per
		// response time.
		bitsPerFrame := d.target / 30
		packets := math.Ceil(bitsPerFrame / (1200 * 8))
		response := 0.1 + float64(rtt)/1e6
		alpha := 0.5 * min(dt/response, 1)
		return min(d.target+max(1000, alpha*bitsPerFrame/packets), max(d.target, 1.5*acked))
	}
	// Far from it: grow by 8 % a second, but not past 1.5 times what the
	// receiver gets unless that is below the target already (a sender
	// that sends less than it may is not a sign of a narrower path).
	rate := d.target * math.Pow(1.08, min(dt, 1))
	if r := 1.5 * acked; rate > r && r > d.target {
		rate = r
	}
	return max(rate, d.target)
}

func (d *delayController) decrease(now int64, acked float64) float64 {
	d.lastUpdate, d.haveUpdate = now, true
	if acked <= 0 {
		return beta * d.target
	}
	d.maxRate.add(acked)
	return min(beta*acked, d.target)
}

// ema is an exponential moving average with its variance.
type ema struct {
	mean, variance float64
	ok             bool
}

const emaAlpha = 0.95

func (a *ema) add(v float64) {
	if !a.ok {
		a.mean, a.ok = v, true
		return
	}
	x := v - a.mean
	a.mean += emaAlpha * x
	a.variance = (1 - emaAlpha) * (a.variance + emaAlpha*x*x)
}

func (a *ema) dev() float64 { return math.Sqrt(a.variance) }

// lossController is GCC's loss-based controller: above 10 % loss the
// estimate falls by half the loss, below 2 % it may grow 5 % every
// 200 ms. The delay-based estimate caps it.
type lossController struct {
	bitrate                    float64
	average                    float64
	lastUpdate                 int64
	lastIncrease, lastDecrease int64
	have, increased, decreased bool
}

const (
	lossIncreaseBelow = 0.02
	lossDecreaseAbove = 0.1
	lossStepUs        = 200_000
	lossGrowth        = 1.05
	lossTauMs         = 200.0
)

func (l *lossController) update(lost, total int, now int64, cfg Config) {
	if total == 0 {
		return
	}
	ratio := float64(lost) / float64(total)
	if !l.have {
		l.average, l.have = ratio, true
	} else {
		ms := float64(now-l.lastUpdate) / 1000
		l.average = ratio + math.Exp(-ms/lossTauMs)*(l.average-ratio)
	}
	l.lastUpdate = now
	hi, lo := max(l.average, ratio), min(l.average, ratio)
	switch {
	case hi < lossIncreaseBelow && (!l.increased || now-l.lastIncrease > lossStepUs):
		l.lastIncrease, l.increased = now, true
		l.bitrate *= lossGrowth
	case lo > lossDecreaseAbove && (!l.decreased || now-l.lastDecrease > lossStepUs):
		l.lastDecrease, l.decreased = now, true
		l.bitrate *= 1 - 0.5*lo
	}
	l.bitrate = min(max(l.bitrate, float64(cfg.Min)), float64(cfg.Max))
}
