// Package negotiation is the WebRTC offer/answer exchange that the client
// and the media node share: on each PeerConnection one side offers, one
// offer at a time, and the other answers; remote ICE candidates that
// arrive before the remote description are kept until it is set; both
// sides register the same codecs.
//
// What a failure means differs by side — an event for the client's
// caller, an error message to a participant, the end of a relay link — so
// failures go to a hook and each side decides. Relay links also sign every
// SDP; that too is a hook (Signer), so that this package holds no keys.
//
// An Offerer or Answerer belongs to the goroutine that owns its
// PeerConnection's negotiation; it is not safe for concurrent use, and it
// calls its hooks on that goroutine.
package negotiation

import (
	"errors"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/oakmeet/oakmeet/signal"
)

// Step names what failed, so that a side can react as its protocol says.
type Step int

// Steps reported to Config.Failed.
const (
	// StepOffer: creating or applying a local offer.
	StepOffer Step = iota + 1
	// StepApplyAnswer: applying the remote answer, or ErrNoOffer.
	StepApplyAnswer
	// StepApplyOffer: applying the remote offer.
	StepApplyOffer
	// StepAnswer: creating or applying the local answer to a remote offer
	// that was applied. pion cannot roll a remote offer back, so the
	// connection is left in have-remote-offer.
	StepAnswer
	// StepVerify: the Signer refused a remote offer or answer, which was
	// therefore not applied.
	StepVerify
	// StepCandidate: a remote candidate was refused, now or when the
	// queued ones were added, or ErrTooManyCandidates.
	StepCandidate
)

// Errors reported with a Step.
var (
	// ErrNoOffer: an answer came while no offer was outstanding.
	ErrNoOffer = errors.New("no offer is outstanding")
	// ErrTooManyCandidates: more than MaxPendingCandidates arrived before
	// the remote description; the extra one was dropped.
	ErrTooManyCandidates = errors.New("too many candidates before a description")
)

// MaxPendingCandidates bounds the remote candidates kept while there is no
// remote description, so that a peer cannot grow the queue without end.
const MaxPendingCandidates = 128

// Signer signs local descriptions and checks remote ones, for peers that
// must prove which of them wrote an SDP (relay links between nodes).
type Signer interface {
	Sign(d webrtc.SessionDescription) []byte
	// Verify returns the error to report (with StepVerify) if sig is not
	// the remote side's signature of d.
	Verify(d webrtc.SessionDescription, sig []byte) error
}

// Config is what one side plugs into an Offerer or Answerer.
type Config struct {
	// Send delivers an offer or answer message to the remote side.
	Send func(signal.Message)
	// Failed hears of every step that failed (nil: ignored). The
	// negotiation has already done what it can; see Step for the state it
	// leaves.
	Failed func(Step, error)
	// Signer, if set, signs every local description sent (signal.Message
	// Sig) and must accept every remote one before it is applied.
	Signer Signer
	// Post, if set, runs f later on the goroutine that owns the
	// negotiation. An Answerer needs it to hold back a renegotiation that
	// comes before its connection has started (see Answerer.Offer).
	Post func(f func())
}

// side is what both roles do: report, send, verify and keep candidates.
type side struct {
	pc      *webrtc.PeerConnection
	cfg     Config
	pending []webrtc.ICECandidateInit
}

func (s *side) fail(step Step, err error) {
	if s.cfg.Failed != nil {
		s.cfg.Failed(step, err)
	}
}

func (s *side) send(d webrtc.SessionDescription) {
	m := signal.Message{Type: signal.TypeOffer, SDP: d.SDP}
	if d.Type == webrtc.SDPTypeAnswer {
		m.Type = signal.TypeAnswer
	}
	if s.cfg.Signer != nil {
		m.Sig = s.cfg.Signer.Sign(d)
	}
	s.cfg.Send(m)
}

func (s *side) verify(d webrtc.SessionDescription, sig []byte) bool {
	if s.cfg.Signer == nil {
		return true
	}
	if err := s.cfg.Signer.Verify(d, sig); err != nil {
		s.fail(StepVerify, err)
		return false
	}
	return true
}

// setLocal applies a local description just created, unless creating it
// failed.
func (s *side) setLocal(d webrtc.SessionDescription, err error) (webrtc.SessionDescription, error) {
	if err == nil {
		err = s.pc.SetLocalDescription(d)
	}
	return d, err
}

// Candidate adds a remote ICE candidate, or keeps it until the remote
// description is set. An empty candidate (the end of candidates) is
// ignored.
func (s *side) Candidate(c *signal.Candidate) {
	if c == nil || c.Candidate == "" {
		return
	}
	init := ICECandidate(c)
	if s.pc.RemoteDescription() == nil {
		if len(s.pending) >= MaxPendingCandidates {
			s.fail(StepCandidate, ErrTooManyCandidates)
			return
		}
		s.pending = append(s.pending, init)
		return
	}
	if err := s.pc.AddICECandidate(init); err != nil {
		s.fail(StepCandidate, err)
	}
}

// flush adds the candidates kept while there was no remote description.
func (s *side) flush() {
	pending := s.pending
	s.pending = nil
	for _, c := range pending {
		if err := s.pc.AddICECandidate(c); err != nil {
			s.fail(StepCandidate, err)
		}
	}
}

// Offerer is the side that offers on a PeerConnection: it sends an offer
// whenever the connection needs one, waits for its answer before the next,
// and so never has glare to resolve.
type Offerer struct {
	side
	outstanding bool // an offer awaits its answer
	wanted      bool // the connection changed since the last offer
}

// NewOfferer negotiates pc as the offering side.
func NewOfferer(pc *webrtc.PeerConnection, cfg Config) *Offerer {
	return &Offerer{side: side{pc: pc, cfg: cfg}}
}

// Renegotiate notes that the connection's tracks changed and offers at
// once if it can.
func (o *Offerer) Renegotiate() {
	o.wanted = true
	o.MaybeOffer()
}

// MaybeOffer sends an offer if one is wanted, none is outstanding and the
// connection is stable. A side that can be left with a wanted offer (the
// connection was not stable) calls it again later, e.g. on a timer.
func (o *Offerer) MaybeOffer() {
	if !o.wanted || o.outstanding || o.pc.SignalingState() != webrtc.SignalingStateStable {
		return
	}
	o.wanted = false
	offer, err := o.setLocal(o.pc.CreateOffer(nil))
	if err != nil {
		o.fail(StepOffer, err)
		return
	}
	o.outstanding = true
	o.send(offer)
}

// Outstanding reports whether an offer awaits its answer.
func (o *Offerer) Outstanding() bool { return o.outstanding }

// Answer applies the remote answer to the outstanding offer, then sends
// the next offer if one is wanted. An answer pion refused before taking it
// leaves the offer outstanding, so that a proper answer can still follow;
// one that pion took and then failed on is carried on from, as waiting for
// another answer could never end.
func (o *Offerer) Answer(sdp string, sig []byte) {
	if !o.outstanding {
		o.fail(StepApplyAnswer, ErrNoOffer)
		return
	}
	d := webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}
	if !o.verify(d, sig) {
		return
	}
	if err := o.pc.SetRemoteDescription(d); err != nil {
		o.fail(StepApplyAnswer, err)
		if o.pc.SignalingState() == webrtc.SignalingStateHaveLocalOffer {
			return
		}
	}
	o.outstanding = false
	o.flush()
	o.MaybeOffer()
}

// Answerer is the side that answers the remote side's offers on a
// PeerConnection.
type Answerer struct {
	side
	held *webrtc.SessionDescription // an offer waiting for the connection to start
}

// NewAnswerer negotiates pc as the answering side. It takes pc's ICE
// connection state handler if cfg.Post is set.
func NewAnswerer(pc *webrtc.PeerConnection, cfg Config) *Answerer {
	a := &Answerer{side: side{pc: pc, cfg: cfg}}
	if cfg.Post != nil {
		pc.OnICEConnectionStateChange(func(st webrtc.ICEConnectionState) {
			if st != webrtc.ICEConnectionStateNew {
				cfg.Post(a.release)
			}
		})
	}
	return a
}

// Offer applies a remote offer and sends the answer.
//
// pion starts a connection's transports in the background once the first
// answer is set, and until it has, the ICE agent has no remote
// credentials. A second offer applied in that window looks to pion like
// an ICE restart (the remote credentials "changed" from none): the
// answerer takes new credentials while the offerer keeps the first ones,
// and the two never connect. Such an offer is held until the connection
// has started (if Config.Post is set).
func (a *Answerer) Offer(sdp string, sig []byte) {
	d := webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}
	if !a.verify(d, sig) {
		return
	}
	if a.cfg.Post != nil && a.pc.CurrentRemoteDescription() != nil &&
		a.pc.ICEConnectionState() == webrtc.ICEConnectionStateNew {
		held := &d
		a.held = held
		// Should pion never report the start, the offer goes in anyway
		// after maxHold: at worst what would have happened without the
		// hold, never a negotiation stalled for good.
		time.AfterFunc(maxHold, func() {
			a.cfg.Post(func() {
				if a.held == held {
					a.held = nil
					a.apply(*held)
				}
			})
		})
		return
	}
	a.held = nil // a newer offer replaces one held
	a.apply(d)
}

// maxHold bounds how long an offer is held for the connection to start,
// which takes milliseconds.
const maxHold = 2 * time.Second

// Holding reports whether an offer waits for the connection to start.
func (a *Answerer) Holding() bool { return a.held != nil }

func (a *Answerer) release() {
	if d := a.held; d != nil && a.pc.ICEConnectionState() != webrtc.ICEConnectionStateNew {
		a.held = nil
		a.apply(*d)
	}
}

func (a *Answerer) apply(d webrtc.SessionDescription) {
	if err := a.pc.SetRemoteDescription(d); err != nil {
		a.fail(StepApplyOffer, err)
		return
	}
	answer, err := a.setLocal(a.pc.CreateAnswer(nil))
	if err != nil {
		a.fail(StepAnswer, err)
		return
	}
	a.send(answer)
	a.flush()
}
