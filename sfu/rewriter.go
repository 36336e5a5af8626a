package sfu

// seqAfter reports whether RTP sequence number a is newer than b, allowing
// for wrap-around.
func seqAfter(a, b uint16) bool { return a != b && a-b < 0x8000 }

// maxReorder is how far behind the newest forwarded packet a late packet of
// the current layer may still be forwarded.
const maxReorder = 4096

// switchPoint records where in the outgoing sequence space a layer started,
// so a NACK for an outgoing sequence number can be mapped back to the layer
// and source packet it came from.
type switchPoint struct {
	outStart uint16
	layer    int
	seqOff   uint16
	tsOff    uint32
	picOff   uint16
	tl0Off   uint8
}

// rewriter turns the packets of one or more source layers into a single
// outgoing stream with continuous sequence numbers and timestamps, so that a
// subscriber sees no jump when the forwarded simulcast layer changes. It is
// pure state; the caller serialises access.
type rewriter struct {
	started  bool
	current  int // layer being forwarded, -1 before the first packet
	seqOff   uint16
	tsOff    uint32
	floorSeq uint16 // source packets of current before this are stale
	lastSeq  uint16 // newest outgoing sequence number
	lastTS   uint32
	lastAt   int64 // nanoseconds, when lastTS was sent
	// VP8 PictureID and TL0PICIDX are rewritten like sequence numbers:
	// receivers (libwebrtc's frame reference finder) tie frames together
	// by them, and each simulcast layer counts its own.
	picOff     uint16
	tl0Off     uint8
	lastPic    uint16
	lastTL0    uint8
	picStarted bool
	picPending bool // the offsets are set from the next VP8 packet
	history    [8]switchPoint
	hist       int // number of valid entries, newest at history[(histPos-1)&7]
	histPos    int
}

func newRewriter() rewriter { return rewriter{current: -1} }

// restart makes the next packet forwarded start a layer afresh, as before
// the first packet: for video, that means waiting for a key frame. The
// outgoing sequence numbers stay continuous.
func (r *rewriter) restart() { r.current = -1 }

// rewriteResult says what to do with one source packet.
type rewriteResult struct {
	seq     uint16
	ts      uint32
	forward bool
	wantKey bool // the packet was dropped while waiting for a key frame
	newest  bool // the packet is the newest forwarded so far
}

// rewrite maps one packet of layer (source seq/ts) onto the outgoing stream.
// target is the layer the subscriber should receive; needKey says that a
// layer change may only happen on a key frame (video), and keyStart that
// this packet starts one. now is in nanoseconds and clockRate in Hz; they
// size the timestamp gap across a switch.
func (r *rewriter) rewrite(layer, target int, seq uint16, ts uint32, keyStart, needKey bool, now int64, clockRate uint32) rewriteResult {
	if layer != r.current {
		if layer != target {
			return rewriteResult{}
		}
		if needKey && !keyStart {
			return rewriteResult{wantKey: true}
		}
		r.switchTo(layer, seq, ts, now, clockRate)
	} else if seqAfter(r.floorSeq, seq) {
		return rewriteResult{}
	}
	out := rewriteResult{seq: seq - r.seqOff, ts: ts - r.tsOff, forward: true}
	if !r.started || seqAfter(out.seq, r.lastSeq) {
		r.started = true
		r.lastSeq, r.lastTS, r.lastAt = out.seq, out.ts, now
		out.newest = true
	}
	if seq-r.floorSeq > maxReorder {
		r.floorSeq = seq - maxReorder
	}
	// While waiting to move to another layer, the caller keeps asking for a
	// key frame on the target.
	out.wantKey = target != r.current && needKey
	return out
}

func (r *rewriter) switchTo(layer int, seq uint16, ts uint32, now int64, clockRate uint32) {
	if r.started {
		next := r.lastSeq + 1
		gap := uint32(1)
		if elapsed := now - r.lastAt; elapsed > 0 && clockRate > 0 {
			if g := uint64(elapsed) * uint64(clockRate) / 1e9; g > 1 {
				gap = uint32(min(g, 10*uint64(clockRate)))
			}
		}
		r.seqOff = seq - next
		r.tsOff = ts - (r.lastTS + gap)
	}
	r.current = layer
	r.floorSeq = seq
	r.picPending = true
	r.history[r.histPos&7] = switchPoint{outStart: seq - r.seqOff, layer: layer, seqOff: r.seqOff, tsOff: r.tsOff, picOff: r.picOff, tl0Off: r.tl0Off}
	r.histPos++
	r.hist = min(r.hist+1, len(r.history))
}

// vp8 maps the PictureID and TL0PICIDX of a packet rewrite forwarded onto
// the outgoing stream: the first picture after a switch or resume follows
// the last one sent, as its key frame is the first TL0 picture of the new
// stretch. newest is rewriteResult.newest.
func (r *rewriter) vp8(pic uint16, tl0 uint8, newest bool) (uint16, uint8) {
	if r.picPending {
		r.picPending = false
		if r.picStarted {
			r.picOff = pic - (r.lastPic + 1)
			r.tl0Off = tl0 - (r.lastTL0 + 1)
		}
		h := &r.history[(r.histPos-1)&7]
		h.picOff, h.tl0Off = r.picOff, r.tl0Off
	}
	outPic, outTL0 := (pic-r.picOff)&0x7fff, tl0-r.tl0Off
	if newest || !r.picStarted {
		r.picStarted = true
		r.lastPic, r.lastTL0 = outPic, outTL0
	}
	return outPic, outTL0
}

// lookup maps an outgoing sequence number back to its source layer and
// sequence number, and the timestamp offset in force for it.
func (r *rewriter) lookup(outSeq uint16) (layer int, srcSeq uint16, tsOff uint32, ok bool) {
	p, src, ok := r.lookupPoint(outSeq)
	return p.layer, src, p.tsOff, ok
}

// lookupPoint is lookup with all the offsets in force for outSeq.
func (r *rewriter) lookupPoint(outSeq uint16) (p switchPoint, srcSeq uint16, ok bool) {
	if !r.started || seqAfter(outSeq, r.lastSeq) {
		return p, 0, false
	}
	for i := 1; i <= r.hist; i++ {
		p := r.history[(r.histPos-i)&7]
		if !seqAfter(p.outStart, outSeq) {
			return p, outSeq + p.seqOff, true
		}
	}
	return switchPoint{}, 0, false
}
