package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/negotiation"
	"github.com/oakmeet/oakmeet/nodecert"
	"github.com/oakmeet/oakmeet/signal"
)

const closeTimeout = 2 * time.Second

// readLoop turns WebSocket messages into protocol messages for the loop.
// It runs until the connection closes.
func (s *Session) readLoop(in chan<- signal.Message) {
	defer close(s.readerDone)
	for {
		_, data, err := s.ws.Read(context.Background())
		if err != nil {
			s.cancel(fmt.Errorf("signaling: %w", err))
			return
		}
		// Key messages grow with the roster and have a limit of their own;
		// the node holds every other kind to signal.MaxMessageBytes.
		m, err := signal.DecodeLimit(data, signal.MaxRelayBytes)
		if err != nil {
			s.log.Warn("undecodable message from node", "err", err)
			continue
		}
		if m.Type == signal.TypeLeave {
			// Decided here so the close that follows cannot overtake it.
			s.cancel(&LeftError{Reason: m.Reason})
			// Reading on answers the node's close handshake at once;
			// otherwise the node waits out its close timeout.
			for {
				if _, _, err := s.ws.Read(context.Background()); err != nil {
					return
				}
			}
		}
		select {
		case in <- m:
		case <-s.ctx.Done():
			return
		}
	}
}

func (s *Session) writeLoop() {
	defer s.wg.Done()
	write := func(b []byte) bool {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		return s.ws.Write(ctx, websocket.MessageText, b) == nil
	}
	for {
		select {
		case b := <-s.out:
			if !write(b) {
				s.cancel(errors.New("signaling: write failed"))
				return
			}
		case <-s.ctx.Done():
			for {
				select {
				case b := <-s.out:
					if !write(b) {
						return
					}
				default:
					return
				}
			}
		}
	}
}

// loop owns the negotiation state: every incoming message and every call
// from the API runs here, one at a time.
func (s *Session) loop(in <-chan signal.Message) {
	defer s.wg.Done()
	defer func() {
		s.events.push(Event{Type: EventClosed, Err: context.Cause(s.ctx)})
	}()
	for {
		select {
		case <-s.ctx.Done():
			return
		case m := <-in:
			s.handle(m)
		case f := <-s.cmds:
			f()
		}
	}
}

// post runs f on the loop without waiting for it.
func (s *Session) post(f func()) {
	go func() {
		select {
		case s.cmds <- f:
		case <-s.ctx.Done():
		}
	}()
}

// do runs f on the loop and returns its error.
func (s *Session) do(f func() error) error {
	done := make(chan error, 1)
	select {
	case s.cmds <- func() { done <- f() }:
	case <-s.ctx.Done():
		return ErrClosed
	}
	select {
	case err := <-done:
		return err
	case <-s.ctx.Done():
		return ErrClosed
	}
}

func (s *Session) send(m signal.Message) {
	b, err := signal.Encode(m)
	if err != nil {
		s.log.Error("encode message", "type", m.Type, "err", err)
		return
	}
	select {
	case s.out <- b:
	case <-s.ctx.Done():
	}
}

func (s *Session) sendChecked(m signal.Message) error {
	b, err := signal.Encode(m)
	if err != nil {
		return err
	}
	return s.SendRaw(b)
}

func relayPayload(p []byte) json.RawMessage {
	if json.Valid(p) {
		return json.RawMessage(p)
	}
	b, _ := json.Marshal(base64.StdEncoding.EncodeToString(p))
	return b
}

func (s *Session) handle(m signal.Message) {
	switch m.Type {
	case signal.TypeOffer:
		if s.proveSDP(m) {
			s.sub.Offer(m.SDP, nil)
		}
	case signal.TypeAnswer:
		if s.proveSDP(m) {
			s.pub.Answer(m.SDP, nil)
		}
	case signal.TypeCandidate:
		if s.proveCandidate(m) {
			s.onCandidate(m.Target, m.Candidate)
		}
	case signal.TypeParticipantJoined:
		s.participants[m.Participant.ID] = *m.Participant
		s.events.push(Event{Type: EventParticipantJoined, Participant: *m.Participant})
	case signal.TypeParticipantLeft:
		delete(s.participants, m.Participant.ID)
		s.events.push(Event{Type: EventParticipantLeft, Participant: *m.Participant})
	case signal.TypeTrackPublished:
		s.tracks[m.Track.ID] = *m.Track
		if m.Track.Participant != s.self.ID {
			s.events.push(Event{Type: EventTrackPublished, Info: *m.Track})
		}
	case signal.TypeTrackUnpublished:
		delete(s.tracks, m.Track.ID)
		if m.Track.Participant != s.self.ID {
			s.events.push(Event{Type: EventTrackRemoved, Info: *m.Track})
		}
	case signal.TypeChat:
		s.events.push(Event{Type: EventChat, Participant: s.participant(m.From), Text: m.Text, Time: time.UnixMilli(m.Time)})
	case signal.TypeRelay:
		s.events.push(Event{Type: EventRelay, Participant: s.participant(m.From), Payload: m.Payload})
	case signal.TypeError:
		s.events.push(Event{Type: EventError, Err: &ServerError{Code: m.Code, Message: m.Message}})
	case signal.TypePing:
		s.send(signal.Message{Type: signal.TypePong})
	case signal.TypeMove:
		s.events.push(Event{Type: EventMove, Text: m.Reason})
	case signal.TypeHost:
		s.events.push(Event{Type: EventHost, Payload: m.Payload})
	}
}

// proveSDP checks a node offer or answer's signature with the certified
// identity key before the description is applied: a machine that is not
// the certified node (or that rewrote the DTLS fingerprint in the SDP)
// cannot sign over this session's fresh nonce. A failure ends the session
// with the refusal as its cause; nothing of the SDP is applied.
func (s *Session) proveSDP(m signal.Message) bool {
	if s.opts.NodeKey == nil {
		return true
	}
	if err := nodecert.VerifySDP(s.opts.NodeKey, m.Sig, s.meeting, s.self.ID, s.nonce, string(m.Type), m.SDP); err != nil {
		what := "a wrong signature"
		if len(m.Sig) == 0 {
			what = "no signature"
		}
		s.cancel(&RefusalError{Code: api.CodeNodeProofInvalid, Node: s.jr.Node.ID, Country: s.jr.Node.Country,
			Message: fmt.Sprintf("node %s sent its %s with %s by its certified identity key", s.jr.Node.ID, m.Type, what)})
		return false
	}
	s.provenOnce.Do(func() { close(s.proven) })
	return true
}

// proveCandidate checks a trickled candidate's signature by the certified
// identity key over its target and candidate string: one that does not
// verify (injected on the way, naming a forwarder elsewhere) is dropped
// and logged, never added.
func (s *Session) proveCandidate(m signal.Message) bool {
	if s.opts.NodeKey == nil || m.Candidate == nil {
		return true
	}
	if err := nodecert.VerifySDP(s.opts.NodeKey, m.Sig, s.meeting, s.self.ID, s.nonce, signal.SigKindCandidate+m.Target, m.Candidate.Candidate); err != nil {
		s.log.Warn("remote candidate dropped: not signed by the node's certified identity key", "target", m.Target, "candidate", m.Candidate.Candidate)
		return false
	}
	return true
}

// Proven is closed once the node has proved it holds its certified
// identity key (the first node SDP whose signature verified); at once for
// a session without Options.NodeKey.
func (s *Session) Proven() <-chan struct{} { return s.proven }

// ErrRemoved is the cause of a session the node ended with a leave message.
var ErrRemoved = errors.New("client: removed by the node")

// ReasonRemoved is the leave reason of a participant the host removed.
const ReasonRemoved = signal.ReasonRemoved

// LeftError is why the node ended a session with a leave message: Reason
// is the node's ("removed" when the host removed the participant). It
// matches ErrRemoved.
type LeftError struct{ Reason string }

func (e *LeftError) Error() string { return ErrRemoved.Error() + ": " + e.Reason }

// Is makes errors.Is(err, ErrRemoved) hold.
func (e *LeftError) Is(target error) bool { return target == ErrRemoved }

// RemovedByHost reports whether err says the host removed the participant.
func RemovedByHost(err error) bool {
	var le *LeftError
	return errors.As(err, &le) && le.Reason == ReasonRemoved
}

func (s *Session) participant(id string) signal.Participant {
	if p, ok := s.participants[id]; ok {
		return p
	}
	if id == s.self.ID {
		return s.self
	}
	return signal.Participant{ID: id}
}

// Negotiation. The client offers on the publish connection, one offer at a
// time; the node offers on the subscribe connection and the client answers.
// Failures are the caller's to see, as events; a refused candidate is only
// logged, since ICE may well succeed with the others.

// negotiate offers the publish connection's changed tracks to the node.
func (s *Session) negotiate() { s.pub.Renegotiate() }

func (s *Session) negotiationHooks(target string) negotiation.Config {
	send := s.send
	if target == signal.TargetPublish {
		send = func(m signal.Message) {
			if m.Type == signal.TypeOffer {
				m.Sources = s.sources()
			}
			s.send(m)
		}
	}
	return negotiation.Config{Send: send, Post: s.post, Failed: func(step negotiation.Step, err error) {
		var what string
		switch step {
		case negotiation.StepOffer:
			what = "create offer"
		case negotiation.StepApplyAnswer:
			if errors.Is(err, negotiation.ErrNoOffer) {
				return
			}
			what = "apply node answer"
		case negotiation.StepApplyOffer:
			what = "apply node offer"
		case negotiation.StepAnswer:
			what = "answer node offer"
		default:
			s.log.Debug("add candidate", "target", target, "err", err)
			return
		}
		s.events.push(Event{Type: EventError, Err: fmt.Errorf("%s: %w", what, err)})
	}}
}

func (s *Session) onCandidate(target string, c *signal.Candidate) {
	if target == signal.TargetSubscribe {
		s.sub.Candidate(c)
	} else {
		s.pub.Candidate(c)
	}
}

func (s *Session) onTrack(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
	info, ok := s.tracks[t.ID()]
	if !ok {
		info = signal.Track{ID: t.ID(), Participant: t.StreamID(), Stream: t.StreamID(), Kind: t.Kind().String()}
	}
	s.events.push(Event{Type: EventTrackAdded, Info: info, Participant: s.participant(info.Participant), Track: t, Receiver: r})
}
