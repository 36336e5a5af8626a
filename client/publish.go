package client

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// TrackOptions describe a local track to publish.
type TrackOptions struct {
	// ID is the local track id (default "audio" or "video"); the node
	// assigns the id other participants see.
	ID string
	// Simulcast lists the rids of the layers to send, lowest quality first
	// by convention ("q", "h", "f"); video only. Empty sends one layer.
	Simulcast []string
	// Source is what the track shows (signal.Source*), declared in the
	// publish offer; empty leaves the node's default for the kind.
	Source string
}

// LocalTrack is a published track. Frames are written per layer.
type LocalTrack struct {
	s       *Session
	id      string
	source  string
	kind    webrtc.RTPCodecType
	layers  []*localLayer
	sender  *webrtc.RTPSender
	stopped atomic.Bool
	packets atomic.Int64 // RTP packets written, every layer together
}

// ErrNoLayer is returned for a rid the track does not send.
var ErrNoLayer = errors.New("client: no such layer")

// PublishAudio starts sending an Opus track.
func (s *Session) PublishAudio(o TrackOptions) (*LocalTrack, error) {
	if o.ID == "" {
		o.ID = "audio"
	}
	o.Simulcast = nil
	return s.publish(webrtc.RTPCodecTypeAudio, opusCodec, o)
}

// PublishVideo starts sending a VP8 track, as simulcast when o.Simulcast
// names layers.
func (s *Session) PublishVideo(o TrackOptions) (*LocalTrack, error) {
	if o.ID == "" {
		o.ID = "video"
	}
	return s.publish(webrtc.RTPCodecTypeVideo, vp8Codec, o)
}

func (s *Session) publish(kind webrtc.RTPCodecType, codec webrtc.RTPCodecCapability, o TrackOptions) (*LocalTrack, error) {
	t := &LocalTrack{s: s, id: o.ID, source: o.Source, kind: kind}
	rids := o.Simulcast
	if len(rids) == 0 {
		rids = []string{""}
	}
	for _, rid := range rids {
		t.layers = append(t.layers, newLocalLayer(t, codec, rid))
	}
	err := s.do(func() error {
		tr, err := s.pubPC.AddTransceiverFromTrack(t.layers[0], webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return fmt.Errorf("add %s track: %w", kind, err)
		}
		for _, l := range t.layers {
			l.transceiver = tr
		}
		for _, l := range t.layers[1:] {
			if err := tr.Sender().AddEncoding(l); err != nil {
				return fmt.Errorf("add simulcast layer %q: %w", l.rid, err)
			}
		}
		t.sender = tr.Sender()
		s.negotiate()
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.mediaWG.Add(1)
	go func() {
		defer s.mediaWG.Done()
		t.readRTCP()
	}()
	return t, nil
}

// ID is the local track id.
func (t *LocalTrack) ID() string { return t.id }

// Source is the source the track declares ("" for the kind's default).
func (t *LocalTrack) Source() string { return t.source }

// sources is the publish offer's declaration: the source of every track
// that names one, by its transceiver's mid. Called once the offer is the
// local description, so every sending transceiver has its mid.
func (s *Session) sources() map[string]string {
	var out map[string]string
	for _, tr := range s.pubPC.GetTransceivers() {
		if tr.Sender() == nil {
			continue
		}
		l, ok := tr.Sender().Track().(*localLayer)
		if !ok || l.t.source == "" || tr.Mid() == "" {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[tr.Mid()] = l.t.source
	}
	return out
}

// Layers lists the rids this track sends ("" for a track without simulcast).
func (t *LocalTrack) Layers() []string {
	out := make([]string, len(t.layers))
	for i, l := range t.layers {
		out[i] = l.rid
	}
	return out
}

// Packets is how many RTP packets the track has written, every layer
// together: a load generator's count of what it sent.
func (t *LocalTrack) Packets() int64 { return t.packets.Load() }

// WriteSample sends one encoded frame on every layer; for a simulcast track
// use WriteLayerSample to send each layer its own encoding.
func (t *LocalTrack) WriteSample(s media.Sample) error {
	for _, l := range t.layers {
		if err := l.writeSample(s); err != nil {
			return err
		}
	}
	return nil
}

// WriteLayerSample sends one encoded frame on the layer with the given rid.
func (t *LocalTrack) WriteLayerSample(rid string, s media.Sample) error {
	for _, l := range t.layers {
		if l.rid == rid {
			return l.writeSample(s)
		}
	}
	return fmt.Errorf("%w: %q", ErrNoLayer, rid)
}

// TakeKeyFrameRequest reports, once, whether the node asked for a key frame
// on the layer with the given rid since the last call. An encoder checks it
// before each frame.
func (t *LocalTrack) TakeKeyFrameRequest(rid string) bool {
	for _, l := range t.layers {
		if l.rid == rid {
			return l.keyFrameWanted.Swap(false)
		}
	}
	return false
}

// Stop unpublishes the track.
func (t *LocalTrack) Stop() error {
	if t.stopped.Swap(true) {
		return nil
	}
	return t.s.do(func() error {
		if err := t.s.pubPC.RemoveTrack(t.sender); err != nil {
			return fmt.Errorf("remove track: %w", err)
		}
		t.s.negotiate()
		return nil
	})
}

func (t *LocalTrack) readRTCP() {
	read := func(l *localLayer) {
		buf := make([]byte, 1500)
		for {
			var n int
			var err error
			if l.rid != "" {
				n, _, err = t.sender.ReadSimulcast(buf, l.rid)
			} else {
				n, _, err = t.sender.Read(buf)
			}
			if err != nil {
				return
			}
			pkts, err := rtcp.Unmarshal(buf[:n])
			if err != nil {
				continue
			}
			for _, p := range pkts {
				switch p.(type) {
				case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
					l.keyFrameWanted.Store(true)
				}
			}
		}
	}
	if len(t.layers) == 1 {
		read(t.layers[0])
		return
	}
	var wg sync.WaitGroup
	for _, l := range t.layers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			read(l)
		}()
	}
	wg.Wait()
}

// localLayer is one encoding of a local track: a webrtc.TrackLocal that
// packetizes frames itself so that it can stamp the mid and rid header
// extensions simulcast needs, and so every frame passes one place where
// Options.Transform applies.
type localLayer struct {
	t           *LocalTrack
	codec       webrtc.RTPCodecCapability
	rid         string
	transceiver *webrtc.RTPTransceiver

	keyFrameWanted atomic.Bool

	mu         sync.Mutex
	bound      bool
	ssrc       uint32
	pt         uint8
	midExt     uint8
	ridExt     uint8
	w          webrtc.TrackLocalWriter
	packetizer rtp.Packetizer
}

func newLocalLayer(t *LocalTrack, codec webrtc.RTPCodecCapability, rid string) *localLayer {
	var p rtp.Payloader = &codecs.OpusPayloader{}
	if strings.EqualFold(codec.MimeType, webrtc.MimeTypeVP8) {
		p = &codecs.VP8Payloader{}
	}
	return &localLayer{
		t: t, codec: codec, rid: rid,
		packetizer: rtp.NewPacketizer(1200, 0, 0, p, rtp.NewRandomSequencer(), codec.ClockRate),
	}
}

// Bind implements webrtc.TrackLocal.
func (l *localLayer) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	for _, c := range ctx.CodecParameters() {
		if !strings.EqualFold(c.MimeType, l.codec.MimeType) {
			continue
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.bound, l.ssrc, l.pt, l.w = true, uint32(ctx.SSRC()), uint8(c.PayloadType), ctx.WriteStream()
		for _, h := range ctx.HeaderExtensions() {
			switch h.URI {
			case sdp.SDESMidURI:
				l.midExt = uint8(h.ID)
			case sdp.SDESRTPStreamIDURI:
				l.ridExt = uint8(h.ID)
			}
		}
		return c, nil
	}
	return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
}

// Unbind implements webrtc.TrackLocal.
func (l *localLayer) Unbind(webrtc.TrackLocalContext) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bound, l.w = false, nil
	return nil
}

// ID implements webrtc.TrackLocal.
func (l *localLayer) ID() string { return l.t.id }

// RID implements webrtc.TrackLocal.
func (l *localLayer) RID() string { return l.rid }

// StreamID implements webrtc.TrackLocal.
func (l *localLayer) StreamID() string { return l.t.s.self.ID }

// Kind implements webrtc.TrackLocal.
func (l *localLayer) Kind() webrtc.RTPCodecType { return l.t.kind }

// writeSample is the single place a frame leaves the client: transform,
// packetize, stamp, send. Frames written before negotiation completes are
// dropped, as a camera's would be.
func (l *localLayer) writeSample(s media.Sample) error {
	if l.t.s.ctx.Err() != nil || l.t.stopped.Load() {
		return ErrClosed
	}
	data := s.Data
	if tf := l.t.s.opts.Transform; tf != nil {
		var err error
		if data, err = tf(l.t.id, l.t.kind, data); err != nil {
			return fmt.Errorf("transform frame: %w", err)
		}
	}
	samples := uint32(s.Duration.Seconds() * float64(l.codec.ClockRate))
	if s.Duration == 0 {
		samples = uint32(float64(l.codec.ClockRate) / 30)
	}
	l.t.s.sendMu.RLock()
	defer l.t.s.sendMu.RUnlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.bound || l.t.s.sendStopped {
		l.packetizer.SkipSamples(samples)
		return nil
	}
	mid := ""
	if l.rid != "" && l.transceiver != nil {
		mid = l.transceiver.Mid()
	}
	for _, p := range l.packetizer.Packetize(data, samples) {
		p.SSRC, p.PayloadType = l.ssrc, l.pt
		if l.rid != "" {
			if l.midExt != 0 && mid != "" {
				_ = p.Header.SetExtension(l.midExt, []byte(mid))
			}
			if l.ridExt != 0 {
				_ = p.Header.SetExtension(l.ridExt, []byte(l.rid))
			}
		}
		if _, err := l.w.WriteRTP(&p.Header, p.Payload); err != nil {
			if errors.Is(err, io.ErrClosedPipe) {
				// The transport is not up yet, or already down.
				if l.t.s.ctx.Err() != nil {
					return ErrClosed
				}
				return nil
			}
			return fmt.Errorf("write rtp: %w", err)
		}
		l.t.packets.Add(1)
	}
	return nil
}
