package sfu_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/oakmeet/oakmeet/nodecert"
	"github.com/oakmeet/oakmeet/sfu"
	"github.com/oakmeet/oakmeet/sfu/sfutest"
	"github.com/oakmeet/oakmeet/signal"
)

// The node signs the answer to a participant's publish offer with its
// identity key, over the meeting, that participant and its join nonce:
// the signature verifies for it and for nobody else.
func TestNodeSignsItsSDPToEachParticipant(t *testing.T) {
	t.Parallel()
	srv := sfutest.Start(t, sfu.Config{})
	p := sfutest.Join(t, srv.URL, "alice", sfutest.Token("m", "alice", "Alice"))
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	p.Send(signal.Message{Type: signal.TypeOffer, SDP: offer.SDP})
	answer := p.WaitFor("the node's answer", func(m signal.Message) bool { return m.Type == signal.TypeAnswer })
	if err := nodecert.VerifySDP(srv.IdentityKey, answer.Sig, "m", "alice", p.Nonce, "answer", answer.SDP); err != nil {
		t.Fatalf("the node's answer: %v", err)
	}
	other := make([]byte, len(p.Nonce))
	for name, check := range map[string]error{
		"another participant": nodecert.VerifySDP(srv.IdentityKey, answer.Sig, "m", "bob", p.Nonce, "answer", answer.SDP),
		"another meeting":     nodecert.VerifySDP(srv.IdentityKey, answer.Sig, "m2", "alice", p.Nonce, "answer", answer.SDP),
		"another nonce":       nodecert.VerifySDP(srv.IdentityKey, answer.Sig, "m", "alice", other, "answer", answer.SDP),
		"as an offer":         nodecert.VerifySDP(srv.IdentityKey, answer.Sig, "m", "alice", p.Nonce, "offer", answer.SDP),
		"another SDP":         nodecert.VerifySDP(srv.IdentityKey, answer.Sig, "m", "alice", p.Nonce, "answer", answer.SDP+"a=x\r\n"),
	} {
		if check == nil {
			t.Errorf("the answer's signature verifies for %s", name)
		}
	}
	// Every offer the node sent (its subscribe connection's) is signed
	// the same way.
	for _, m := range p.Received() {
		if m.Type == signal.TypeOffer {
			if err := nodecert.VerifySDP(srv.IdentityKey, m.Sig, "m", "alice", p.Nonce, "offer", m.SDP); err != nil {
				t.Fatalf("the node's offer: %v", err)
			}
		}
	}
}

// The welcome names every ICE URL the node vouches for (its own TURN
// server's and its configured ICE servers') and signs them, and every
// candidate the node trickles to a participant is signed over its target
// and candidate string: a client can refuse a TURN server or candidate
// someone else added.
func TestNodeSignsItsWelcomeAndCandidates(t *testing.T) {
	t.Parallel()
	srv := sfutest.Start(t, sfu.Config{
		ICEServers: []signal.ICEServer{{URLs: []string{"stun:stun.example.net:3478"}}},
		TURNURLs:   func() []string { return []string{"turn:192.0.2.1:3478?transport=udp"} },
	})
	p := sfutest.Join(t, srv.URL, "alice", sfutest.Token("m", "alice", "Alice"))
	w := p.WaitFor("welcome", func(m signal.Message) bool { return m.Type == signal.TypeWelcome })
	want := []string{"turn:192.0.2.1:3478?transport=udp", "stun:stun.example.net:3478"}
	if !slices.Equal(w.ICEURLs, want) {
		t.Fatalf("welcome ice_urls %v, want %v", w.ICEURLs, want)
	}
	joined := strings.Join(want, "\n")
	if err := nodecert.VerifySDP(srv.IdentityKey, w.Sig, "m", "alice", p.Nonce, signal.SigKindWelcome, joined); err != nil {
		t.Fatalf("the welcome's signature: %v", err)
	}
	if nodecert.VerifySDP(srv.IdentityKey, w.Sig, "m", "alice", p.Nonce, signal.SigKindWelcome, joined+"\nturn:203.0.113.9:3478") == nil {
		t.Fatal("the welcome's signature verifies with a TURN URL added")
	}

	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	p.Send(signal.Message{Type: signal.TypeOffer, SDP: offer.SDP})
	c := p.WaitFor("a publish candidate", func(m signal.Message) bool {
		return m.Type == signal.TypeCandidate && m.Target == signal.TargetPublish && m.Candidate != nil
	})
	if err := nodecert.VerifySDP(srv.IdentityKey, c.Sig, "m", "alice", p.Nonce, signal.SigKindCandidate+signal.TargetPublish, c.Candidate.Candidate); err != nil {
		t.Fatalf("the candidate's signature: %v", err)
	}
	if nodecert.VerifySDP(srv.IdentityKey, c.Sig, "m", "alice", p.Nonce, signal.SigKindCandidate+signal.TargetSubscribe, c.Candidate.Candidate) == nil {
		t.Fatal("a publish candidate's signature verifies for the subscribe connection")
	}
	for _, m := range p.Received() {
		if m.Type == signal.TypeCandidate {
			if err := nodecert.VerifySDP(srv.IdentityKey, m.Sig, "m", "alice", p.Nonce, signal.SigKindCandidate+m.Target, m.Candidate.Candidate); err != nil {
				t.Fatalf("candidate %q for %s: %v", m.Candidate.Candidate, m.Target, err)
			}
		}
	}
}
