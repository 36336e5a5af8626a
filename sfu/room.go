package sfu

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/oakmeet/oakmeet/signal"
)

// room is one meeting on this node. Its goroutine owns the member list and
// the published tracks; sessions and the SFU reach it only through mbox,
// and it reaches sessions only through their mailboxes and send queues, so
// it never blocks on a participant.
type room struct {
	meeting string
	mbox    *mailbox
	bytes   *atomic.Uint64 // forwarded bytes of the meeting
	cancel  context.CancelFunc
	refs    int // sessions attached; guarded by SFU.mu

	// roster is a snapshot of member ids for SFU.Participants, replaced
	// whole by the room goroutine.
	roster atomic.Pointer[[]string]

	// owned by the room goroutine
	members []*session
	tracks  []*publishedTrack
}

func (r *room) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.mbox.notify:
			r.mbox.drain()
		}
	}
}

func (r *room) member(id string) *session {
	for _, m := range r.members {
		if m.id.Participant == id {
			return m
		}
	}
	return nil
}

func (r *room) publishRoster() {
	ids := make([]string, len(r.members))
	for i, m := range r.members {
		ids[i] = m.id.Participant
	}
	r.roster.Store(&ids)
}

func (r *room) broadcast(m signal.Message, except *session) {
	for _, x := range r.members {
		if x != except {
			x.send(m)
		}
	}
}

func (r *room) join(s *session) {
	if old := r.member(s.id.Participant); old != nil {
		// The same participant connected again (a reconnect): the newer
		// connection wins.
		r.remove(old)
		old.mbox.post(func() {
			old.send(signal.Message{Type: signal.TypeLeave, Reason: "replaced by a newer connection"})
			old.finish(ErrReplaced)
		})
	}
	w := signal.Message{
		Type: signal.TypeWelcome, ID: s.id.Participant, Name: s.id.Name, Meeting: r.meeting,
		ICEServers: s.sfu.cfg.ICEServers,
	}
	for _, m := range r.members {
		w.Participants = append(w.Participants, signal.Participant{ID: m.id.Participant, Name: m.id.Name})
	}
	for _, t := range r.tracks {
		w.Tracks = append(w.Tracks, t.info)
	}
	s.send(w)
	r.broadcast(signal.Message{Type: signal.TypeParticipantJoined, Participant: &signal.Participant{ID: s.id.Participant, Name: s.id.Name}}, nil)
	r.members = append(r.members, s)
	r.publishRoster()
	for _, t := range r.tracks {
		s.mbox.post(func() { s.subscribe(t) })
	}
}

func (r *room) leave(s *session) {
	for _, m := range r.members {
		if m == s {
			r.remove(s)
			return
		}
	}
}

// remove takes a member out and withdraws everything it published.
func (r *room) remove(s *session) {
	for i, m := range r.members {
		if m == s {
			r.members = append(r.members[:i:i], r.members[i+1:]...)
			break
		}
	}
	r.publishRoster()
	for _, t := range append([]*publishedTrack(nil), r.tracks...) {
		if t.publisher == s.id.Participant {
			r.unpublish(t)
		}
	}
	r.broadcast(signal.Message{Type: signal.TypeParticipantLeft, Participant: &signal.Participant{ID: s.id.Participant, Name: s.id.Name}}, nil)
}

func (r *room) publish(from *session, t *publishedTrack) {
	if r.member(t.publisher) != from || t.closed.Load() {
		return
	}
	r.tracks = append(r.tracks, t)
	r.broadcast(signal.Message{Type: signal.TypeTrackPublished, Track: &t.info}, nil)
	for _, m := range r.members {
		if m != from {
			m.mbox.post(func() { m.subscribe(t) })
		}
	}
}

func (r *room) unpublish(t *publishedTrack) {
	for i, x := range r.tracks {
		if x != t {
			continue
		}
		r.tracks = append(r.tracks[:i:i], r.tracks[i+1:]...)
		r.broadcast(signal.Message{Type: signal.TypeTrackUnpublished, Track: &t.info}, nil)
		for _, m := range r.members {
			m.mbox.post(func() { m.unsubscribe(t) })
		}
		return
	}
}

func (r *room) chat(from, text string) {
	r.broadcast(signal.Message{Type: signal.TypeChat, From: from, Text: text, Time: time.Now().UnixMilli()}, nil)
}

// relay passes an opaque end-to-end payload on, stamping the sender so that
// a member cannot pose as another.
func (r *room) relay(from *session, to string, payload json.RawMessage) {
	m := signal.Message{Type: signal.TypeRelay, From: from.id.Participant, To: to, Payload: payload}
	if to == "" {
		r.broadcast(m, from)
		return
	}
	target := r.member(to)
	if target == nil {
		from.sendError(CodeUnknownTarget, fmt.Sprintf("no participant %q in the meeting", to))
		return
	}
	target.send(m)
}

func (r *room) kick(participant, reason string) {
	m := r.member(participant)
	if m == nil {
		return
	}
	m.mbox.post(func() {
		m.send(signal.Message{Type: signal.TypeLeave, Reason: reason})
		m.finish(fmt.Errorf("%w: %s", ErrKicked, reason))
	})
}
