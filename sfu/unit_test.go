package sfu

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/oakmeet/oakmeet/signal"
)

func TestVP8KeyFrameStart(t *testing.T) {
	tests := []struct {
		name string
		p    []byte
		want bool
	}{
		{"empty", nil, false},
		{"key frame start", []byte{0x10, 0x10, 0x02, 0x00}, true},
		{"delta frame start", []byte{0x10, 0x11, 0x02, 0x00}, false},
		{"continuation", []byte{0x00, 0x10}, false},
		{"start of partition 1", []byte{0x11, 0x10}, false},
		{"picture id 7 bit", []byte{0x90, 0x80, 0x05, 0x10}, true},
		{"picture id 15 bit", []byte{0x90, 0x80, 0x85, 0x05, 0x10}, true},
		{"picture id, tl0picidx, tid", []byte{0x90, 0xe0, 0x05, 0x01, 0x20, 0x10}, true},
		{"extension truncated", []byte{0x90, 0x80}, false},
		{"descriptor only", []byte{0x10}, false},
	}
	for _, tc := range tests {
		if got := vp8KeyFrameStart(tc.p); got != tc.want {
			t.Errorf("%s: vp8KeyFrameStart(% x) = %v, want %v", tc.name, tc.p, got, tc.want)
		}
	}
}

func TestPacketCache(t *testing.T) {
	c := newPacketCache(8)
	buf := make([]byte, maxPacket)
	c.store(100, []byte{1, 2, 3})
	if n := c.load(100, buf); n != 3 || buf[2] != 3 {
		t.Fatalf("load(100) = %d % x", n, buf[:n])
	}
	if n := c.load(101, buf); n != 0 {
		t.Fatalf("load of a packet never stored = %d", n)
	}
	c.store(108, []byte{9}) // same slot as 100
	if n := c.load(100, buf); n != 0 {
		t.Fatal("an overwritten packet was still returned")
	}
	c.store(65535, []byte{7})
	c.store(0, []byte{8})
	if c.load(65535, buf) != 1 || buf[0] != 7 || c.load(0, buf) != 1 || buf[0] != 8 {
		t.Fatal("wrap-around lost a packet")
	}
	c.store(5, make([]byte, maxPacket+1))
	if c.load(5, buf) != 0 {
		t.Fatal("an oversized packet was cached")
	}
}

func TestPickLayer(t *testing.T) {
	tests := []struct {
		avail [numLayers]bool
		want  int
		got   int
	}{
		{[numLayers]bool{true, true, true}, 2, 2},
		{[numLayers]bool{true, true, true}, 0, 0},
		{[numLayers]bool{true, false, true}, 1, 0},
		{[numLayers]bool{false, false, true}, 0, 2},
		{[numLayers]bool{true, false, false}, 2, 0},
		{[numLayers]bool{}, 2, -1},
	}
	for _, tc := range tests {
		if got := pickLayer(tc.avail, tc.want); got != tc.got {
			t.Errorf("pickLayer(%v, %d) = %d, want %d", tc.avail, tc.want, got, tc.got)
		}
	}
}

func TestAllocate(t *testing.T) {
	all := [numLayers]bool{true, true, true}
	rates := [numLayers]uint64{150_000, 500_000, 1_500_000}
	tests := []struct {
		name   string
		budget uint64
		subs   []allocation
		want   []int
	}{
		{"plenty", 10_000_000, []allocation{{want: 2, avail: all, rate: rates}, {want: 2, avail: all, rate: rates}}, []int{2, 2}},
		{"respects the request", 10_000_000, []allocation{{want: 0, avail: all, rate: rates}, {want: 1, avail: all, rate: rates}}, []int{0, 1}},
		{"shares fairly", 1_400_000, []allocation{{want: 2, avail: all, rate: rates}, {want: 2, avail: all, rate: rates}}, []int{1, 1}},
		{"starved still gets lowest", 10_000, []allocation{{want: 2, avail: all, rate: rates}}, []int{0}},
		{"skips a missing layer", 2_000_000, []allocation{{want: 2, avail: [numLayers]bool{true, false, true}, rate: rates}}, []int{2}},
		{"nothing available", 2_000_000, []allocation{{want: 2}}, []int{-1}},
	}
	for _, tc := range tests {
		got := allocate(tc.budget, tc.subs)
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: allocate = %v, want %v", tc.name, got, tc.want)
				break
			}
		}
	}
}

func TestRewriterSwitchesSeamlessly(t *testing.T) {
	const clock = 90000
	ms := int64(time.Millisecond)
	r := newRewriter()
	// Target low (0): packets of the high layer are ignored, a low delta
	// frame waits for a key frame.
	if res := r.rewrite(2, 0, 500, 9000, true, true, 0, clock); res.forward {
		t.Fatal("forwarded a layer that is not the target")
	}
	if res := r.rewrite(0, 0, 100, 1000, false, true, 0, clock); res.forward || !res.wantKey {
		t.Fatalf("delta frame before the first key frame: %+v", res)
	}
	res := r.rewrite(0, 0, 101, 1000, true, true, 0, clock)
	if !res.forward || res.seq != 101 || res.ts != 1000 {
		t.Fatalf("first key frame: %+v", res)
	}
	res = r.rewrite(0, 0, 102, 4000, false, true, 33*ms, clock)
	if !res.forward || res.seq != 102 || res.ts != 4000 {
		t.Fatalf("next packet: %+v", res)
	}
	// Switch to high (2): low keeps flowing until high has a key frame.
	res = r.rewrite(2, 2, 900, 77000, false, true, 40*ms, clock)
	if res.forward || !res.wantKey {
		t.Fatalf("delta of the new layer: %+v", res)
	}
	if res = r.rewrite(0, 2, 103, 7000, false, true, 66*ms, clock); !res.forward || res.seq != 103 {
		t.Fatalf("old layer while waiting: %+v", res)
	}
	res = r.rewrite(2, 2, 901, 80000, true, true, 99*ms, clock)
	if !res.forward || res.seq != 104 {
		t.Fatalf("key frame of the new layer: %+v, want seq 104", res)
	}
	if want := uint32(7000 + 33*clock/1000); res.ts != want {
		t.Fatalf("timestamp across the switch = %d, want %d (last + 33 ms)", res.ts, want)
	}
	if res = r.rewrite(0, 2, 104, 10000, false, true, 100*ms, clock); res.forward {
		t.Fatal("old layer forwarded after the switch")
	}
	if res = r.rewrite(2, 2, 900, 77000, false, true, 100*ms, clock); res.forward {
		t.Fatal("a packet from before the switch point was forwarded")
	}
	if res = r.rewrite(2, 2, 902, 80000, false, true, 100*ms, clock); res.seq != 105 || res.ts != 7000+33*clock/1000 {
		t.Fatalf("packet after the switch: %+v", res)
	}
	// NACK lookups map back to the layer and source packet.
	for _, tc := range []struct {
		out   uint16
		layer int
		src   uint16
		ok    bool
	}{{102, 0, 102, true}, {103, 0, 103, true}, {104, 2, 901, true}, {105, 2, 902, true}, {106, 0, 0, false}} {
		layer, src, _, ok := r.lookup(tc.out)
		if ok != tc.ok || (ok && (layer != tc.layer || src != tc.src)) {
			t.Errorf("lookup(%d) = %d, %d, %v; want %d, %d, %v", tc.out, layer, src, ok, tc.layer, tc.src, tc.ok)
		}
	}
}

func TestRewriterAudioAndWrap(t *testing.T) {
	r := newRewriter()
	for i, seq := range []uint16{65534, 65535, 1} {
		res := r.rewrite(0, 0, seq, uint32(i*960), false, false, 0, 48000)
		if !res.forward || res.seq != seq {
			t.Fatalf("audio packet %d: %+v", seq, res)
		}
	}
	// A late packet is still forwarded, but not one from before the start.
	if res := r.rewrite(0, 0, 0, 0, false, false, 0, 48000); !res.forward || res.seq != 0 {
		t.Fatalf("reordered packet: %+v", res)
	}
	if res := r.rewrite(0, 0, 65533, 0, false, false, 0, 48000); res.forward {
		t.Fatal("a packet from before the first one was forwarded")
	}
	// A long run keeps forwarding across many wraps.
	for i := 0; i < 200000; i++ {
		if res := r.rewrite(0, 0, uint16(2+i), 0, false, false, 0, 48000); !res.forward {
			t.Fatalf("packet %d dropped", i)
		}
	}
}

// fakeWriter stands in for a subscriber's PeerConnection. The first
// notReady writes are dropped without an error, as pion does before the
// subscriber's DTLS handshake is done.
type fakeWriter struct {
	packets  int
	last     rtp.Header
	notReady int
}

func (w *fakeWriter) WriteRTP(h *rtp.Header, p []byte) (int, error) {
	if w.notReady > 0 {
		w.notReady--
		return 0, nil
	}
	w.packets++
	w.last = *h
	return h.MarshalSize() + len(p), nil
}

func (w *fakeWriter) Write(b []byte) (int, error) { return len(b), nil }

type fakeBindCtx struct {
	w    webrtc.TrackLocalWriter
	ssrc webrtc.SSRC
}

func (f fakeBindCtx) CodecParameters() []webrtc.RTPCodecParameters {
	return []webrtc.RTPCodecParameters{{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}}
}
func (f fakeBindCtx) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter { return nil }
func (f fakeBindCtx) SSRC() webrtc.SSRC                                      { return f.ssrc }
func (f fakeBindCtx) SSRCRetransmission() webrtc.SSRC                        { return 0 }
func (f fakeBindCtx) SSRCForwardErrorCorrection() webrtc.SSRC                { return 0 }
func (f fakeBindCtx) WriteStream() webrtc.TrackLocalWriter                   { return f.w }
func (f fakeBindCtx) ID() string                                             { return "bind" }
func (f fakeBindCtx) RTCPReader() interceptor.RTCPReader                     { return nil }

// forwardFixture is one video track with n subscribers on fake writers.
func forwardFixture(tb testing.TB, n int) (*publishedTrack, *upLayer, []*fakeWriter, *counters) {
	tb.Helper()
	stats := &counters{}
	pub := newPublishedTrack(signal.Track{ID: "t", Participant: "p", Stream: "p", Kind: "video"},
		webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, webrtc.RTPCodecTypeVideo,
		func([]rtcp.Packet) error { return nil }, stats, time.Now())
	l := &upLayer{quality: 0, ssrc: 1234, cache: newPacketCache(videoCacheSize)}
	pub.layers[0].Store(l)
	meter := new(atomic.Uint64)
	var ws []*fakeWriter
	for i := 0; i < n; i++ {
		w := &fakeWriter{}
		d := newDownTrack(pub, stats, meter)
		d.target.Store(0)
		if _, err := d.Bind(fakeBindCtx{w: w, ssrc: webrtc.SSRC(5000 + i)}); err != nil {
			tb.Fatal(err)
		}
		pub.addDown(d)
		ws = append(ws, w)
	}
	return pub, l, ws, stats
}

func packet(seq uint16, key bool) []byte {
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: 1234}, Payload: make([]byte, 1100)}
	p.Payload[0] = 0x10
	p.Payload[1] = 0x11
	if key {
		p.Payload[1] = 0x10
	}
	b, _ := p.Marshal()
	return b
}

func TestForwardReachesEverySubscriberAndAnswersNACK(t *testing.T) {
	pub, l, ws, stats := forwardFixture(t, 3)
	f := newForwarder()
	for seq := uint16(10); seq < 20; seq++ {
		raw := packet(seq, seq == 10)
		if err := f.pkt.Unmarshal(raw); err != nil {
			t.Fatal(err)
		}
		pub.forward(l, raw, f)
	}
	for i, w := range ws {
		if w.packets != 10 || w.last.SSRC != uint32(5000+i) || w.last.SequenceNumber != 19 || w.last.PayloadType != 96 {
			t.Fatalf("subscriber %d: %d packets, last %+v", i, w.packets, w.last)
		}
	}
	d := (*pub.downs.Load())[1]
	d.handleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: 12, LostPackets: 0b101}}}}, newNackScratch())
	if ws[1].packets != 13 || stats.retransmits.Load() != 3 {
		t.Fatalf("after a NACK for 12, 13 and 15: %d packets, %d retransmits", ws[1].packets, stats.retransmits.Load())
	}
	if ws[1].last.SequenceNumber != 15 || ws[1].last.Timestamp != 15*3000 {
		t.Fatalf("retransmission header %+v", ws[1].last)
	}
}

// A key frame written before the subscriber's connection could carry it is
// lost without an error; the subscription then waits for the next key
// frame instead of sending deltas the subscriber cannot decode.
func TestKeyFrameLostBeforeConnectionIsWaitedForAgain(t *testing.T) {
	pub, l, ws, _ := forwardFixture(t, 1)
	ws[0].notReady = 1
	f := newForwarder()
	send := func(seq uint16, key bool) {
		raw := packet(seq, key)
		if err := f.pkt.Unmarshal(raw); err != nil {
			t.Fatal(err)
		}
		pub.forward(l, raw, f)
	}
	send(10, true) // dropped: the connection is not up yet
	for seq := uint16(11); seq < 15; seq++ {
		send(seq, false)
	}
	if ws[0].packets != 0 {
		t.Fatalf("%d delta packets forwarded after the key frame was lost", ws[0].packets)
	}
	send(15, true)
	send(16, false)
	if ws[0].packets != 2 {
		t.Fatalf("%d packets after the next key frame, want 2", ws[0].packets)
	}
	// Outgoing sequence numbers stay continuous with what was written.
	if ws[0].last.SequenceNumber != 12 {
		t.Fatalf("sequence number %d after the restart, want 12", ws[0].last.SequenceNumber)
	}
}

func TestForwardStepAllocatesNothing(t *testing.T) {
	pub, l, _, _ := forwardFixture(t, 8)
	f := newForwarder()
	raw := packet(1, true)
	seq := uint16(1)
	allocs := testing.AllocsPerRun(1000, func() {
		seq++
		raw[2], raw[3] = byte(seq>>8), byte(seq)
		if err := f.pkt.Unmarshal(raw); err != nil {
			t.Fatal(err)
		}
		pub.forward(l, raw, f)
	})
	if allocs != 0 {
		t.Fatalf("forwarding one packet to 8 subscribers allocates %v times", allocs)
	}
}

func BenchmarkForward(b *testing.B) {
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			pub, l, _, _ := forwardFixture(b, n)
			f := newForwarder()
			raw := packet(1, true)
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			seq := uint16(1)
			for b.Loop() {
				seq++
				raw[2], raw[3] = byte(seq>>8), byte(seq)
				_ = f.pkt.Unmarshal(raw)
				pub.forward(l, raw, f)
			}
		})
	}
}

func TestNewListensAndCloses(t *testing.T) {
	for _, cfg := range []Config{
		{LoopbackOnly: true, TCPPort: -1, Key: testKey()},
		{TCPPort: -1, PublicIP: "203.0.113.7", Key: testKey()},
	} {
		s, err := New(cfg)
		if err != nil {
			t.Fatalf("New(%+v): %v", cfg, err)
		}
		if s.tcpMux == nil {
			t.Fatal("ICE-TCP not enabled for a negative TCPPort")
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal("second Close:", err)
		}
	}
	// A taken UDP port is reported, not ignored.
	s, err := New(Config{LoopbackOnly: true, Key: testKey()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	port := s.udpMux.GetListenAddresses()[0].(*net.UDPAddr).Port
	if _, err := New(Config{LoopbackOnly: true, UDPPort: port, Key: testKey()}); err == nil {
		t.Fatal("New on a taken port succeeded")
	}
}

func TestCloseReason(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"short", "bye", "bye"},
		{"exactly 123 bytes", strings.Repeat("a", 123), strings.Repeat("a", 123)},
		{"too long", strings.Repeat("a", 200), strings.Repeat("a", 123)},
		// 61 two-byte characters are 122 bytes; the 62nd would end at 124.
		{"cut inside a character", strings.Repeat("é", 100), strings.Repeat("é", 61)},
		{"invalid UTF-8", "bad \xff byte", "bad  byte"},
	}
	for _, tc := range tests {
		if got := closeReason(tc.in); got != tc.want {
			t.Errorf("%s: closeReason(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
	}
}

func TestCheckOffer(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
	const media = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000\r\n"
	const ice = "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\n"
	const fp = "a=fingerprint:sha-256 AA:BB\r\n"
	tests := []struct {
		name string
		sdp  string
		ok   bool
	}{
		{"not sdp", "hello", false},
		{"no media", head + ice + fp, false},
		{"no mid", head + ice + fp + media, false},
		{"no ice", head + fp + media + "a=mid:0\r\n", false},
		{"no fingerprint", head + ice + media + "a=mid:0\r\n", false},
		{"session level ice and fingerprint", head + ice + fp + media + "a=mid:0\r\n", true},
		{"media level ice and fingerprint", head + media + "a=mid:0\r\n" + ice + fp, true},
	}
	for _, tc := range tests {
		if err := checkOffer(tc.sdp); (err == nil) != tc.ok {
			t.Errorf("%s: checkOffer = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// The sfu fuzz targets run hundreds to a couple of thousand inputs per
// second on a shared 2-core machine, though their bodies take microseconds:
// this package's test binary links pion, the node's WebSocket server and
// the test deployment, all coverage-instrumented, and the fuzzer clears,
// copies and compares that whole coverage map around every input. Seeds:
// testdata/fuzz/FuzzCheckOffer holds real pion offers.
func FuzzCheckOffer(f *testing.F) {
	f.Add("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		_ = checkOffer(s) // must not panic
	})
}

func FuzzVP8KeyFrameStart(f *testing.F) {
	f.Add([]byte{0x90, 0xe0, 0x85, 0x05, 0x01, 0x20, 0x10})
	f.Fuzz(func(t *testing.T, p []byte) {
		_ = vp8KeyFrameStart(p) // must not panic
	})
}

func TestPlanLayers(t *testing.T) {
	tests := []struct {
		rids     []string
		plan     [numLayers]string
		declared [numLayers]bool
	}{
		{nil, [3]string{}, [3]bool{true, false, false}},
		{[]string{"q", "h", "f"}, [3]string{"q", "h", "f"}, [3]bool{true, true, true}},
		{[]string{"f", "q"}, [3]string{"q", "", "f"}, [3]bool{true, false, true}},
		{[]string{"a", "b"}, [3]string{"a", "b", ""}, [3]bool{true, true, false}},
		{[]string{"x", "f", "y"}, [3]string{"x", "y", "f"}, [3]bool{true, true, true}},
		{[]string{"q", "low"}, [3]string{"q", "low", ""}, [3]bool{true, true, false}},
		{[]string{"a", "b", "c", "d"}, [3]string{"a", "b", "c"}, [3]bool{true, true, true}},
	}
	for _, tt := range tests {
		plan, declared := planLayers(tt.rids)
		if plan != tt.plan || declared != tt.declared {
			t.Errorf("planLayers(%q) = %q %v, want %q %v", tt.rids, plan, declared, tt.plan, tt.declared)
		}
	}
}

func TestLinkTrackID(t *testing.T) {
	for q := range numLayers {
		id, got, ok := parseLinkTrackID(linkTrackID("t0123456789ab", q))
		if !ok || id != "t0123456789ab" || got != q {
			t.Fatalf("round trip of layer %d: %q %d %v", q, id, got, ok)
		}
	}
	for _, bad := range []string{"", "t1", "t1.", ".1", "t1.3", "t1.x", "t1.10", "t1.-1"} {
		if _, _, ok := parseLinkTrackID(bad); ok {
			t.Errorf("parseLinkTrackID(%q) accepted", bad)
		}
	}
}

func TestRosterMergesPresences(t *testing.T) {
	var r roster
	l1, l2 := new(link), new(link)
	p := func(id string, since int64) signal.Participant {
		return signal.Participant{ID: id, Name: "n-" + id, Since: since}
	}
	steps := []struct {
		name    string
		do      func() (signal.Participant, bool, bool) // view, gone, changed
		view    signal.Participant
		gone    bool
		changed bool
	}{
		{"local joins", func() (signal.Participant, bool, bool) { v, c := r.set(nil, p("a", 10)); return v, false, c }, p("a", 10), false, true},
		{"same again", func() (signal.Participant, bool, bool) { v, c := r.set(nil, p("a", 10)); return v, false, c }, p("a", 10), false, false},
		{"moved: newer elsewhere", func() (signal.Participant, bool, bool) { v, c := r.set(l1, p("a", 20)); return v, false, c }, p("a", 20), false, true},
		{"older elsewhere", func() (signal.Participant, bool, bool) { v, c := r.set(l2, p("a", 5)); return v, false, c }, p("a", 20), false, false},
		{"old connection leaves", func() (signal.Participant, bool, bool) { return r.drop(nil, "a") }, p("a", 20), false, false},
		{"newest leaves", func() (signal.Participant, bool, bool) { return r.drop(l1, "a") }, p("a", 5), false, true},
		{"unknown presence", func() (signal.Participant, bool, bool) { return r.drop(l1, "a") }, signal.Participant{}, false, false},
		{"last leaves", func() (signal.Participant, bool, bool) { return r.drop(l2, "a") }, p("a", 5), true, false},
	}
	for _, s := range steps {
		v, gone, changed := s.do()
		if v != s.view || gone != s.gone || changed != s.changed {
			t.Fatalf("%s: got %+v gone=%v changed=%v, want %+v gone=%v changed=%v", s.name, v, gone, changed, s.view, s.gone, s.changed)
		}
	}
	if _, ok := r.present("a"); ok {
		t.Fatal("a still present")
	}
	r.set(nil, p("c", 30))
	r.set(l1, p("b", 30))
	r.set(l2, p("a", 40))
	r.set(l1, p("z", 1))
	var ids []string
	for _, x := range r.list() {
		ids = append(ids, x.ID)
	}
	if got := fmt.Sprint(ids); got != "[z b c a]" {
		t.Fatalf("roster order %s, want by since then id", got)
	}
	if got := r.links("b"); len(got) != 1 || got[0] != l1 {
		t.Fatalf("links(b) = %v", got)
	}
	if got := r.via(l1); len(got) != 2 {
		t.Fatalf("via(l1) = %v", got)
	}
}

func FuzzParseLinkTrackID(f *testing.F) {
	for _, s := range []string{"t0123.0", "t.2", "a.b.1", "t1.3", ".", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, q, ok := parseLinkTrackID(s)
		if !ok {
			return
		}
		if q < 0 || q >= numLayers || id == "" || linkTrackID(id, q) != s {
			t.Fatalf("parseLinkTrackID(%q) = %q %d, which does not name it", s, id, q)
		}
	})
}

// The signed form of a relay SDP is part of the relay protocol: nodes of
// other versions sign and verify these very bytes.
func TestRelaySDPSignature(t *testing.T) {
	got := sdpSigned([]byte("binding"), "n1", "offer", "v=0\r\n")
	if want := "oakmeet relay sdp v1\x00binding\x00n1\x00offer\x00v=0\r\n"; string(got) != want {
		t.Fatalf("sdpSigned = %q, want %q", got, want)
	}

	_, selfKey, _ := ed25519.GenerateKey(nil)
	peerPub, peerKey, _ := ed25519.GenerateKey(nil)
	cfg := Link{Meeting: "m", Self: "n1", Peer: "n2", Key: selfKey, PeerKey: peerPub, Binding: []byte("binding")}
	offer := webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: "v=0\r\n"}
	if sig, want := linkSigner(cfg).Sign(offer), ed25519.Sign(selfKey, got); !bytes.Equal(sig, want) {
		t.Fatal("an offer is not signed over its sdpSigned bytes")
	}
	answer := webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: "v=0\r\n"}
	peerSig := ed25519.Sign(peerKey, sdpSigned(cfg.Binding, "n2", "answer", answer.SDP))
	if err := linkSigner(cfg).Verify(answer, peerSig); err != nil {
		t.Fatalf("the peer's signed answer: %v", err)
	}
	for name, d := range map[string]webrtc.SessionDescription{
		"as an offer":    {Type: webrtc.SDPTypeOffer, SDP: answer.SDP},
		"of another sdp": {Type: webrtc.SDPTypeAnswer, SDP: "v=1\r\n"},
	} {
		if err := linkSigner(cfg).Verify(d, peerSig); !errors.Is(err, ErrBadSignature) {
			t.Errorf("the peer's answer signature %s: %v, want ErrBadSignature", name, err)
		}
	}
}

// testKey is an identity key for an SFU under test.
func testKey() ed25519.PrivateKey {
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		panic(err)
	}
	return key
}

func TestNewNeedsAnIdentityKey(t *testing.T) {
	if s, err := New(Config{LoopbackOnly: true}); err == nil {
		_ = s.Close()
		t.Fatal("an SFU without an identity key started: its SDPs could not be signed")
	}
}

// A relay link forwards, for each layer its peer wants, the best one the
// publisher sends at or below it, and nothing else; a layer that starts
// asks for a key frame. Before the peer has said anything, everything
// crosses.
func TestLinkForwardsTheLayersWanted(t *testing.T) {
	var plis []uint32
	pub := newPublishedTrack(signal.Track{ID: "t", Kind: signal.KindVideo, Layers: []string{"q", "h", "f"}},
		webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, webrtc.RTPCodecTypeVideo,
		func(ps []rtcp.Packet) error {
			for _, p := range ps {
				if pli, ok := p.(*rtcp.PictureLossIndication); ok {
					plis = append(plis, pli.MediaSSRC)
				}
			}
			return nil
		}, &counters{}, time.Now())
	// The publisher sends low and high, not medium.
	for _, q := range []int{0, 2} {
		pub.addLayer(q, pub.rids[q], uint32(100+q))
	}
	d := &linkDown{pub: pub}
	for q := range numLayers {
		dt := newDownTrack(pub, &counters{}, &atomic.Uint64{})
		dt.want, dt.cap = q, q
		dt.target.Store(int32(q))
		d.slots = append(d.slots, &downSlot{dt: dt})
	}
	l := &link{downs: map[string]*linkDown{"t": d}}
	l.log = slog.New(slog.DiscardHandler)
	targets := func() [numLayers]int32 {
		var out [numLayers]int32
		for i, s := range d.slots {
			out[i] = s.dt.target.Load()
		}
		return out
	}
	l.applyWanted(d)
	if got := targets(); got != [numLayers]int32{0, 1, 2} {
		t.Fatalf("before layers_wanted: targets %v, want every layer", got)
	}
	for _, step := range []struct {
		names []string
		want  [numLayers]int32
		plis  []uint32
	}{
		{[]string{signal.LayerMedium}, [numLayers]int32{0, layerOff, layerOff}, nil}, // medium stood in for by low
		{[]string{signal.LayerHigh}, [numLayers]int32{layerOff, layerOff, 2}, []uint32{102}},
		{[]string{signal.LayerLow, signal.LayerHigh}, [numLayers]int32{0, layerOff, 2}, []uint32{100}},
		{nil, [numLayers]int32{layerOff, layerOff, layerOff}, nil},
	} {
		plis = nil
		l.onLayersWanted("t", step.names)
		if got := targets(); got != step.want {
			t.Errorf("wanted %v: targets %v, want %v", step.names, got, step.want)
		}
		if !slices.Equal(plis, step.plis) {
			t.Errorf("wanted %v: key frames asked of %v, want %v", step.names, plis, step.plis)
		}
	}
	// A track the link does not send is ignored.
	l.onLayersWanted("nope", []string{signal.LayerHigh})
}

// A relayed layer that does not cross the link (no one here wanted it) is
// still one the allocator may raise a subscriber to, at the rate it had
// when it last crossed; a local layer that stopped is not.
func TestRelayedLayersStayAllocatable(t *testing.T) {
	for _, relayed := range []bool{false, true} {
		pub := newPublishedTrack(signal.Track{ID: "t", Kind: signal.KindVideo, Layers: []string{"q", "h", "f"}},
			webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, webrtc.RTPCodecTypeVideo,
			func([]rtcp.Packet) error { return nil }, &counters{}, time.Now())
		if relayed {
			pub.origin = &link{}
		}
		var ls [numLayers]*upLayer
		for q := range numLayers {
			ls[q] = pub.addLayer(q, pub.rids[q], uint32(q))
			ls[q].bytes.Store(uint64(1000 * (q + 1)))
		}
		pub.sampleRates(1)
		// Only low goes on; medium and high stopped long ago.
		ls[0].bytes.Add(1000)
		pub.sampleRates(1)
		long := int64(time.Hour)
		ls[0].lastPkt.Store(long)
		ls[1].lastPkt.Store(1)
		ls[2].lastPkt.Store(1)

		a := pub.allocation(2, long)
		wantAvail := [numLayers]bool{true, relayed, relayed}
		if a.avail != wantAvail {
			t.Errorf("relayed %v: available %v, want %v", relayed, a.avail, wantAvail)
		}
		if relayed && a.rate[2] != 24000 {
			t.Errorf("a paused relayed layer's rate is %d, want the last measured 24000", a.rate[2])
		}
		caps := allocate(1e9, []allocation{a})
		if want := map[bool]int{false: 0, true: 2}[relayed]; caps[0] != want {
			t.Errorf("relayed %v: allocated layer %d, want %d", relayed, caps[0], want)
		}
	}
}
