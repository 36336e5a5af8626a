package negotiation_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/oakmeet/oakmeet/negotiation"
	"github.com/oakmeet/oakmeet/signal"
)

// end is one PeerConnection under test with everything its negotiation
// sent and reported recorded. Offers, answers and failures happen on the
// test goroutine; candidates come from pion's, through cands.
type end struct {
	t     *testing.T
	pc    *webrtc.PeerConnection
	sent  []signal.Message
	fails []failure
	cands chan *signal.Candidate
}

type failure struct {
	step negotiation.Step
	err  error
}

func newEnd(t *testing.T, target string) *end {
	t.Helper()
	me, err := negotiation.MediaEngine()
	if err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	e := &end{t: t, pc: pc, cands: make(chan *signal.Candidate, 64)}
	negotiation.Trickle(pc, target, func(m signal.Message) {
		if m.Type != signal.TypeCandidate || m.Target != target {
			t.Errorf("trickled %+v, want a candidate for %s", m, target)
		}
		e.cands <- m.Candidate
	})
	return e
}

func (e *end) config(s negotiation.Signer) negotiation.Config {
	return negotiation.Config{
		Send:   func(m signal.Message) { e.sent = append(e.sent, m) },
		Failed: func(step negotiation.Step, err error) { e.fails = append(e.fails, failure{step, err}) },
		Signer: s,
	}
}

// last is the last offer or answer sent, which must be of type typ.
func (e *end) last(typ signal.Type) signal.Message {
	e.t.Helper()
	if len(e.sent) == 0 || e.sent[len(e.sent)-1].Type != typ {
		e.t.Fatalf("sent %v, want a %s last", types(e.sent), typ)
	}
	return e.sent[len(e.sent)-1]
}

func (e *end) noFailures() {
	e.t.Helper()
	if len(e.fails) != 0 {
		e.t.Fatalf("failures %+v", e.fails)
	}
}

func types(ms []signal.Message) []signal.Type {
	var ts []signal.Type
	for _, m := range ms {
		ts = append(ts, m.Type)
	}
	return ts
}

// newPair is an offering and an answering end, the offering one with an
// audio and a video section to offer.
func newPair(t *testing.T, signer negotiation.Signer) (*end, *negotiation.Offerer, *end, *negotiation.Answerer) {
	t.Helper()
	oe, ae := newEnd(t, signal.TargetPublish), newEnd(t, signal.TargetSubscribe)
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := oe.pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	return oe, negotiation.NewOfferer(oe.pc, oe.config(signer)), ae, negotiation.NewAnswerer(ae.pc, ae.config(signer))
}

func waitConnected(t *testing.T, pcs ...*webrtc.PeerConnection) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, pc := range pcs {
		for pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
			if time.Now().After(deadline) {
				t.Fatalf("connection state %v", pc.ConnectionState())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// take waits for at least n trickled candidates of e.
func take(t *testing.T, e *end, n int) []*signal.Candidate {
	t.Helper()
	var got []*signal.Candidate
	deadline := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case c := <-e.cands:
			got = append(got, c)
		case <-deadline:
			t.Fatalf("got %d candidates, want %d", len(got), n)
		}
	}
	return got
}

// remoteAddrs is where pc's remote candidates are, from its statistics.
func remoteAddrs(pc *webrtc.PeerConnection) []string {
	var addrs []string
	for _, s := range pc.GetStats() {
		if c, ok := s.(webrtc.ICECandidateStats); ok && c.Type == webrtc.StatsTypeRemoteCandidate {
			addrs = append(addrs, fmt.Sprintf("%s:%d", c.IP, c.Port))
		}
	}
	return addrs
}

func candidateAddr(t *testing.T, c *signal.Candidate) string {
	t.Helper()
	cand, err := ice.UnmarshalCandidate(c.Candidate)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s:%d", cand.Address(), cand.Port())
}

// Candidates that arrive before the offer are kept, added once the offer
// is applied, and the two ends connect.
func TestNegotiationConnectsWithEarlyCandidates(t *testing.T) {
	oe, off, ae, ans := newPair(t, nil)
	if off.Outstanding() {
		t.Fatal("outstanding before any offer")
	}
	off.Renegotiate()
	offer := oe.last(signal.TypeOffer)
	if !off.Outstanding() {
		t.Fatal("offer sent but not outstanding")
	}
	early := take(t, oe, 1)
	for _, c := range early {
		ans.Candidate(c)
	}
	if got := remoteAddrs(ae.pc); len(got) != 0 {
		t.Fatalf("candidates added before a remote description: %v", got)
	}

	ans.Offer(offer.SDP, offer.Sig)
	answer := ae.last(signal.TypeAnswer)
	ae.noFailures()
	want := candidateAddr(t, early[0])
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(remoteAddrs(ae.pc), want) {
		if time.Now().After(deadline) {
			t.Fatalf("kept candidate %s not added: remote %v", want, remoteAddrs(ae.pc))
		}
		time.Sleep(5 * time.Millisecond)
	}

	off.Answer(answer.SDP, answer.Sig)
	oe.noFailures()
	if off.Outstanding() {
		t.Fatal("answered offer still outstanding")
	}
	for _, c := range take(t, ae, 1) {
		off.Candidate(c)
	}
	waitConnected(t, oe.pc, ae.pc)
	oe.noFailures()
	ae.noFailures()
}

// One offer at a time: changes while an offer is outstanding are offered
// together once it is answered.
func TestOneOfferAtATime(t *testing.T) {
	oe, off, ae, ans := newPair(t, nil)
	off.Renegotiate()
	off.Renegotiate()
	off.MaybeOffer()
	if got := types(oe.sent); !slices.Equal(got, []signal.Type{signal.TypeOffer}) {
		t.Fatalf("sent %v while an offer was outstanding", got)
	}
	ans.Offer(oe.last(signal.TypeOffer).SDP, nil)
	off.Answer(ae.last(signal.TypeAnswer).SDP, nil)
	if got := types(oe.sent); !slices.Equal(got, []signal.Type{signal.TypeOffer, signal.TypeOffer}) {
		t.Fatalf("sent %v, want the wanted offer right after the answer", got)
	}
	ans.Offer(oe.last(signal.TypeOffer).SDP, nil)
	off.Answer(ae.last(signal.TypeAnswer).SDP, nil)
	off.MaybeOffer()
	if len(oe.sent) != 2 || off.Outstanding() {
		t.Fatalf("sent %v, outstanding %v: nothing was wanted", types(oe.sent), off.Outstanding())
	}
	oe.noFailures()
	ae.noFailures()
}

// withoutFingerprint drops the DTLS fingerprint, which pion only looks for
// after it has taken the description.
func withoutFingerprint(sdp string) string {
	var lines []string
	for l := range strings.SplitSeq(sdp, "\r\n") {
		if !strings.HasPrefix(l, "a=fingerprint:") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\r\n")
}

func TestFailures(t *testing.T) {
	cand := func(s string) *signal.Candidate { return &signal.Candidate{Candidate: s} }
	tests := []struct {
		name string
		// run drives the pair; it returns whether an offer should still be
		// outstanding.
		run         func(t *testing.T, oe *end, off *negotiation.Offerer, ae *end, ans *negotiation.Answerer) bool
		step        negotiation.Step
		is          error // nil: any error
		offererFail bool  // the offering end reports it, else the answering one
	}{
		{"answer without an offer", func(t *testing.T, oe *end, off *negotiation.Offerer, ae *end, ans *negotiation.Answerer) bool {
			off.Answer("v=0\r\n", nil)
			return false
		}, negotiation.StepApplyAnswer, negotiation.ErrNoOffer, true},
		{"unparsable answer keeps the offer outstanding", func(t *testing.T, oe *end, off *negotiation.Offerer, ae *end, ans *negotiation.Answerer) bool {
			off.Renegotiate()
			off.Answer("garbage", nil)
			return true
		}, negotiation.StepApplyAnswer, nil, true},
		{"an answer pion took and failed on is carried on from", func(t *testing.T, oe *end, off *negotiation.Offerer, ae *end, ans *negotiation.Answerer) bool {
			off.Renegotiate()
			ans.Offer(oe.last(signal.TypeOffer).SDP, nil)
			off.Renegotiate() // wanted while the first is outstanding
			off.Answer(withoutFingerprint(ae.last(signal.TypeAnswer).SDP), nil)
			if got := types(oe.sent); len(got) != 2 {
				t.Errorf("sent %v, want the wanted offer after the failed answer", got)
			}
			return true
		}, negotiation.StepApplyAnswer, nil, true},
		{"unparsable offer", func(t *testing.T, oe *end, off *negotiation.Offerer, ae *end, ans *negotiation.Answerer) bool {
			ans.Offer("this is not sdp", nil)
			if ae.pc.SignalingState() != webrtc.SignalingStateStable || len(ae.sent) != 0 {
				t.Errorf("state %v, sent %v after a refused offer", ae.pc.SignalingState(), types(ae.sent))
			}
			return false
		}, negotiation.StepApplyOffer, nil, false},
		{"too many candidates before a description", func(t *testing.T, oe *end, off *negotiation.Offerer, ae *end, ans *negotiation.Answerer) bool {
			for i := range negotiation.MaxPendingCandidates + 1 {
				ans.Candidate(cand(fmt.Sprintf("candidate:%d 1 udp 2130706431 127.0.0.1 %d typ host", i, 10000+i)))
			}
			return false
		}, negotiation.StepCandidate, negotiation.ErrTooManyCandidates, false},
		{"refused candidate once a description is set", func(t *testing.T, oe *end, off *negotiation.Offerer, ae *end, ans *negotiation.Answerer) bool {
			off.Renegotiate()
			ans.Offer(oe.last(signal.TypeOffer).SDP, nil)
			ans.Candidate(cand("candidate:nonsense"))
			return true
		}, negotiation.StepCandidate, nil, false},
		{"refused candidate kept until the description", func(t *testing.T, oe *end, off *negotiation.Offerer, ae *end, ans *negotiation.Answerer) bool {
			ans.Candidate(cand("candidate:nonsense"))
			ans.Candidate(cand("")) // the end of candidates: ignored
			ans.Candidate(nil)
			if len(ae.fails) != 0 {
				t.Errorf("failures before the description: %+v", ae.fails)
			}
			off.Renegotiate()
			ans.Offer(oe.last(signal.TypeOffer).SDP, nil)
			if len(ae.sent) != 1 {
				t.Errorf("sent %v: the answer goes out despite a bad candidate", types(ae.sent))
			}
			return true
		}, negotiation.StepCandidate, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			oe, off, ae, ans := newPair(t, nil)
			outstanding := tt.run(t, oe, off, ae, ans)
			if off.Outstanding() != outstanding {
				t.Errorf("outstanding = %v, want %v", off.Outstanding(), outstanding)
			}
			reporter, other := ae, oe
			if tt.offererFail {
				reporter, other = oe, ae
			}
			other.noFailures()
			if len(reporter.fails) != 1 {
				t.Fatalf("failures %+v, want one", reporter.fails)
			}
			f := reporter.fails[0]
			if f.step != tt.step || f.err == nil || (tt.is != nil && !errors.Is(f.err, tt.is)) {
				t.Fatalf("failure %v %v, want step %v %v", f.step, f.err, tt.step, tt.is)
			}
		})
	}
}

// tagSigner signs a description with its own name and accepts only the
// other end's.
type tagSigner struct{ self, peer string }

func (s tagSigner) tag(who string, d webrtc.SessionDescription) string {
	return fmt.Sprintf("%s/%s/%d", who, d.Type, len(d.SDP))
}

func (s tagSigner) Sign(d webrtc.SessionDescription) []byte { return []byte(s.tag(s.self, d)) }

var errBadTag = errors.New("bad tag")

func (s tagSigner) Verify(d webrtc.SessionDescription, sig []byte) error {
	if string(sig) != s.tag(s.peer, d) {
		return errBadTag
	}
	return nil
}

func TestSignedDescriptions(t *testing.T) {
	oe, ae := newEnd(t, signal.TargetPublish), newEnd(t, signal.TargetSubscribe)
	if _, err := oe.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	off := negotiation.NewOfferer(oe.pc, oe.config(tagSigner{"a", "b"}))
	ans := negotiation.NewAnswerer(ae.pc, ae.config(tagSigner{"b", "a"}))
	off.Renegotiate()
	offer := oe.last(signal.TypeOffer)
	if got, want := string(offer.Sig), fmt.Sprintf("a/offer/%d", len(offer.SDP)); got != want {
		t.Fatalf("offer signature %q, want %q", got, want)
	}

	ans.Offer(offer.SDP, []byte("forged"))
	if len(ae.fails) != 1 || ae.fails[0].step != negotiation.StepVerify || !errors.Is(ae.fails[0].err, errBadTag) {
		t.Fatalf("forged offer: failures %+v", ae.fails)
	}
	if ae.pc.RemoteDescription() != nil || len(ae.sent) != 0 {
		t.Fatal("a forged offer was applied")
	}
	ae.fails = nil

	ans.Offer(offer.SDP, offer.Sig)
	ae.noFailures()
	answer := ae.last(signal.TypeAnswer)
	if got, want := string(answer.Sig), fmt.Sprintf("b/answer/%d", len(answer.SDP)); got != want {
		t.Fatalf("answer signature %q, want %q", got, want)
	}
	off.Answer(answer.SDP, offer.Sig) // the offer's signature, replayed
	if len(oe.fails) != 1 || oe.fails[0].step != negotiation.StepVerify || !off.Outstanding() {
		t.Fatalf("replayed signature: failures %+v, outstanding %v", oe.fails, off.Outstanding())
	}
	oe.fails = nil
	off.Answer(answer.SDP, answer.Sig)
	oe.noFailures()
	if off.Outstanding() {
		t.Fatal("signed answer not applied")
	}
}

func TestCandidateConversion(t *testing.T) {
	mid, idx, ufrag := "0", uint16(1), "abcd"
	tests := []webrtc.ICECandidateInit{
		{Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host", SDPMid: &mid, SDPMLineIndex: &idx, UsernameFragment: &ufrag},
		{Candidate: "candidate:2 1 udp 1 127.0.0.1 1 typ host"},
		{},
	}
	for _, c := range tests {
		got := negotiation.ICECandidate(negotiation.SignalCandidate(c))
		if got.Candidate != c.Candidate || got.SDPMid != c.SDPMid || got.SDPMLineIndex != c.SDPMLineIndex || got.UsernameFragment != c.UsernameFragment {
			t.Errorf("round trip of %+v = %+v", c, got)
		}
	}
}

// Both sides offer exactly Opus and VP8 with the payload types and video
// feedback of the protocol.
func TestCodecTable(t *testing.T) {
	oe, off, _, _ := newPair(t, nil)
	off.Renegotiate()
	sdp := oe.last(signal.TypeOffer).SDP
	var rtpmaps []string
	for l := range strings.SplitSeq(sdp, "\r\n") {
		if strings.HasPrefix(l, "a=rtpmap:") {
			rtpmaps = append(rtpmaps, l)
		}
	}
	if want := []string{"a=rtpmap:111 opus/48000/2", "a=rtpmap:96 VP8/90000"}; !slices.Equal(rtpmaps, want) {
		t.Fatalf("codecs offered %q, want %q", rtpmaps, want)
	}
	for _, l := range []string{"a=fmtp:111 minptime=10;useinbandfec=1", "a=rtcp-fb:96 nack\r\n", "a=rtcp-fb:96 nack pli", "a=rtcp-fb:96 ccm fir"} {
		if !strings.Contains(sdp, l) {
			t.Errorf("offer lacks %q", strings.TrimSpace(l))
		}
	}
	if got := strings.Count(sdp, "a=rtcp-fb:96 nack\r\n"); got != 1 {
		t.Errorf("generic nack offered %d times", got)
	}
	if c := negotiation.VP8(); c.RTCPFeedback != nil {
		t.Errorf("VP8() carries feedback %v; MediaEngine adds it", c.RTCPFeedback)
	}
}

// iceUfrag is the ice-ufrag an SDP gives.
func iceUfrag(t *testing.T, sdp string) string {
	t.Helper()
	for line := range strings.SplitSeq(sdp, "\n") {
		if u, ok := strings.CutPrefix(strings.TrimSpace(line), "a=ice-ufrag:"); ok {
			return u
		}
	}
	t.Fatalf("no ice-ufrag in %q", sdp)
	return ""
}

// A second offer that follows the first answer at once, before pion has
// started the answerer's transports (as a relay link's does when tracks
// are added right after it opens), must not make the answerer restart
// ICE: it would take new credentials that the offerer never uses, and
// the two would never connect.
func TestARenegotiationBeforeTheConnectionStartsKeepsItsCredentials(t *testing.T) {
	oe, ae := newEnd(t, signal.TargetPublish), newEnd(t, signal.TargetSubscribe)
	if _, err := oe.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	posted := make(chan func(), 64)
	cfg := ae.config(nil)
	cfg.Post = func(f func()) { posted <- f }
	off, ans := negotiation.NewOfferer(oe.pc, oe.config(nil)), negotiation.NewAnswerer(ae.pc, cfg)

	off.Renegotiate()
	ans.Offer(oe.last(signal.TypeOffer).SDP, nil)
	first := ae.last(signal.TypeAnswer)
	off.Answer(first.SDP, nil)
	if _, err := oe.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	off.Renegotiate()
	ans.Offer(oe.last(signal.TypeOffer).SDP, nil)
	deadline := time.After(10 * time.Second)
	for ans.Holding() {
		select {
		case f := <-posted:
			f()
		case <-deadline:
			t.Fatal("the held offer was never answered")
		}
	}
	second := ae.last(signal.TypeAnswer)
	off.Answer(second.SDP, nil)
	oe.noFailures()
	ae.noFailures()
	if a, b := iceUfrag(t, first.SDP), iceUfrag(t, second.SDP); a != b {
		t.Fatalf("the answerer restarted ICE: ufrag %s, then %s", a, b)
	}
	for _, c := range take(t, oe, 1) {
		ans.Candidate(c)
	}
	for _, c := range take(t, ae, 1) {
		off.Candidate(c)
	}
	waitConnected(t, oe.pc, ae.pc)
}
