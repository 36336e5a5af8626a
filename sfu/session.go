package sfu

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/oakmeet/oakmeet/bwe"
	"github.com/oakmeet/oakmeet/negotiation"
	"github.com/oakmeet/oakmeet/nodecert"
	"github.com/oakmeet/oakmeet/signal"
)

// Error codes the node sends besides those of package signal.
const (
	CodeBadSDP           = "bad_sdp"
	CodeBadCandidate     = "bad_candidate"
	CodeUnexpectedType   = "unexpected_type"
	CodeUnexpectedAnswer = "unexpected_answer"
	CodeUnknownTrack     = "unknown_track"
	CodeBadLayer         = "bad_layer"
	CodeUnknownTarget    = "unknown_participant"
)

const (
	writeTimeout = 5 * time.Second
	flushTimeout = time.Second
	tickInterval = 500 * time.Millisecond
	maxChatBytes = 4096
)

var errLeft = errors.New("participant left")

// sessionQueue bounds the signaling queued for one participant: room for
// bursts of small messages (a thousand members joining at once) and for
// eight relay messages of the largest size.
func sessionQueue(cfg Config) queueLimits {
	return queueLimits{messages: 4096, bytes: 8 * cfg.MaxRelayBytes}
}

// session is one participant on this node: its signaling connection, its
// PeerConnections, what it publishes and what it receives. The fields below
// "owned by run" are only touched by the session goroutine; everyone else
// posts closures to mbox.
type session struct {
	endpoint
	id Identity

	est *bwe.Estimator // set during NewPeerConnection

	// connected is set once either PeerConnection has reached connected.
	connected atomic.Bool

	// pubPC carries the participant's media to the node (the client
	// offers); subPC carries everyone else's media to it (the node offers).
	pubPC, subPC *webrtc.PeerConnection

	// owned by run
	pubs   map[*webrtc.RTPReceiver]*publishedTrack
	downs  map[string]*downSlot
	pubNeg *negotiation.Answerer // on pubPC
	// sources is the newest publish offer's declaration: track source by
	// transceiver mid.
	sources  map[string]string
	subNeg   *negotiation.Offerer // on subPC
	lastTick time.Time
}

type downSlot struct {
	dt     *downTrack
	sender *webrtc.RTPSender
}

func newSession(ctx context.Context, s *SFU, c Conn, id Identity) (*session, error) {
	sess := &session{
		id:       id,
		pubs:     map[*webrtc.RTPReceiver]*publishedTrack{},
		downs:    map[string]*downSlot{},
		lastTick: time.Now(),
	}
	sess.open(ctx, s, c, s.log.With("meeting", id.Meeting, "participant", id.Participant), sessionQueue(s.cfg), "signaling")
	var err error
	if sess.pubPC, err = sess.newPC(signal.TargetPublish, receives, nil); err != nil {
		sess.stop(err)
		return nil, err
	}
	if sess.subPC, err = sess.newPC(signal.TargetSubscribe, sends, func(e *bwe.Estimator) { sess.est = e }); err != nil {
		_ = sess.pubPC.Close()
		sess.stop(err)
		return nil, err
	}
	hooks := negotiation.Config{Send: sess.send, Failed: sess.negotiationFailed,
		Signer: participantSigner{key: s.cfg.Key, id: id}, Post: sess.post}
	sess.pubNeg = negotiation.NewAnswerer(sess.pubPC, hooks)
	sess.subNeg = negotiation.NewOfferer(sess.subPC, hooks)
	sess.pubPC.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		sess.mbox.post(func() { sess.onTrack(t, r) })
	})
	return sess, nil
}

func (s *session) newPC(target string, dir direction, onBWE func(*bwe.Estimator)) (*webrtc.PeerConnection, error) {
	return s.sfu.newPeerConnection(s.sfu.se, dir, onBWE, target, target, s.sendSigned, s.finish,
		func() { s.connected.Store(true) })
}

// sendSigned sends m, signing it first if it is a candidate: the node's
// identity key covers each candidate string it trickles to the participant
// (kind signal.SigKindCandidate + target), so that nobody between them can
// slip in a candidate of a forwarder elsewhere. Called on pion's
// goroutines; send is safe for that.
func (s *session) sendSigned(m signal.Message) {
	if m.Type == signal.TypeCandidate && m.Candidate != nil {
		m.Sig = nodecert.SignSDP(s.sfu.cfg.Key, s.id.Meeting, s.id.Participant, s.id.Nonce, signal.SigKindCandidate+m.Target, m.Candidate.Candidate)
	}
	s.send(m)
}

// participant is how others see this participant.
func (s *session) participant() signal.Participant {
	return signal.Participant{ID: s.id.Participant, Name: s.id.Name, Since: s.id.Joined.UnixMilli()}
}

// serve runs the participant until it leaves, is kicked, or its connection
// or the node goes away.
func (s *session) serve() error {
	s.startIO(s.readLoop)

	r := s.sfu.attach(s.id.Meeting)
	s.room = r
	r.mbox.post(func() { r.join(s) })
	s.sfu.stats.participants.Add(1)
	if d := s.sfu.cfg.NegotiationTimeout; d > 0 {
		t := time.AfterFunc(d, func() { s.mbox.post(s.checkConnected) })
		defer t.Stop()
	}

	cause := s.run()

	r.mbox.post(func() { r.leave(s) })
	for _, d := range s.downs {
		d.dt.pub.removeDown(d.dt)
	}
	for _, p := range s.pubs {
		s.endPublication(p)
	}
	s.closePCs(s.subPC, s.pubPC)
	reason := "bye"
	if !errors.Is(cause, errLeft) {
		reason = cause.Error()
	}
	s.hangUp(reason)
	s.sfu.detach(r)
	s.sfu.stats.participants.Add(-1)
	if errors.Is(cause, errLeft) {
		return nil
	}
	return cause
}

// checkConnected ends a participant whose media never connected by the
// negotiation deadline: one that joins and then only answers pings would
// otherwise hold its seat for as long as it likes.
func (s *session) checkConnected() {
	if s.connected.Load() {
		return
	}
	s.send(signal.Message{Type: signal.TypeLeave, Reason: signal.ReasonNegotiationTimeout})
	s.finish(ErrNotNegotiated)
}

func (s *session) run() error { return runOwner(s.ctx, s.mbox, s.tick) }

// readLoop runs until the connection is closed by serve's teardown. It
// does not read with the session's context: coder/websocket closes the
// connection when a read is cancelled, which would cut off the last
// messages (a leave with its reason) still being flushed.
func (s *session) readLoop() {
	for {
		data, err := s.conn.Read(context.Background())
		if err != nil {
			s.finish(fmt.Errorf("signaling: %w", err))
			return
		}
		m, err := signal.DecodeLimits(data, s.sfu.cfg.MaxMessageBytes, s.sfu.cfg.MaxRelayBytes)
		if err != nil {
			var se *signal.Error
			if errors.As(err, &se) {
				s.sendError(se.Code, se.Message)
			} else {
				s.sendError(signal.CodeBadMessage, err.Error())
			}
			continue
		}
		if m.Type == signal.TypeLeave {
			// Decided here rather than on the session goroutine so that the
			// close that follows a leave cannot overtake it.
			s.finish(errLeft)
			return
		}
		s.mbox.post(func() { s.handle(m) })
	}
}

func (s *session) sendError(code, msg string) {
	s.send(signal.Message{Type: signal.TypeError, Code: code, Message: msg})
}

func (s *session) handle(m signal.Message) {
	switch m.Type {
	case signal.TypeOffer:
		if m.Sources != nil {
			s.sources = m.Sources
		}
		s.onOffer(m.SDP)
	case signal.TypeAnswer:
		s.subNeg.Answer(m.SDP, nil)
	case signal.TypeCandidate:
		s.onCandidate(m.Target, m.Candidate)
	case signal.TypeSubscribe:
		s.onSubscribe(m.TrackID, m.Layer)
	case signal.TypeChat:
		if len(m.Text) > maxChatBytes {
			s.sendError(signal.CodeBadMessage, fmt.Sprintf("chat text over %d bytes", maxChatBytes))
			return
		}
		from, text := s.id.Participant, m.Text
		s.room.mbox.post(func() { s.room.chat(from, text) })
	case signal.TypeRelay:
		to, payload := m.To, m.Payload
		s.room.mbox.post(func() { s.room.relay(s, to, payload) })
	case signal.TypeLeave:
		s.finish(errLeft)
	case signal.TypePing:
		s.send(signal.Message{Type: signal.TypePong})
	case signal.TypePong:
	case signal.TypeError:
		s.log.Debug("client reported an error", "code", m.Code, "message", m.Message)
	default:
		s.sendError(CodeUnexpectedType, fmt.Sprintf("%q is not sent by clients", m.Type))
	}
}

// Negotiation. The client offers on the publish connection and the node
// answers; the node offers on the subscribe connection, one offer at a
// time, and the client answers. Offers never cross, so there is no glare.

func (s *session) onOffer(sdp string) {
	if err := checkOffer(sdp); err != nil {
		s.sendError(CodeBadSDP, err.Error())
		return
	}
	s.pubNeg.Offer(sdp, nil)
}

// negotiationFailed tells the participant what was wrong with its SDP or
// candidates, and ends the session where a connection cannot go on.
func (s *session) negotiationFailed(step negotiation.Step, err error) {
	switch step {
	case negotiation.StepApplyOffer:
		s.sendError(CodeBadSDP, err.Error())
		if s.pubPC.SignalingState() != webrtc.SignalingStateStable {
			// pion rejects malformed SDP before changing state; an offer
			// that failed later left the connection half-applied, and
			// pion cannot roll it back.
			s.finish(fmt.Errorf("publish offer half applied: %w", err))
		}
	case negotiation.StepAnswer:
		// pion cannot roll a remote offer back; a publish connection stuck
		// in have-remote-offer cannot go on.
		s.sendError(CodeBadSDP, err.Error())
		s.finish(fmt.Errorf("answer publish offer: %w", err))
	case negotiation.StepOffer:
		s.finish(fmt.Errorf("create subscribe offer: %w", err))
	case negotiation.StepApplyAnswer:
		if errors.Is(err, negotiation.ErrNoOffer) {
			s.sendError(CodeUnexpectedAnswer, "no subscribe offer is outstanding")
			return
		}
		// The offer stays outstanding unless pion took the answer before
		// it failed: the client may still send a proper answer.
		s.sendError(CodeBadSDP, err.Error())
	case negotiation.StepCandidate:
		s.sendError(CodeBadCandidate, err.Error())
	}
}

func (s *session) onCandidate(target string, c *signal.Candidate) {
	if target == signal.TargetSubscribe {
		s.subNeg.Candidate(c)
	} else {
		s.pubNeg.Candidate(c)
	}
}

// Publishing.

func newTrackID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:])
}

func (s *session) onTrack(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
	if s.ctx.Err() != nil {
		return
	}
	pub := s.pubs[r]
	fresh := pub == nil
	if fresh {
		info := signal.Track{ID: newTrackID(), Participant: s.id.Participant, Stream: s.id.Participant, Kind: t.Kind().String(),
			Source: s.trackSource(r, t.Kind().String())}
		for _, tr := range r.Tracks() {
			if tr.RID() != "" {
				info.Layers = append(info.Layers, tr.RID())
			}
		}
		pub = newPublishedTrack(info, t.Codec().RTPCodecCapability, t.Kind(), s.pubPC.WriteRTCP, &s.sfu.stats, s.sfu.epoch)
		pub.sends = s.sfu.sends
		s.pubs[r] = pub
	}
	q := pub.quality(t.RID())
	if q < 0 || pub.layers[q].Load() != nil {
		s.log.Warn("ignoring extra incoming stream", "rid", t.RID(), "ssrc", t.SSRC())
		return
	}
	l := pub.addLayer(q, t.RID(), uint32(t.SSRC()))
	s.goMedia(func() {
		pub.read(l, t, nil)
		s.mbox.post(func() { s.layerEnded(pub, l) })
	})
	s.goMedia(func() { readReceiverRTCP(r, t.RID()) })
	if fresh {
		s.sfu.stats.tracksIn.Add(1)
		s.room.mbox.post(func() { s.room.publish(s, pub) })
	}
}

// trackSource is the source the publisher declared for the transceiver of
// r, or the default of its kind. A declaration of the wrong kind (a
// "screen" audio track) is not believed.
func (s *session) trackSource(r *webrtc.RTPReceiver, kind string) string {
	for _, tr := range s.pubPC.GetTransceivers() {
		if tr.Receiver() != r {
			continue
		}
		src := s.sources[tr.Mid()]
		audio := src == signal.SourceMicrophone || src == signal.SourceScreenAudio
		if src != "" && audio == (kind == signal.KindAudio) {
			return src
		}
	}
	return signal.DefaultSource(kind)
}

// readReceiverRTCP drains the publisher's RTCP (sender reports) so the
// receiver's interceptors see it.
func readReceiverRTCP(r *webrtc.RTPReceiver, rid string) {
	buf := make([]byte, maxPacket)
	for {
		var err error
		if rid != "" {
			_, _, err = r.ReadSimulcast(buf, rid)
		} else {
			_, _, err = r.Read(buf)
		}
		if err != nil {
			return
		}
	}
}

func (s *session) layerEnded(pub *publishedTrack, l *upLayer) {
	if !pub.dropLayer(l) {
		return
	}
	for r, p := range s.pubs {
		if p == pub {
			delete(s.pubs, r)
			s.endPublication(pub)
		}
	}
}

func (s *session) endPublication(pub *publishedTrack) {
	if pub.closed.Swap(true) {
		return
	}
	s.sfu.stats.tracksIn.Add(-1)
	s.room.mbox.post(func() { s.room.unpublish(pub) })
}

// Subscribing.

func (s *session) subscribe(pub *publishedTrack) {
	if s.ctx.Err() != nil || pub.closed.Load() {
		return
	}
	if _, ok := s.downs[pub.info.ID]; ok {
		return
	}
	dt := newDownTrack(pub, &s.sfu.stats, s.room.bytes)
	s.retarget(dt, pub.now())
	sender, err := s.subPC.AddTrack(dt)
	if err != nil {
		s.log.Warn("add subscription", "track", pub.info.ID, "err", err)
		return
	}
	s.downs[pub.info.ID] = &downSlot{dt: dt, sender: sender}
	s.goMedia(func() { dt.readRTCP(sender) })
	pub.addDown(dt)
	s.subNeg.Renegotiate()
}

func (s *session) unsubscribe(pub *publishedTrack) {
	slot := s.downs[pub.info.ID]
	if slot == nil || slot.dt.pub != pub {
		return
	}
	delete(s.downs, pub.info.ID)
	pub.removeDown(slot.dt)
	if err := s.subPC.RemoveTrack(slot.sender); err != nil {
		s.log.Debug("remove subscription", "track", pub.info.ID, "err", err)
	}
	s.subNeg.Renegotiate()
}

func (s *session) onSubscribe(trackID, layer string) {
	slot := s.downs[trackID]
	if slot == nil {
		s.sendError(CodeUnknownTrack, fmt.Sprintf("no subscription to track %q", trackID))
		return
	}
	q, ok := layerName(layer)
	if !ok {
		for i := range slot.dt.pub.layers {
			if l := slot.dt.pub.layers[i].Load(); l != nil && l.rid == layer {
				q, ok = i, true
			}
		}
	}
	if !ok {
		s.sendError(CodeBadLayer, fmt.Sprintf("track %q has no layer %q", trackID, layer))
		return
	}
	slot.dt.want = q
	s.retarget(slot.dt, slot.dt.pub.now())
}

// retarget recomputes which layer a subscription should receive and asks
// for a key frame on it when that changes.
func (s *session) retarget(dt *downTrack, now int64) {
	ceiling := min(dt.want, dt.cap)
	if old := dt.ceiling.Swap(int32(ceiling)); int(old) != ceiling && dt.pub.origin != nil {
		// The link tells its peer at once rather than at its next tick,
		// so that a layer this subscriber now needs starts crossing
		// promptly.
		l := dt.pub.origin
		l.post(func() { l.tellWanted(time.Now()) })
	}
	t := pickLayer(dt.pub.available(now), ceiling)
	if old := dt.target.Swap(int32(t)); int(old) != t {
		dt.pub.requestKeyFrame(t)
	}
}

// tick measures this participant's incoming layer rates, spends its
// estimated downlink bandwidth over its video subscriptions, and retries a
// deferred offer.
func (s *session) tick(now time.Time) {
	elapsed := now.Sub(s.lastTick).Seconds()
	s.lastTick = now
	for _, p := range s.pubs {
		p.sampleRates(elapsed)
	}
	s.allocate()
	s.subNeg.MaybeOffer()
}

func (s *session) allocate() {
	var video []*downTrack
	var allocs []allocation
	var audio uint64
	at := s.sfu.now()
	for _, d := range s.downs {
		pub := d.dt.pub
		if !pub.isVideo() {
			if l := pub.layers[0].Load(); l != nil {
				audio += l.rateBits.Load()
			}
			continue
		}
		a := pub.allocation(d.dt.want, at)
		video = append(video, d.dt)
		allocs = append(allocs, a)
	}
	budget := uint64(bweMax)
	if s.est != nil {
		budget = uint64(max(s.est.Target(), 0))
	}
	budget -= min(budget, audio)
	caps := allocate(budget, allocs)
	for i, dt := range video {
		if caps[i] >= 0 {
			dt.cap = caps[i]
		}
		s.retarget(dt, at)
	}
}

// participantSigner signs every offer and answer sent to the participant
// with the node's identity key, over the meeting, the participant and its
// join nonce (nodecert.SignSDP). The participant's SDPs are not signed:
// its join token already says who it is.
type participantSigner struct {
	key ed25519.PrivateKey
	id  Identity
}

func (p participantSigner) Sign(d webrtc.SessionDescription) []byte {
	kind := "offer"
	if d.Type == webrtc.SDPTypeAnswer {
		kind = "answer"
	}
	return nodecert.SignSDP(p.key, p.id.Meeting, p.id.Participant, p.id.Nonce, kind, d.SDP)
}

func (participantSigner) Verify(webrtc.SessionDescription, []byte) error { return nil }
