package control

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/placement"
	"github.com/oakmeet/oakmeet/policy"
)

// Enforcement keeps every meeting's live state within its policy: it moves
// participants off nodes the policy no longer allows or that drain, drops
// those on dead nodes, and keeps exactly the allowed relay links between a
// meeting's nodes. What to do is decided here, by plan, without I/O; the
// owner records what plan decided in the same step (so no decision is
// carried out twice), and carrying the actions out is the only I/O.

// actionKind says what an action does when it is carried out.
type actionKind int

const (
	// actCommand sends Cmd to Node.
	actCommand actionKind = iota + 1
	// actRelay signs a relay token for Relay and asks Relay.From to dial
	// Relay.To.
	actRelay
	// actLeave records that a participant left its node (Left).
	actLeave
	// actAudit appends Entry to the audit log.
	actAudit
	// actMigration counts a participant moved off a node, by Reason.
	actMigration
	// actTraffic folds the nodes' byte counters (Traffic) into Meeting.
	actTraffic
)

// action is one thing enforcement decided to do. Only the fields of its kind
// are set.
type action struct {
	Kind    actionKind
	Meeting string
	Node    string
	Cmd     cluster.Command
	Relay   relayOrder
	Left    leave
	Entry   audit.Entry
	Reason  string
	Traffic map[string]nodeBytes
	// Note is logged when the action is carried out; Warn logs it as a
	// warning.
	Note string
	Warn bool
	// Failed, if set, receives an audit append's error (for a caller that
	// must answer it).
	Failed *error
}

// relayOrder is a relay link to open (or order again) from one node to
// another under a policy.
type relayOrder struct {
	From, To cluster.NodeInfo
	Policy   policy.Effective
}

// leave is a participant's presence on a node ending.
type leave struct {
	Participant, Node, Reason string
	At                        time.Time
	// Unconnected: only if the participant never connected (a seat
	// expiring must not end a participant whose connection was recorded
	// meanwhile).
	Unconnected bool
}

// nodeBytes is what a node reported forwarding for a meeting, and where the
// node is.
type nodeBytes struct {
	Bytes           uint64
	Country, Region string
	// Gone is set when a live node no longer lists the meeting: it has
	// forgotten the meeting's counter, and a later count starts from zero.
	Gone bool
}

// meetingPending is what enforcement remembers of one meeting between plans.
// A stored value is never changed: plan returns a new one.
type meetingPending struct {
	moves map[string]move // participants asked to move or to be closed, by id
	// relays are the links ordered open, by sorted node pair, with when
	// the order was last sent.
	relays map[[2]string]time.Time
	// closed are links ordered closed, until the nodes' heartbeats stop
	// listing them.
	closed map[[2]string]time.Time
	// leaving are participants told to leave (or recorded as gone), until
	// a plan sees them gone; they are not acted on again meanwhile.
	leaving map[string]time.Time
	// trafficAt is when the meeting's byte counts were last stored.
	trafficAt time.Time
	// restUntil is set while a meeting without participants still has its
	// byte counts folded: nodes report a closed room's final count in their
	// next heartbeats (see restWindow).
	restUntil time.Time
}

// restWindow is how long a meeting's counts are still folded after its last
// participant left: long enough for the heartbeats that carry the nodes'
// final counts, which nodes keep sending for about TrafficEvery plus two
// heartbeats.
func restWindow(t cluster.Timing) time.Duration {
	return t.TrafficEvery + 2*t.HeartbeatInterval
}

// move is a participant asked to leave its node by deadline; past it the
// node is told to close the participant's connection with kickReason.
type move struct {
	node, reason string
	deadline     time.Time
	kickReason   string
}

// clone returns a copy whose maps are never nil, so a plan can write to it
// whatever pending state (a resting meeting's, say) it started from.
func (p *meetingPending) clone() *meetingPending {
	n := &meetingPending{moves: map[string]move{}, relays: map[[2]string]time.Time{}, closed: map[[2]string]time.Time{}, leaving: map[string]time.Time{}}
	if p == nil {
		return n
	}
	maps.Copy(n.moves, p.moves)
	maps.Copy(n.relays, p.relays)
	maps.Copy(n.closed, p.closed)
	maps.Copy(n.leaving, p.leaving)
	n.trafficAt, n.restUntil = p.trafficAt, p.restUntil
	return n
}

func (p *meetingPending) empty() bool {
	return p == nil || len(p.moves)+len(p.relays)+len(p.closed)+len(p.leaving) == 0 && p.restUntil.IsZero()
}

// moving is why a participant has been asked to move, or "".
func (p *meetingPending) moving(pid string) string {
	if p == nil {
		return ""
	}
	return p.moves[pid].reason
}

// closing reports whether the link between a and b was ordered closed a
// moment ago (heartbeats may still list it).
func (p *meetingPending) closing(a, b string) bool {
	if p == nil {
		return false
	}
	_, ok := p.closed[pairOf(a, b)]
	return ok
}

func pairOf(a, b string) [2]string {
	if b < a {
		a, b = b, a
	}
	return [2]string{a, b}
}

// nodeView is the node set as a plan sees it. Plans only read it.
type nodeView struct {
	byID map[string]*nodeState
	// snap answers whether any allowed node could take a participant.
	snap *placement.Snapshot
}

// planInput is everything a plan for one meeting depends on.
type planInput struct {
	Meeting *meeting
	Policy  policy.Effective
	Nodes   nodeView
	Pending *meetingPending // nil when nothing is pending
	Now     time.Time
	// Started is when the control plane started: for a while after it,
	// nodes have not been heard from and are not taken for dead.
	Started time.Time
	Timing  cluster.Timing
}

// planner is one plan in progress.
type planner struct {
	planInput
	next *meetingPending
	acts []action
}

// plan decides what brings one meeting in line with its effective policy
// and the health of its nodes, and what enforcement remembers after. It does
// no I/O and does not change its input, so it is cheap to call often and
// calling it again with its own result decides nothing new.
func plan(in planInput) ([]action, *meetingPending) {
	p := &planner{planInput: in, next: in.Pending.clone()}
	active := in.Meeting.active()
	if len(active) > 0 {
		p.next.restUntil = time.Time{} // back from a rest
	}
	for pid, at := range p.next.leaving {
		// Gone, or told so long ago that the departure was lost (its
		// store write failed, or the control plane stopped before it):
		// either way the plan decides afresh.
		if !slices.ContainsFunc(active, func(x participant) bool { return x.ID == pid }) || in.Now.Sub(at) > in.Timing.HeartbeatTimeout {
			delete(p.next.leaving, pid)
		}
	}
	used := map[string]*nodeState{}
	for _, pt := range active {
		if _, ok := p.next.leaving[pt.ID]; ok {
			continue
		}
		ns, known := in.Nodes.byID[pt.Node.ID]
		allowed := in.Policy.Allows(pt.Node.Country, pt.Node.Region)
		switch {
		case (!known || !ns.Healthy) && in.Now.Sub(in.Started) > 2*in.Timing.HeartbeatTimeout:
			p.nodeDown(pt)
		case known && ns.Healthy && !ns.Cert.ok:
			// Fail closed, as for a node the policy forbids.
			p.moveOff(pt, api.ReasonNodeUncertified, api.ReasonUncertifiedNoAllowedNode)
		case !allowed:
			p.moveOff(pt, api.ReasonPolicyChange, api.ReasonPolicyNoAllowed)
		case known && ns.Draining:
			p.moveOff(pt, api.ReasonNodeDraining, api.ReasonDrainNoAllowedNode)
			useNode(used, ns)
		case known:
			useNode(used, ns)
		}
	}
	p.expireMoves()
	p.relays(used)
	p.traffic(len(active) == 0)
	if len(active) == 0 {
		// The meeting rests: nothing but the links just closed and the
		// window for the nodes' final counts is kept.
		rest := p.next.restUntil
		if rest.IsZero() {
			rest = in.Now.Add(restWindow(in.Timing))
		}
		p.next = &meetingPending{closed: p.next.closed, trafficAt: p.next.trafficAt}
		if in.Now.Before(rest) {
			p.next.restUntil = rest
		}
	}
	return p.acts, p.next
}

// useNode counts a node among those the meeting's relay links join, if it
// is certified: a node not yet heard from since a restart joins once its
// first heartbeat has shown its certificate.
func useNode(used map[string]*nodeState, ns *nodeState) {
	if ns.Cert.ok {
		used[ns.Info.ID] = ns
	}
}

func (p *planner) add(a action) {
	a.Meeting = p.Meeting.ID
	if a.Kind == actCommand {
		a.Cmd.Meeting = p.Meeting.ID
	}
	p.acts = append(p.acts, a)
}

func (p *planner) disconnectEntry(pt participant, reason string) action {
	return action{Kind: actAudit, Entry: audit.Entry{Kind: audit.KindDisconnect, Meeting: p.Meeting.ID, Participant: pt.ID,
		Node: pt.Node.ID, NodeCountry: pt.Node.Country, PolicyHash: p.Policy.Hash(), Reason: reason}}
}

// nodeDown releases the seat of a participant whose node is gone; its
// client rejoins by itself.
func (p *planner) nodeDown(pt participant) {
	p.next.leaving[pt.ID] = p.Now
	p.add(action{Kind: actLeave, Left: leave{Participant: pt.ID, Node: pt.Node.ID, Reason: api.ReasonNodeDown, At: p.Now}})
	p.add(p.disconnectEntry(pt, api.ReasonNodeDown))
}

// moveOff asks a participant to move, or disconnects it when no allowed
// node could take it. A participant is never left where the policy forbids:
// past the move deadline it is disconnected (expireMoves).
func (p *planner) moveOff(pt participant, reason, noneReason string) {
	if _, asked := p.next.moves[pt.ID]; asked {
		return
	}
	if _, refusal := p.Nodes.snap.Place(placement.Request{Policy: p.Policy, Exclude: []string{pt.Node.ID}}, nil); refusal != nil {
		p.next.leaving[pt.ID] = p.Now
		p.add(action{Kind: actCommand, Node: pt.Node.ID, Cmd: cluster.Command{Kind: cluster.CommandKick, Participant: pt.ID, Reason: noneReason},
			Note: "no allowed node for participant: disconnecting"})
		p.add(action{Kind: actLeave, Left: leave{Participant: pt.ID, Node: pt.Node.ID, Reason: noneReason, At: p.Now}})
		p.add(action{Kind: actMigration, Reason: noneReason})
		p.add(p.disconnectEntry(pt, noneReason))
		return
	}
	d := p.Timing.MoveDeadline
	p.next.moves[pt.ID] = move{node: pt.Node.ID, reason: reason, deadline: p.Now.Add(d), kickReason: reason}
	p.add(action{Kind: actCommand, Node: pt.Node.ID, Cmd: cluster.Command{Kind: cluster.CommandMove, Participant: pt.ID, Reason: reason},
		Note: "asking participant to move"})
	p.add(action{Kind: actMigration, Reason: reason})
	p.add(action{Kind: actAudit, Entry: audit.Entry{Kind: audit.KindMigration, Meeting: p.Meeting.ID, Participant: pt.ID,
		Node: pt.Node.ID, NodeCountry: pt.Node.Country, PolicyHash: p.Policy.Hash(),
		Reason: fmt.Sprintf("%s: asked to leave node %s (%s) within %s", reason, pt.Node.ID, pt.Node.Country, d)}})
}

// expireMoves disconnects participants whose move deadline has passed.
func (p *planner) expireMoves() {
	for _, pid := range slices.Sorted(maps.Keys(p.next.moves)) {
		mv := p.next.moves[pid]
		if !p.Now.After(mv.deadline) {
			continue
		}
		delete(p.next.moves, pid)
		p.next.leaving[pid] = p.Now
		p.add(action{Kind: actCommand, Node: mv.node, Cmd: cluster.Command{Kind: cluster.CommandKick, Participant: pid, Reason: mv.kickReason}})
		p.add(action{Kind: actLeave, Left: leave{Participant: pid, Node: mv.node, Reason: mv.kickReason, At: p.Now}})
		if mv.kickReason != api.ReasonMoved {
			country := ""
			if ns, ok := p.Nodes.byID[mv.node]; ok {
				country = ns.Info.Country
			}
			p.add(action{Kind: actAudit, Entry: audit.Entry{Kind: audit.KindDisconnect, Meeting: p.Meeting.ID, Participant: pid,
				Node: mv.node, NodeCountry: country, Reason: mv.kickReason + ": did not move within " + p.Timing.MoveDeadline.String()}})
		}
	}
}
