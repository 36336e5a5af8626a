package sfu

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/oakmeet/oakmeet/bwe"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// downTrack is one published track as sent to one subscriber. It is the
// webrtc.TrackLocal added to the subscriber's PeerConnection; packets are
// written to it by the publisher's layer readers and by NACK handling.
type downTrack struct {
	pub   *publishedTrack
	stats *counters
	meter *atomic.Uint64 // the meeting's forwarded bytes
	// id overrides the track id in SDP, and link counts the bytes sent,
	// for one layer of a track sent over a relay link.
	id   string
	link *atomic.Uint64

	bound atomic.Pointer[binding]

	// target is the quality index this subscriber should receive now;
	// layerOff while the subscriber has paused the track.
	target atomic.Int32
	// want (asked for by the subscriber) and cap (from bandwidth
	// estimation) are owned by the subscriber's session goroutine.
	want, cap int
	// ceiling is min(want, cap), published for the relay link a relayed
	// track came over: it asks its peer for the layers its subscribers
	// need, which may not be flowing yet (so not in target).
	ceiling atomic.Int32

	mu sync.Mutex // guards rw; never held across I/O
	rw rewriter
}

type binding struct {
	ssrc  uint32
	pt    uint8
	w     webrtc.TrackLocalWriter
	clock uint32
}

var errCodecNotNegotiated = errors.New("codec not negotiated")

func newDownTrack(pub *publishedTrack, stats *counters, meter *atomic.Uint64) *downTrack {
	d := &downTrack{pub: pub, stats: stats, meter: meter, want: numLayers - 1, cap: numLayers - 1, rw: newRewriter()}
	d.target.Store(-1)
	d.ceiling.Store(layerOff)
	return d
}

// Bind implements webrtc.TrackLocal.
func (d *downTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	for _, c := range ctx.CodecParameters() {
		if strings.EqualFold(c.MimeType, d.pub.codec.MimeType) {
			d.bound.Store(&binding{ssrc: uint32(ctx.SSRC()), pt: uint8(c.PayloadType), w: ctx.WriteStream(), clock: c.ClockRate})
			d.stats.tracksOut.Add(1)
			d.pub.requestKeyFrame(int(d.target.Load()))
			return c, nil
		}
	}
	return webrtc.RTPCodecParameters{}, errCodecNotNegotiated
}

// Unbind implements webrtc.TrackLocal.
func (d *downTrack) Unbind(webrtc.TrackLocalContext) error {
	if d.bound.Swap(nil) != nil {
		d.stats.tracksOut.Add(-1)
	}
	return nil
}

// ID implements webrtc.TrackLocal: the node-assigned track id.
func (d *downTrack) ID() string {
	if d.id != "" {
		return d.id
	}
	return d.pub.info.ID
}

// RID implements webrtc.TrackLocal; a subscriber gets one layer, no rid.
func (d *downTrack) RID() string { return "" }

// StreamID implements webrtc.TrackLocal: the publisher's participant id, so
// a browser groups a participant's audio and video in one MediaStream.
func (d *downTrack) StreamID() string { return d.pub.info.Stream }

// Kind implements webrtc.TrackLocal.
func (d *downTrack) Kind() webrtc.RTPCodecType { return d.pub.kind }

// write forwards one packet of layer if it belongs to what this subscriber
// receives. f is the caller's scratch.
func (d *downTrack) write(layer int, pkt *rtp.Packet, keyStart bool, now int64, f *forwarder) {
	b := d.bound.Load()
	if b == nil {
		return
	}
	target := int(d.target.Load())
	d.mu.Lock()
	if target < 0 {
		// Paused: what the subscriber gets after resuming starts afresh
		// (from a key frame for video), with sequence numbers and
		// timestamps continuing from the last packet sent.
		d.rw.restart()
		d.mu.Unlock()
		return
	}
	res := d.rw.rewrite(layer, target, pkt.SequenceNumber, pkt.Timestamp, keyStart, d.pub.needKeyFrames(), now, b.clock)
	var m vp8Rewrite
	if res.forward && d.pub.needKeyFrames() {
		if desc, ok := parseVP8Desc(pkt.Payload); ok {
			m.desc, m.on = desc, true
			m.pic, m.tl0 = d.rw.vp8(desc.picture(pkt.Payload), desc.tl0(pkt.Payload), res.newest)
		}
	}
	d.mu.Unlock()
	if res.wantKey {
		d.pub.requestKeyFrame(target)
	}
	if !res.forward {
		return
	}
	d.send(b, pkt, res.seq, res.ts, m, f)
}

// vp8Rewrite is the outgoing PictureID and TL0PICIDX of one VP8 packet.
type vp8Rewrite struct {
	on   bool
	desc vp8Desc
	pic  uint16
	tl0  uint8
}

func (d *downTrack) send(b *binding, pkt *rtp.Packet, seq uint16, ts uint32, m vp8Rewrite, f *forwarder) {
	hdr := &f.hdr
	payload := pkt.Payload
	if m.on && (m.desc.picAt != 0 || m.desc.tl0At != 0) && len(payload) <= len(f.payload) {
		payload = f.payload[:copy(f.payload, payload)]
		m.desc.setPicture(payload, m.pic)
		m.desc.setTL0(payload, m.tl0)
	}
	hdr.Version = 2
	hdr.Padding = pkt.Padding
	hdr.PaddingSize = pkt.PaddingSize
	hdr.Marker = pkt.Marker
	hdr.PayloadType = b.pt
	hdr.SequenceNumber = seq
	hdr.Timestamp = ts
	hdr.SSRC = b.ssrc
	hdr.CSRC = hdr.CSRC[:0]
	// Header extensions are negotiated per PeerConnection; the publisher's
	// ids mean nothing to the subscriber, so none are copied. The
	// subscriber's interceptors add their own (transport-cc).
	hdr.Extension = false
	hdr.ExtensionProfile = 0
	hdr.Extensions = hdr.Extensions[:0]
	n, err := b.w.WriteRTP(hdr, payload)
	if err != nil {
		return
	}
	if n == 0 {
		// pion drops packets without an error until the subscriber's DTLS
		// handshake is done. If the key frame a new subscription waited
		// for is among them, the subscriber would get only deltas it
		// cannot decode; wait for the next key frame instead.
		if d.pub.needKeyFrames() {
			d.mu.Lock()
			d.rw.restart()
			d.mu.Unlock()
			d.pub.requestKeyFrame(int(d.target.Load()))
		}
		return
	}
	d.stats.bytesOut.Add(uint64(n))
	d.meter.Add(uint64(n))
	if d.link != nil {
		d.link.Add(uint64(n))
	}
}

// nackScratch is the NACK responder's reusable memory.
type nackScratch struct {
	buf []byte
	f   *forwarder
}

func newNackScratch() *nackScratch {
	return &nackScratch{buf: make([]byte, maxPacket), f: newForwarder()}
}

// retransmit answers a NACK for an outgoing sequence number from the
// publisher layer's packet cache.
func (d *downTrack) retransmit(seq uint16, s *nackScratch) bool {
	b := d.bound.Load()
	if b == nil {
		return false
	}
	d.mu.Lock()
	p, src, ok := d.rw.lookupPoint(seq)
	d.mu.Unlock()
	if !ok {
		return false
	}
	l := d.pub.layers[p.layer].Load()
	if l == nil || l.cache == nil {
		return false
	}
	n := l.cache.load(src, s.buf)
	if n == 0 {
		return false
	}
	if err := s.f.pkt.Unmarshal(s.buf[:n]); err != nil {
		return false
	}
	var m vp8Rewrite
	if d.pub.needKeyFrames() {
		pl := s.f.pkt.Payload
		if desc, ok := parseVP8Desc(pl); ok {
			m = vp8Rewrite{on: true, desc: desc, pic: (desc.picture(pl) - p.picOff) & 0x7fff, tl0: desc.tl0(pl) - p.tl0Off}
		}
	}
	d.stats.retransmits.Add(1)
	d.send(b, &s.f.pkt, seq, s.f.pkt.Timestamp-p.tsOff, m, s.f)
	return true
}

// handleRTCP acts on feedback from the subscriber about this track.
func (d *downTrack) handleRTCP(pkts []rtcp.Packet, s *nackScratch) {
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.TransportLayerNack:
			d.stats.nacksIn.Add(1)
			for _, pair := range p.Nacks {
				for _, seq := range pair.PacketList() {
					d.retransmit(seq, s)
				}
			}
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			d.mu.Lock()
			cur := d.rw.current
			d.mu.Unlock()
			if cur < 0 {
				cur = int(d.target.Load())
			}
			d.pub.requestKeyFrame(cur)
		}
	}
}

// readRTCP runs until the sender stops. Reading is also what lets the
// sender's interceptors see the feedback.
func (d *downTrack) readRTCP(sender *webrtc.RTPSender) {
	s := newNackScratch()
	buf := make([]byte, maxPacket)
	for {
		n, _, err := sender.Read(buf)
		if err != nil {
			return
		}
		if bwe.OnlyFeedback(buf[:n]) {
			continue // the estimator has read it; most of a receiver's RTCP is this
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		d.handleRTCP(pkts, s)
	}
}
