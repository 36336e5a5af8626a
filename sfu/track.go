package sfu

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/oakmeet/oakmeet/signal"
)

const (
	// keyFrameInterval rate-limits key frame requests to a publisher, per layer.
	keyFrameInterval = 500 * time.Millisecond
	// videoCacheSize is the number of recent packets kept per video layer
	// for NACK; about a second of 2.5 Mbit/s video.
	videoCacheSize = 256
)

// publishedTrack is one track a participant sends, with up to numLayers
// simulcast layers, and the subscribers it is forwarded to.
type publishedTrack struct {
	info      signal.Track
	kind      webrtc.RTPCodecType
	codec     webrtc.RTPCodecCapability
	publisher string
	// writeRTCP sends feedback to the publisher's PeerConnection.
	writeRTCP func([]rtcp.Packet) error
	stats     *counters
	epoch     time.Time

	layers [numLayers]atomic.Pointer[upLayer]
	// rids and declared say which quality slot each declared simulcast
	// layer takes (planLayers); fixed when the track is created.
	rids     [numLayers]string
	declared [numLayers]bool
	// origin is the relay link the track arrived over, nil for a track of
	// a participant on this node. Tracks from a link are forwarded to
	// this node's participants only, never to another link.
	origin *link

	// sends, if not empty, are held over each frame fanned out, so that
	// its packets leave for each subscriber together.
	sends sendBatch

	// downs is the subscriber list, replaced whole (copy on write) under
	// downsMu so the packet path reads it without a lock.
	downsMu sync.Mutex
	downs   atomic.Pointer[[]*downTrack]
	closed  atomic.Bool
}

// upLayer is one incoming RTP stream (one simulcast layer) of a track.
type upLayer struct {
	quality  int
	rid      string
	ssrc     uint32
	cache    *packetCache // nil for audio: audio is not retransmitted
	bytes    atomic.Uint64
	lastPkt  atomic.Int64 // nanoseconds since epoch
	lastPLI  atomic.Int64
	rateBits atomic.Uint64 // measured bits per second (sampleRates)
	prev     uint64        // bytes at the previous rate sample; owner only
}

func newPublishedTrack(info signal.Track, codec webrtc.RTPCodecCapability, kind webrtc.RTPCodecType, writeRTCP func([]rtcp.Packet) error, stats *counters, epoch time.Time) *publishedTrack {
	p := &publishedTrack{
		info: info, kind: kind, codec: codec, publisher: info.Participant,
		writeRTCP: writeRTCP, stats: stats, epoch: epoch,
	}
	p.rids, p.declared = planLayers(info.Layers)
	return p
}

// planLayers gives each declared simulcast rid a quality slot: rids with a
// known meaning take theirs, the others fill the free slots from low to
// high in declaration order, and rids beyond numLayers are ignored. A track
// without rids has one layer, slot 0. The plan depends only on the list, so
// a node receiving the track over a relay link computes the same one.
func planLayers(rids []string) (plan [numLayers]string, declared [numLayers]bool) {
	if len(rids) == 0 {
		declared[0] = true
		return plan, declared
	}
	var rest []string
	for _, rid := range rids {
		if q, ok := ridQuality(rid); ok && !declared[q] {
			plan[q], declared[q] = rid, true
		} else {
			rest = append(rest, rid)
		}
	}
	for _, rid := range rest {
		for q := range declared {
			if !declared[q] {
				plan[q], declared[q] = rid, true
				break
			}
		}
	}
	return plan, declared
}

// quality is the slot of the layer with rid, or -1 if it was not declared.
func (p *publishedTrack) quality(rid string) int {
	for q := range p.rids {
		if p.declared[q] && p.rids[q] == rid {
			return q
		}
	}
	return -1
}

func (p *publishedTrack) isVideo() bool { return p.kind == webrtc.RTPCodecTypeVideo }

func (p *publishedTrack) needKeyFrames() bool {
	return p.isVideo() && strings.EqualFold(p.codec.MimeType, webrtc.MimeTypeVP8)
}

func (p *publishedTrack) now() int64 { return int64(time.Since(p.epoch)) }

func (p *publishedTrack) addDown(d *downTrack) {
	p.downsMu.Lock()
	defer p.downsMu.Unlock()
	var cur []*downTrack
	if old := p.downs.Load(); old != nil {
		cur = *old
	}
	next := make([]*downTrack, 0, len(cur)+1)
	next = append(append(next, cur...), d)
	p.downs.Store(&next)
}

func (p *publishedTrack) removeDown(d *downTrack) {
	p.downsMu.Lock()
	defer p.downsMu.Unlock()
	old := p.downs.Load()
	if old == nil {
		return
	}
	next := make([]*downTrack, 0, len(*old))
	for _, x := range *old {
		if x != d {
			next = append(next, x)
		}
	}
	p.downs.Store(&next)
}

// addLayer starts incoming stream q of the track; the owner has checked
// that slot q is declared and free.
func (p *publishedTrack) addLayer(q int, rid string, ssrc uint32) *upLayer {
	l := &upLayer{quality: q, rid: rid, ssrc: ssrc}
	if p.isVideo() {
		l.cache = newPacketCache(videoCacheSize)
	}
	p.layers[q].Store(l)
	return l
}

// dropLayer ends incoming stream l and reports whether the track has no
// stream left.
func (p *publishedTrack) dropLayer(l *upLayer) bool {
	p.layers[l.quality].CompareAndSwap(l, nil)
	for i := range p.layers {
		if p.layers[i].Load() != nil {
			return false
		}
	}
	return true
}

// sampleRates measures each layer's rate over the elapsed seconds since
// the previous sample; only the track's owner calls it. A relayed layer
// that brought nothing keeps its last rate: it is paused because no one
// here wanted it, and the allocator needs its cost to decide whether to
// want it again.
func (p *publishedTrack) sampleRates(elapsed float64) {
	if elapsed <= 0 {
		return
	}
	for i := range p.layers {
		if l := p.layers[i].Load(); l != nil {
			b := l.bytes.Load()
			if b == l.prev && p.origin != nil {
				continue
			}
			l.rateBits.Store(uint64(float64(b-l.prev) * 8 / elapsed))
			l.prev = b
		}
	}
}

// read is the packet path of incoming stream l until t ends: it reads into
// one buffer and one parsed packet that it reuses for its whole life. recv,
// if not nil, counts the bytes read as well.
//
// A video frame's packets come in a burst; the node's sockets are held from
// a frame's first packet to its last (the marker bit), so that each
// subscriber's copies leave together (udpbatch bounds the wait).
func (p *publishedTrack) read(l *upLayer, t *webrtc.TrackRemote, recv *atomic.Uint64) {
	f := newForwarder()
	buf := make([]byte, maxPacket)
	held := false
	defer func() {
		if held {
			p.sends.Release()
		}
	}()
	batch := len(p.sends) > 0 && p.isVideo()
	for {
		n, _, err := t.Read(buf)
		if err != nil {
			return
		}
		if f.pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		if recv != nil {
			recv.Add(uint64(n))
		}
		if batch && !held {
			p.sends.Hold()
			held = true
		}
		p.forward(l, buf[:n], f)
		if held && f.pkt.Marker {
			p.sends.Release()
			held = false
		}
	}
}

// available reports which layers have carried media recently.
func (p *publishedTrack) available(now int64) [numLayers]bool {
	var a [numLayers]bool
	for q := range p.layers {
		l := p.layers[q].Load()
		if l == nil {
			continue
		}
		last := l.lastPkt.Load()
		// A layer that has not sent yet is still offered: it was announced
		// and its first packets are usually on the way.
		a[q] = last == 0 || now-last < int64(2*time.Second)
	}
	return a
}

// allocation is the track as the bandwidth allocator sees it, for a
// subscriber that asked for want.
func (p *publishedTrack) allocation(want int, now int64) allocation {
	a := allocation{want: want, avail: p.available(now)}
	if p.origin != nil {
		// A relay link carries only the layers wanted behind it, so a
		// layer not flowing may still be had: the allocator must be free
		// to raise the subscription to it, or no one would ever ask for
		// it. Its rate is the one last measured (sampleRates keeps it
		// while the layer pauses), or nothing before it first arrived,
		// which is then learnt by trying it.
		a.avail = p.declared
	}
	for q := range p.layers {
		if l := p.layers[q].Load(); l != nil {
			a.rate[q] = l.rateBits.Load()
		}
	}
	return a
}

// requestKeyFrame asks the publisher for a key frame on one layer, at most
// once per keyFrameInterval; concurrent callers race on a CAS so only one
// sends.
func (p *publishedTrack) requestKeyFrame(quality int) {
	if !p.isVideo() || quality < 0 || quality >= numLayers {
		return
	}
	l := p.layers[quality].Load()
	if l == nil || p.closed.Load() {
		return
	}
	now := p.now()
	last := l.lastPLI.Load()
	if last != 0 && now-last < int64(keyFrameInterval) {
		return
	}
	if !l.lastPLI.CompareAndSwap(last, now) {
		return
	}
	p.stats.pliSent.Add(1)
	_ = p.writeRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: l.ssrc}})
}

// forwarder is the per-goroutine scratch of one layer's reader, so that the
// packet path allocates nothing.
type forwarder struct {
	pkt rtp.Packet
	hdr rtp.Header
	// payload holds a payload rewritten for one subscriber; the packet's
	// own is shared by all of them.
	payload []byte
}

func newForwarder() *forwarder {
	return &forwarder{hdr: rtp.Header{Extensions: make([]rtp.Extension, 0, 4)}, payload: make([]byte, maxPacket)}
}

// forward is the steady-state packet path: cache the packet for NACK, count
// it, and hand it to every subscriber. raw is the packet as received; f.pkt
// must already hold it parsed.
func (p *publishedTrack) forward(l *upLayer, raw []byte, f *forwarder) {
	now := p.now()
	l.lastPkt.Store(now)
	l.bytes.Add(uint64(len(raw)))
	p.stats.bytesIn.Add(uint64(len(raw)))
	if l.cache != nil {
		l.cache.store(f.pkt.SequenceNumber, raw)
	}
	key := p.needKeyFrames() && vp8KeyFrameStart(f.pkt.Payload)
	downs := p.downs.Load()
	if downs == nil {
		return
	}
	for _, d := range *downs {
		d.write(l.quality, &f.pkt, key, now, f)
	}
}
