package sfu_test

import (
	"context"
	"encoding/binary"
	"flag"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/sfu/sfutest"
)

// endToEndParallel is how many end-to-end tests run at once unless
// -parallel says otherwise. They spend their time waiting for media paced in
// real time, not on the CPU, so more of them than there are cores overlap
// well. Tests that count goroutines do not call t.Parallel: they run before
// any parallel test starts.
const endToEndParallel = 4

func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", strconv.Itoa(endToEndParallel))
	}
	os.Exit(m.Run())
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// participant is a test client with everything it receives recorded.
type participant struct {
	t    *testing.T
	s    *client.Session
	recv *collector
	pub  *mediaSource
}

func join(t *testing.T, srv *sfutest.Server, meeting, id string, opts client.Options) *participant {
	t.Helper()
	opts.LoopbackOnly = true
	if opts.NodeKey == nil {
		// Every node SDP is checked as a verifying client checks it.
		opts.NodeKey = srv.IdentityKey
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	jr := client.JoinResult{ParticipantID: id, Node: client.NodeInfo{ID: "n1", URL: srv.URL}, Token: sfutest.Token(meeting, id, "name-"+id)}
	s, err := client.Connect(ctx, jr, opts)
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	p := &participant{t: t, s: s, recv: newCollector(s)}
	t.Cleanup(p.close)
	t.Cleanup(func() {
		if t.Failed() {
			p.recv.dump(t, id)
			err, ok := srv.Result(id)
			t.Logf("%s: Serve returned %v (%v)", id, err, ok)
		}
	})
	return p
}

func (p *participant) close() {
	if p.pub != nil {
		p.pub.stop()
	}
	_ = p.s.Close()
	p.recv.wait()
}

// mediaSource sends synthetic Opus and VP8 frames. VP8 frames carry a real
// VP8 payload header (key frame bit) followed by the layer's rid and a frame
// counter, so receivers can tell layers and key frames apart.
type mediaSource struct {
	audio, video *client.LocalTrack
	cancel       context.CancelFunc
	done         chan struct{}
	once         sync.Once
}

type mediaOpts struct {
	simulcast  []string
	frameBytes int
	layerBytes map[string]int // frame size by rid, instead of frameBytes
	keyEvery   int            // a periodic key frame every n frames; 0: only on request
	noAudio    bool
}

func (p *participant) publish(o mediaOpts) *mediaSource {
	t := p.t
	t.Helper()
	if o.frameBytes == 0 {
		o.frameBytes = 600
	}
	m := &mediaSource{done: make(chan struct{})}
	var err error
	if !o.noAudio {
		if m.audio, err = p.s.PublishAudio(client.TrackOptions{}); err != nil {
			t.Fatalf("publish audio: %v", err)
		}
	}
	if m.video, err = p.s.PublishVideo(client.TrackOptions{Simulcast: o.simulcast}); err != nil {
		t.Fatalf("publish video: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go m.run(ctx, o)
	p.pub = m
	return m
}

func (m *mediaSource) stop() {
	m.once.Do(func() {
		m.cancel()
		<-m.done
	})
}

func vp8Frame(key bool, rid string, n uint32, size int) []byte {
	f := make([]byte, size)
	if key {
		copy(f, []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00})
	} else {
		copy(f, []byte{0x11, 0x02, 0x00})
	}
	off := 10
	f[off] = layerByte(rid)
	binary.BigEndian.PutUint32(f[off+1:], n)
	return f
}

func layerByte(rid string) byte {
	if rid == "" {
		return '-'
	}
	return rid[0]
}

func (m *mediaSource) run(ctx context.Context, o mediaOpts) {
	defer close(m.done)
	video := time.NewTicker(33 * time.Millisecond)
	defer video.Stop()
	audio := time.NewTicker(20 * time.Millisecond)
	defer audio.Stop()
	layers := m.video.Layers()
	var n uint32
	for {
		select {
		case <-ctx.Done():
			return
		case <-audio.C:
			if m.audio != nil {
				_ = m.audio.WriteSample(media.Sample{Data: make([]byte, 60), Duration: 20 * time.Millisecond})
			}
		case <-video.C:
			n++
			for _, rid := range layers {
				key := m.video.TakeKeyFrameRequest(rid) || (o.keyEvery > 0 && n%uint32(o.keyEvery) == 0)
				size := o.frameBytes
				if b, ok := o.layerBytes[rid]; ok {
					size = b
				}
				_ = m.video.WriteLayerSample(rid, media.Sample{Data: vp8Frame(key, rid, n, size), Duration: 33 * time.Millisecond})
			}
		}
	}
}

// collector records what one client receives.
type collector struct {
	mu      sync.Mutex
	tracks  map[string]*trackStats // by node track id
	events  []client.Event
	readers sync.WaitGroup
	done    chan struct{}
}

type trackStats struct {
	publisher  string
	kind       webrtc.RTPCodecType
	added      time.Time
	firstKey   time.Time
	packets    int
	keyFrames  int
	seqs       map[uint16]bool
	layers     map[byte]int // packets per layer byte, first packets of frames only
	lastLayer  byte
	ended      bool
	removed    bool
	seqOrder   []uint16
	firstIsKey bool // the first video packet received started a key frame
	ssrc       uint32
	keySeqs    map[uint16]bool // sequence numbers of packets that started key frames
	arrivals   []time.Time     // when each packet was read
}

func newCollector(s *client.Session) *collector {
	c := &collector{tracks: map[string]*trackStats{}, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for e := range s.Events() {
			c.mu.Lock()
			c.events = append(c.events, e)
			switch e.Type {
			case client.EventTrackAdded:
				ts := &trackStats{publisher: e.Info.Participant, kind: e.Track.Kind(), added: time.Now(), seqs: map[uint16]bool{}, keySeqs: map[uint16]bool{}, layers: map[byte]int{}, ssrc: uint32(e.Track.SSRC())}
				c.tracks[e.Info.ID] = ts
				c.readers.Add(1)
				go c.read(e.Track, ts)
			case client.EventTrackRemoved:
				if ts := c.tracks[e.Info.ID]; ts != nil {
					ts.removed = true
				}
			}
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *collector) wait() {
	<-c.done
	c.readers.Wait()
}

func (c *collector) read(tr *webrtc.TrackRemote, ts *trackStats) {
	defer c.readers.Done()
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			c.mu.Lock()
			ts.ended = true
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		if ts.packets == 0 && ts.kind == webrtc.RTPCodecTypeVideo {
			ts.firstIsKey = len(pkt.Payload) > 1 && pkt.Payload[0]&0x10 != 0 && pkt.Payload[1]&0x01 == 0
		}
		ts.packets++
		ts.arrivals = append(ts.arrivals, time.Now())
		ts.seqs[pkt.SequenceNumber] = true
		ts.seqOrder = append(ts.seqOrder, pkt.SequenceNumber)
		if ts.kind == webrtc.RTPCodecTypeVideo && len(pkt.Payload) > 11 && pkt.Payload[0]&0x10 != 0 {
			if pkt.Payload[1]&0x01 == 0 {
				ts.keyFrames++
				ts.keySeqs[pkt.SequenceNumber] = true
				if ts.firstKey.IsZero() {
					ts.firstKey = time.Now()
				}
			}
			ts.layers[pkt.Payload[11]]++
			ts.lastLayer = pkt.Payload[11]
		}
		c.mu.Unlock()
	}
}

// stats returns a copy of the stats of the track of publisher and kind.
func (c *collector) stats(publisher string, kind webrtc.RTPCodecType) (trackStats, string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, ts := range c.tracks {
		if ts.publisher == publisher && ts.kind == kind {
			cp := *ts
			cp.layers = map[byte]int{}
			for k, v := range ts.layers {
				cp.layers[k] = v
			}
			cp.seqOrder = append([]uint16(nil), ts.seqOrder...)
			cp.arrivals = append([]time.Time(nil), ts.arrivals...)
			cp.keySeqs = make(map[uint16]bool, len(ts.keySeqs))
			for k, v := range ts.keySeqs {
				cp.keySeqs[k] = v
			}
			cp.seqs = make(map[uint16]bool, len(ts.seqs))
			for k, v := range ts.seqs {
				cp.seqs[k] = v
			}
			return cp, id, true
		}
	}
	return trackStats{}, "", false
}

// completeRun reports whether ts holds span consecutive sequence numbers
// from the first packet received on.
func completeRun(ts trackStats, span uint16) bool {
	if len(ts.seqOrder) == 0 {
		return false
	}
	first := ts.seqOrder[0]
	for i := range span {
		if !ts.seqs[first+i] {
			return false
		}
	}
	return true
}

func (c *collector) packets(publisher string, kind webrtc.RTPCodecType) int {
	ts, _, _ := c.stats(publisher, kind)
	return ts.packets
}

func (c *collector) has(pred func(client.Event) bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.events {
		if pred(e) {
			return true
		}
	}
	return false
}

func (c *collector) dump(t *testing.T, who string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, ts := range c.tracks {
		t.Logf("%s: track %s from %s %s: %d packets, %d keys", who, id, ts.publisher, ts.kind, ts.packets, ts.keyFrames)
	}
	for _, e := range c.events {
		t.Logf("%s: event %s %s %v", who, e.Type, e.Participant.ID, e.Err)
	}
}
