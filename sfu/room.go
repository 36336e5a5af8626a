package sfu

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/oakmeet/oakmeet/nodecert"
	"github.com/oakmeet/oakmeet/signal"
)

// room is one meeting on this node. Its goroutine owns the member list, the
// relay links, the roster and the published tracks; sessions, links and the
// SFU reach it only through mbox, and it reaches them only through their
// mailboxes and send queues, so it never blocks on a participant or a peer.
//
// Relays form a full mesh: what a local participant does goes to the other
// local participants and to every link; what arrives over a link goes to
// local participants only, never to another link.
type room struct {
	meeting string
	mbox    *mailbox
	bytes   *atomic.Uint64 // forwarded bytes of the meeting, relays included
	cancel  context.CancelFunc
	refs    int // sessions and links attached; guarded by SFU.mu
	log     *slog.Logger
	// maxRelay bounds a relay message as the room forwards it, the
	// sender's id stamped in (Config.MaxRelayBytes).
	maxRelay int

	// local is a snapshot of local member ids for SFU.Participants,
	// replaced whole by the room goroutine.
	local atomic.Pointer[[]string]

	// owned by the room goroutine
	members []*session
	links   []*link
	tracks  []*publishedTrack // local and relayed
	present roster
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

func (r *room) publishLocal() {
	ids := make([]string, len(r.members))
	for i, m := range r.members {
		ids[i] = m.id.Participant
	}
	r.local.Store(&ids)
}

// encode encodes a message the room sends to several peers, once: they
// all queue the same bytes, which no one changes. A relay message of a
// thousand members' keys is 400 KB; encoding it per recipient cost the
// node its CPU and memory.
func (r *room) encode(m signal.Message) ([]byte, bool) {
	b, err := signal.Encode(m)
	if err != nil {
		r.log.Error("encode message", "type", m.Type, "err", err)
		return nil, false
	}
	return b, true
}

// broadcast sends m to every local member except the one with id except
// (a participant never hears about itself).
func (r *room) broadcast(m signal.Message, except string) {
	if !slices.ContainsFunc(r.members, func(x *session) bool { return x.id.Participant != except }) {
		return
	}
	if b, ok := r.encode(m); ok {
		r.broadcastEncoded(b, except)
	}
}

func (r *room) broadcastEncoded(b []byte, except string) {
	for _, x := range r.members {
		if x.id.Participant != except {
			x.sendEncoded(b)
		}
	}
}

// toLinks sends m to every relay link's peer.
func (r *room) toLinks(m signal.Message) {
	if len(r.links) == 0 {
		return
	}
	if b, ok := r.encode(m); ok {
		r.toLinksEncoded(b)
	}
}

func (r *room) toLinksEncoded(b []byte) {
	for _, l := range r.links {
		l.post(func() { l.sendEncoded(b) })
	}
}

func (r *room) hasLink(l *link) bool { return slices.Contains(r.links, l) }

// announce tells local members how p is now shown (joined or updated).
func (r *room) announce(p signal.Participant) {
	r.broadcast(signal.Message{Type: signal.TypeParticipantJoined, Participant: &p}, p.ID)
}

// dropPresence removes one presence of id and tells local members if the
// participant is gone or is now shown differently.
func (r *room) dropPresence(via *link, id string) {
	after, gone, changed := r.present.drop(via, id)
	switch {
	case gone:
		r.broadcast(signal.Message{Type: signal.TypeParticipantLeft, Participant: &after}, id)
	case changed:
		r.announce(after)
	}
}

func (r *room) join(s *session) {
	// A kick is recorded before it is posted here, so one that came before
	// this connection reached the room is seen now, and one after finds it
	// among the members.
	if reason, kicked := s.sfu.wasKicked(r.meeting, s.id.Participant); kicked {
		s.mbox.post(func() {
			// The cause first: the peer may answer the leave and hang up
			// before a later finish, and the first cause wins. Teardown
			// still flushes the leave.
			s.finish(fmt.Errorf("%w: %s", ErrKicked, reason))
			s.send(signal.Message{Type: signal.TypeLeave, Reason: reason})
		})
		return
	}
	if old := r.member(s.id.Participant); old != nil {
		// The same participant connected again (a reconnect): the newer
		// connection wins.
		r.remove(old)
		old.mbox.post(func() {
			old.send(signal.Message{Type: signal.TypeLeave, Reason: "replaced by a newer connection"})
			old.finish(ErrReplaced)
		})
	}
	me := s.participant()
	w := signal.Message{
		Type: signal.TypeWelcome, ID: me.ID, Name: me.Name, Since: me.Since, Meeting: r.meeting,
		ICEServers: s.sfu.cfg.ICEServers,
	}
	// The welcome names the ICE URLs the node vouches for, under its
	// identity key: a control plane cannot add a TURN server of its own to
	// a participant's media path.
	w.ICEURLs = s.sfu.vouchedICEURLs()
	w.Sig = nodecert.SignSDP(s.sfu.cfg.Key, r.meeting, s.id.Participant, s.id.Nonce, signal.SigKindWelcome, strings.Join(w.ICEURLs, "\n"))
	for _, p := range r.present.list() {
		if p.ID != me.ID {
			w.Participants = append(w.Participants, p)
		}
	}
	for _, t := range r.tracks {
		w.Tracks = append(w.Tracks, t.info)
	}
	s.send(w)
	if view, changed := r.present.set(nil, me); changed {
		r.announce(view)
	}
	r.toLinks(signal.Message{Type: signal.TypeParticipantJoined, Participant: &me})
	r.members = append(r.members, s)
	r.publishLocal()
	for _, t := range r.tracks {
		if t.publisher != me.ID {
			s.mbox.post(func() { s.subscribe(t) })
		}
	}
}

func (r *room) leave(s *session) {
	if slices.Contains(r.members, s) {
		r.remove(s)
	}
}

// remove takes a local member out and withdraws everything it published.
func (r *room) remove(s *session) {
	r.members = slices.DeleteFunc(r.members, func(m *session) bool { return m == s })
	r.publishLocal()
	for _, t := range slices.Clone(r.tracks) {
		if t.origin == nil && t.publisher == s.id.Participant {
			r.unpublish(t)
		}
	}
	me := s.participant()
	r.toLinks(signal.Message{Type: signal.TypeParticipantLeft, Participant: &me})
	r.dropPresence(nil, me.ID)
}

func (r *room) publish(from *session, t *publishedTrack) {
	if r.member(t.publisher) != from || t.closed.Load() {
		return
	}
	r.tracks = append(r.tracks, t)
	r.broadcast(signal.Message{Type: signal.TypeTrackPublished, Track: &t.info}, "")
	r.subscribeMembers(t)
	for _, l := range r.links {
		l.post(func() { l.subscribe(t) })
	}
}

func (r *room) subscribeMembers(t *publishedTrack) {
	for _, m := range r.members {
		if m.id.Participant != t.publisher {
			m.mbox.post(func() { m.subscribe(t) })
		}
	}
}

func (r *room) unpublish(t *publishedTrack) {
	i := slices.Index(r.tracks, t)
	if i < 0 {
		return
	}
	r.tracks = slices.Delete(r.tracks, i, i+1)
	r.broadcast(signal.Message{Type: signal.TypeTrackUnpublished, Track: &t.info}, "")
	for _, m := range r.members {
		m.mbox.post(func() { m.unsubscribe(t) })
	}
	if t.origin == nil {
		for _, l := range r.links {
			l.post(func() { l.unsubscribe(t) })
		}
	}
}

func (r *room) chat(from, text string) {
	m := signal.Message{Type: signal.TypeChat, From: from, Text: text, Time: time.Now().UnixMilli()}
	r.broadcast(m, "")
	r.toLinks(m)
}

// relay passes an opaque end-to-end payload on, stamping the sender so that
// a member cannot pose as another. A payload for everyone also goes to
// every link; one for a participant on another node goes to the link(s)
// it is present through.
//
// The limit holds for the message as it is forwarded, with from: so every
// node and client downstream can take it.
func (r *room) relay(from *session, to string, payload json.RawMessage) {
	b, ok := r.encode(signal.Message{Type: signal.TypeRelay, From: from.id.Participant, To: to, Payload: payload})
	if !ok {
		from.sendError(signal.CodeBadMessage, "relay message cannot be encoded")
		return
	}
	if len(b) > r.maxRelay {
		from.sendError(signal.CodeTooLarge, fmt.Sprintf("relay message of %d bytes as forwarded (with \"from\") exceeds %d", len(b), r.maxRelay))
		return
	}
	if to == "" {
		r.broadcastEncoded(b, from.id.Participant)
		r.toLinksEncoded(b)
		return
	}
	delivered := false
	if target := r.member(to); target != nil {
		target.sendEncoded(b)
		delivered = true
	}
	for _, l := range r.present.links(to) {
		l.post(func() { l.sendEncoded(b) })
		delivered = true
	}
	if !delivered {
		from.sendError(CodeUnknownTarget, fmt.Sprintf("no participant %q in the meeting", to))
	}
}

func (r *room) kick(participant, reason string) {
	m := r.member(participant)
	if m == nil {
		return
	}
	m.mbox.post(func() {
		m.finish(fmt.Errorf("%w: %s", ErrKicked, reason)) // the cause first, as in join
		m.send(signal.Message{Type: signal.TypeLeave, Reason: reason})
	})
}

// move asks a local participant to join again through the control plane;
// its connection stays until it closes it.
func (r *room) move(participant, reason string) {
	if m := r.member(participant); m != nil {
		m.send(signal.Message{Type: signal.TypeMove, Reason: reason})
	}
}

// Relay links.

// addLink starts a link: its peer learns who is here and gets every local
// track.
func (r *room) addLink(l *link) {
	r.links = append(r.links, l)
	for _, m := range r.members {
		p := m.participant()
		l.post(func() { l.send(signal.Message{Type: signal.TypeParticipantJoined, Participant: &p}) })
	}
	for _, t := range r.tracks {
		if t.origin == nil {
			l.post(func() { l.subscribe(t) })
		}
	}
}

// removeLink withdraws everything that came over a link.
func (r *room) removeLink(l *link) {
	if !r.hasLink(l) {
		return
	}
	r.links = slices.DeleteFunc(r.links, func(x *link) bool { return x == l })
	for _, t := range slices.Clone(r.tracks) {
		if t.origin == l {
			r.unpublish(t)
		}
	}
	for _, p := range r.present.via(l) {
		r.dropPresence(l, p.ID)
	}
}

func (r *room) remoteJoined(l *link, p signal.Participant) {
	if !r.hasLink(l) {
		return
	}
	if view, changed := r.present.set(l, p); changed {
		r.announce(view)
	}
}

func (r *room) remoteLeft(l *link, id string) {
	if !r.hasLink(l) {
		return
	}
	for _, t := range slices.Clone(r.tracks) {
		if t.origin == l && t.publisher == id {
			r.unpublish(t)
		}
	}
	r.dropPresence(l, id)
}

func (r *room) remotePublish(l *link, t *publishedTrack) {
	if !r.hasLink(l) || t.closed.Load() {
		return
	}
	r.tracks = append(r.tracks, t)
	r.broadcast(signal.Message{Type: signal.TypeTrackPublished, Track: &t.info}, "")
	r.subscribeMembers(t)
}

// remoteMessage delivers a chat or relay message from a participant on
// the link's node to the local members it is for.
func (r *room) remoteMessage(l *link, m signal.Message) {
	if !r.hasLink(l) {
		return
	}
	switch {
	case m.Type == signal.TypeChat:
		r.broadcast(m, "")
	case m.To == "":
		r.broadcast(m, m.From)
	default:
		if target := r.member(m.To); target != nil {
			target.send(m)
		}
	}
}
