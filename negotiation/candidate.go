package negotiation

import (
	"github.com/pion/webrtc/v4"

	"github.com/oakmeet/oakmeet/signal"
)

// ICECandidate is c as pion takes it.
func ICECandidate(c *signal.Candidate) webrtc.ICECandidateInit {
	return webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment}
}

// SignalCandidate is c as the signaling protocol carries it.
func SignalCandidate(c webrtc.ICECandidateInit) *signal.Candidate {
	return &signal.Candidate{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment}
}

// Trickle sends every local candidate pc gathers as a candidate message
// naming target. send is called on pion's goroutines, so it must be safe
// for concurrent use.
func Trickle(pc *webrtc.PeerConnection, target string, send func(signal.Message)) {
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		send(signal.Message{Type: signal.TypeCandidate, Target: target, Candidate: SignalCandidate(c.ToJSON())})
	})
}
