package control

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/oakmeet/oakmeet/api"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/placement"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/token"
)

// Timings of enforcement. A participant asked to move has moveDeadline to
// reconnect elsewhere before it is disconnected; the old connection of a
// participant that has moved may linger for replacedGrace (make before
// break) before the node is told to close it.
const (
	moveDeadline  = 5 * time.Second
	replacedGrace = 10 * time.Second
	relayResend   = 5 * time.Second
	relayTokenTTL = time.Minute
)

// enforcer keeps every meeting's live state within its policy: it moves
// participants off nodes the policy no longer allows or that drain, drops
// those on dead nodes, and keeps exactly the allowed relay links between a
// meeting's nodes.
type enforcer struct {
	mu     sync.Mutex
	active map[string]bool                 // meetings with participants
	moves  map[string]*move                // by participant id
	relays map[string]map[[2]string]*relay // by meeting, then node pair (sorted)
	// trafficAt is when each meeting's byte counts were last stored.
	trafficAt map[string]time.Time
	// closed are relay links ordered closed, by meeting and pair, until
	// the nodes' heartbeats stop listing them.
	closed map[string]map[[2]string]time.Time
}

type move struct {
	meeting, node, reason string
	deadline              time.Time
	kickReason            string
}

type relay struct {
	lastSent time.Time
}

func newEnforcer() *enforcer {
	return &enforcer{active: map[string]bool{}, moves: map[string]*move{}, relays: map[string]map[[2]string]*relay{}, trafficAt: map[string]time.Time{}, closed: map[string]map[[2]string]time.Time{}}
}

func (e *enforcer) touch(meeting string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.active[meeting] = true
}

func (e *enforcer) meetings() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.active))
	for m := range e.active {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// moving reports whether a participant has been asked to move.
func (e *enforcer) moving(pid string) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	mv, ok := e.moves[pid]
	if !ok {
		return "", false
	}
	return mv.reason, true
}

func (s *Server) command(node string, c cluster.Command) {
	data, err := json.Marshal(c)
	if err != nil {
		return
	}
	if err := s.cfg.NATS.Publish(cluster.SubjectCommand(node), data); err != nil {
		s.log.Warn("send node command", "node", node, "kind", c.Kind, "err", err)
	}
}

// enforceAll runs enforce for every meeting with participants.
func (s *Server) enforceAll(ctx context.Context) {
	for _, id := range s.enforcer.meetings() {
		s.enforce(ctx, id)
	}
}

// enforce brings one meeting in line with its effective policy and the
// health of its nodes. It is idempotent and cheap to call often.
func (s *Server) enforce(ctx context.Context, meetingID string) {
	m, _, err := s.meetings.get(ctx, meetingID)
	if err != nil {
		return
	}
	eff, err := policy.Combine(s.floor, m.Policy)
	if err != nil {
		s.log.Error("enforce: policy", "meeting", meetingID, "err", err)
		return
	}
	now := s.now()
	active := m.active()
	e := s.enforcer
	if len(active) == 0 {
		// One last count of the bytes, then the meeting rests.
		e.mu.Lock()
		delete(e.active, meetingID)
		delete(e.trafficAt, meetingID)
		e.mu.Unlock()
	}
	used := map[string]nodeState{}
	for _, p := range active {
		ns, known := s.nodes.get(p.Node.ID)
		allowed := eff.Allows(p.Node.Country, p.Node.Region)
		switch {
		case (!known || !ns.Healthy) && now.Sub(s.startedAt()) > 2*cluster.DefaultTiming().HeartbeatTimeout:
			// (Right after a start, nodes have not yet been heard from.)
			// The node is gone: its participants' clients rejoin by
			// themselves; their seats there are released now.
			s.participantLeft(ctx, meetingID, p.ID, p.Node.ID, api.ReasonNodeDown, now)
			s.auditEvent(ctx, audit.Entry{Kind: audit.KindDisconnect, Meeting: meetingID, Participant: p.ID,
				Node: p.Node.ID, NodeCountry: p.Node.Country, PolicyHash: eff.Hash(), Reason: api.ReasonNodeDown})
		case !allowed:
			s.moveOff(ctx, m, p, eff, api.ReasonPolicyChange, api.ReasonPolicyNoAllowed, now)
		case ns.Draining:
			s.moveOff(ctx, m, p, eff, api.ReasonNodeDraining, api.ReasonDrainNoAllowedNode, now)
			used[p.Node.ID] = ns
		default:
			used[p.Node.ID] = ns
		}
	}
	s.expireMoves(ctx, meetingID, now)
	s.reconcileRelays(ctx, meetingID, eff, used, now)
	s.recordTraffic(ctx, meetingID, now)
}

// moveOff asks a participant to move, or disconnects it when no allowed
// node could take it. A participant is never left where the policy
// forbids: past the move deadline it is disconnected.
func (s *Server) moveOff(ctx context.Context, m *meeting, p participant, eff policy.Effective, reason, noneReason string, now time.Time) {
	e := s.enforcer
	e.mu.Lock()
	_, asked := e.moves[p.ID]
	e.mu.Unlock()
	if asked {
		return // expireMoves handles the deadline
	}
	var refusal error
	s.pick(func(rnd *rand.Rand) {
		_, refusal = s.nodes.snapshot().Place(placement.Request{Policy: eff, Exclude: []string{p.Node.ID}}, rnd)
	})
	if refusal != nil {
		s.log.Info("no allowed node for participant: disconnecting", "meeting", m.ID, "participant", p.ID, "node", p.Node.ID, "reason", noneReason)
		s.command(p.Node.ID, cluster.Command{Kind: cluster.CommandKick, Meeting: m.ID, Participant: p.ID, Reason: noneReason})
		s.participantLeft(ctx, m.ID, p.ID, p.Node.ID, noneReason, now)
		s.metrics.migrations.WithLabelValues(noneReason).Inc()
		s.auditEvent(ctx, audit.Entry{Kind: audit.KindDisconnect, Meeting: m.ID, Participant: p.ID,
			Node: p.Node.ID, NodeCountry: p.Node.Country, PolicyHash: eff.Hash(), Reason: noneReason})
		return
	}
	e.mu.Lock()
	e.moves[p.ID] = &move{meeting: m.ID, node: p.Node.ID, reason: reason, deadline: now.Add(moveDeadline), kickReason: reason}
	e.mu.Unlock()
	s.log.Info("asking participant to move", "meeting", m.ID, "participant", p.ID, "node", p.Node.ID, "reason", reason)
	s.command(p.Node.ID, cluster.Command{Kind: cluster.CommandMove, Meeting: m.ID, Participant: p.ID, Reason: reason})
	s.metrics.migrations.WithLabelValues(reason).Inc()
	s.auditEvent(ctx, audit.Entry{Kind: audit.KindMigration, Meeting: m.ID, Participant: p.ID,
		Node: p.Node.ID, NodeCountry: p.Node.Country, PolicyHash: eff.Hash(),
		Reason: fmt.Sprintf("%s: asked to leave node %s (%s) within %s", reason, p.Node.ID, p.Node.Country, moveDeadline)})
}

// expireMoves disconnects participants whose move deadline has passed.
func (s *Server) expireMoves(ctx context.Context, meetingID string, now time.Time) {
	e := s.enforcer
	type expired struct {
		pid string
		mv  move
	}
	var due []expired
	e.mu.Lock()
	for pid, mv := range e.moves {
		if mv.meeting == meetingID && now.After(mv.deadline) {
			due = append(due, expired{pid, *mv})
			delete(e.moves, pid)
		}
	}
	e.mu.Unlock()
	for _, d := range due {
		pid, mv := d.pid, d.mv
		s.command(mv.node, cluster.Command{Kind: cluster.CommandKick, Meeting: meetingID, Participant: pid, Reason: mv.kickReason})
		s.participantLeft(ctx, meetingID, pid, mv.node, mv.kickReason, now)
		if mv.kickReason != api.ReasonMoved {
			ns, _ := s.nodes.get(mv.node)
			s.auditEvent(ctx, audit.Entry{Kind: audit.KindDisconnect, Meeting: meetingID, Participant: pid,
				Node: mv.node, NodeCountry: ns.Info.Country, Reason: mv.kickReason + ": did not move within " + moveDeadline.String()})
		}
	}
}

// replaced is called when a participant that replaces another has
// connected: the old connection may linger briefly, then is closed.
func (s *Server) replaced(meetingID, oldPID, oldNode string) {
	e := s.enforcer
	e.mu.Lock()
	defer e.mu.Unlock()
	deadline := s.now().Add(replacedGrace)
	if mv, ok := e.moves[oldPID]; ok && mv.deadline.Before(deadline) {
		mv.kickReason = api.ReasonMoved
		return
	}
	e.moves[oldPID] = &move{meeting: meetingID, node: oldNode, reason: api.ReasonMoved, deadline: deadline, kickReason: api.ReasonMoved}
}

// reconcileRelays keeps a relay link between every two nodes the meeting
// uses, and none to a node its policy does not allow.
func (s *Server) reconcileRelays(ctx context.Context, meetingID string, eff policy.Effective, used map[string]nodeState, now time.Time) {
	ids := make([]string, 0, len(used))
	for id := range used {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	want := map[[2]string]bool{}
	for i := range ids {
		for j := i + 1; j < len(ids); j++ {
			a, b := used[ids[i]], used[ids[j]]
			if eff.Allows(a.Info.Country, a.Info.Region) && eff.Allows(b.Info.Country, b.Info.Region) {
				want[[2]string{ids[i], ids[j]}] = true
			}
		}
	}
	e := s.enforcer
	e.mu.Lock()
	have := e.relays[meetingID]
	if have == nil {
		have = map[[2]string]*relay{}
		e.relays[meetingID] = have
	}
	var open, resend, closeLinks [][2]string
	for pair := range want {
		r, ok := have[pair]
		switch {
		case !ok:
			have[pair] = &relay{lastSent: now}
			open = append(open, pair)
		case now.Sub(r.lastSent) >= relayResend:
			r.lastSent = now
			resend = append(resend, pair)
		}
	}
	for pair := range have {
		if !want[pair] {
			delete(have, pair)
			closeLinks = append(closeLinks, pair)
			if e.closed[meetingID] == nil {
				e.closed[meetingID] = map[[2]string]time.Time{}
			}
			e.closed[meetingID][pair] = now
		}
	}
	for pair, at := range e.closed[meetingID] {
		if want[pair] || now.Sub(at) > 2*cluster.DefaultTiming().HeartbeatInterval+time.Second {
			delete(e.closed[meetingID], pair)
		}
	}
	if len(have) == 0 {
		delete(e.relays, meetingID)
	}
	e.mu.Unlock()

	for _, pair := range closeLinks {
		s.command(pair[0], cluster.Command{Kind: cluster.CommandUnrelay, Meeting: meetingID, Peer: pair[1]})
		s.command(pair[1], cluster.Command{Kind: cluster.CommandUnrelay, Meeting: meetingID, Peer: pair[0]})
		s.log.Info("relay closed", "meeting", meetingID, "a", pair[0], "b", pair[1])
	}
	for _, pair := range append(open, resend...) {
		a, b := used[pair[0]], used[pair[1]]
		tok, err := token.SignRelay(s.cfg.Key, token.RelayClaims{
			Meeting: meetingID,
			From:    token.RelayNode{ID: a.Info.ID, Country: a.Info.Country, Region: a.Info.Region, IdentityKey: a.Info.IdentityKey},
			To:      token.RelayNode{ID: b.Info.ID, Country: b.Info.Country, Region: b.Info.Region, IdentityKey: b.Info.IdentityKey},
			Policy:  eff.Policy(), IssuedAt: now.UTC(), Expires: now.Add(relayTokenTTL).UTC(),
		})
		if err != nil {
			s.log.Warn("relay token", "meeting", meetingID, "a", a.Info.ID, "b", b.Info.ID, "err", err)
			continue
		}
		s.command(a.Info.ID, cluster.Command{Kind: cluster.CommandRelay, Meeting: meetingID, Peer: b.Info.ID, PeerURL: b.Info.URL, Token: tok})
	}
	for _, pair := range open {
		a, b := used[pair[0]], used[pair[1]]
		s.auditEvent(ctx, audit.Entry{Kind: audit.KindRelay, Meeting: meetingID, Node: a.Info.ID, NodeCountry: a.Info.Country,
			PolicyHash: eff.Hash(), Reason: fmt.Sprintf("relay link %s (%s) <-> %s (%s)", a.Info.ID, a.Info.Country, b.Info.ID, b.Info.Country)})
	}
	// Defence in depth: a link a node reports that the policy does not
	// allow is closed at once, whoever asked for it.
	for _, n := range used {
		for _, l := range n.Relays {
			if l.Meeting != meetingID {
				continue
			}
			peer, ok := s.nodes.get(l.Peer)
			if ok && !eff.Allows(peer.Info.Country, peer.Info.Region) {
				s.log.Warn("closing a relay to a blocked node", "meeting", meetingID, "node", n.Info.ID, "peer", l.Peer)
				s.command(n.Info.ID, cluster.Command{Kind: cluster.CommandUnrelay, Meeting: meetingID, Peer: l.Peer})
			}
		}
	}
}

func (s *Server) auditEvent(ctx context.Context, e audit.Entry) {
	if _, err := s.audit.append(ctx, e); err != nil {
		s.log.Error("audit", "kind", e.Kind, "meeting", e.Meeting, "err", err)
	}
}

// closing reports whether the relay link between a and b was ordered
// closed a moment ago (heartbeats may still list it).
func (e *enforcer) closing(meeting, a, b string) bool {
	if b < a {
		a, b = b, a
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.closed[meeting][[2]string{a, b}]
	return ok
}
