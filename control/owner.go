package control

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/placement"
	"github.com/oakmeet/oakmeet/policy"
)

// owner is the goroutine that owns the control plane's live state: the node
// registry, the seats of placed participants not yet connected, what
// enforcement has pending (moves, relay links, departures, traffic times)
// and the set of meetings with participants. Everything reaches that state
// through mbox; nothing else touches it. The owner does no I/O: it decides,
// records and hands back actions for its callers to carry out.
//
// After a change it publishes a liveView (an immutable copy behind an
// atomic pointer) and the API reads nodes, health and pending moves from
// that rather than through the mailbox: /healthz and the metrics scrape
// then never queue behind a burst of heartbeats, and they still answer
// before Run has started the owner or after it has stopped. A call
// publishes before it returns, so a caller reads its own writes;
// heartbeats in a batch publish once, when the queue runs dry. Publishing
// copies the node map (node states themselves are shared, being never
// changed), which is cheap at the size of a deployment's node set.
type owner struct {
	mbox *mailbox
	view atomic.Pointer[liveView]
	log  *slog.Logger

	// reports are heartbeats not yet taken in, by node: a newer report
	// replaces one still waiting, so a node that floods its subject costs
	// one queued closure, not one per message, and the mailbox (which
	// never blocks the NATS callback) stays bounded by the node count.
	// reportsMu guards only that map; nothing else is locked while it is
	// held.
	reportsMu sync.Mutex
	reports   map[string]report

	// Owned by the goroutine serving mbox.
	timing   cluster.Timing
	tokenTTL time.Duration
	rand     *rand.Rand
	nodes    *registry
	certs    *certifier
	seats    map[string]seat // by participant
	// pendingBy counts seats by meeting and by client address, for the
	// caps of Limits; seatHold is how long a seat waits for its connection
	// (negative: the token's lifetime and SeatGrace).
	pendingByMeeting map[string]int
	pendingByAddr    map[netip.Addr]int
	pendingByBoth    map[meetingAddr]int
	perMeeting       int
	perAddr          int
	perMeetingAddr   int
	seatHold         time.Duration
	active           map[string]bool // meetings with participants
	pending          map[string]*meetingPending
	// shown are the meetings of pending with moves or links being closed:
	// all the API reads of pending (liveView), kept apart so that
	// publishing copies only those, however many meetings are live.
	shown map[string]*meetingPending
	// sched is what is due to be planned (due.go).
	sched dueState
	// planned is the newest meeting revision each meeting was planned at
	// (or joined at): a plan from an older read is stale and dropped, so
	// a departure is never decided again from a read taken before it.
	planned map[string]uint64
	// held are meetings whose policy is being changed: planning what is
	// due does not take them until the change's own plan, which carries out its audit
	// entry first, so no move is logged before the change that caused it.
	held    map[string]int
	started time.Time
	dirty   bool
	// lobbyWake is, per meeting, the channel closed at its next lobby
	// change (lobby.go).
	lobbyWake map[string]chan struct{}
	// submit hands a plan's actions to the executor in the step that
	// decided them (nil: nobody carries them out, as in tests of the
	// owner alone).
	submit func([]action) <-chan struct{}
	// submitUrgent hands over what a passed move deadline asks, the kick
	// and the departure, to be carried out at once rather than behind
	// submit's queue (nil: handed to submit). Nothing queued before
	// depends on it: the move it ends went out when it was decided, and
	// the audit entry stays in submit's order.
	submitUrgent func([]action) <-chan struct{}
}

// seat is a placed participant that has not connected to its node yet; it
// is released when its hold (Limits.PendingHold) has passed. stored
// is set once the join is in the meeting's record: a seat whose join never
// got there is given back by the owner itself, as there is no participant
// to record leaving.
type seat struct {
	meeting, node string
	addr          netip.Addr // addrKey of the client that joined
	deadline      time.Time
	stored        bool
}

// reasonNeverConnected is the recorded departure of a participant whose
// seat's hold passed before it connected.
const reasonNeverConnected = "never connected"

// pendingLimits sets the caps and hold of seats (before Run).
func (o *owner) pendingLimits(l Limits) {
	o.perMeeting, o.perAddr, o.seatHold = l.PendingSeatsPerMeeting, l.PendingSeatsPerAddress, l.PendingHold
	o.perMeetingAddr = l.PendingSeatsPerMeetingAddress
}

// holdUntil is when a seat taken at from stops waiting for its connection:
// after the hold, and never after its token has expired and SeatGrace
// passed, when no connection can come.
func (o *owner) holdUntil(from time.Time) time.Time {
	longest := o.tokenTTL + o.timing.SeatGrace
	if o.seatHold < 0 || o.seatHold > longest {
		return from.Add(longest)
	}
	return from.Add(o.seatHold)
}

func (o *owner) addSeat(pid string, s seat) {
	if old, ok := o.seats[pid]; ok {
		o.uncount(old)
	}
	o.seats[pid] = s
	o.pendingByMeeting[s.meeting]++
	o.pendingByAddr[s.addr]++
	o.pendingByBoth[meetingAddr{s.meeting, s.addr}]++
}

// dropSeat forgets a seat; its node's count is the caller's to change.
func (o *owner) dropSeat(pid string) (seat, bool) {
	s, ok := o.seats[pid]
	if ok {
		delete(o.seats, pid)
		o.uncount(s)
	}
	return s, ok
}

func (o *owner) uncount(s seat) {
	if o.pendingByMeeting[s.meeting]--; o.pendingByMeeting[s.meeting] <= 0 {
		delete(o.pendingByMeeting, s.meeting)
	}
	if o.pendingByAddr[s.addr]--; o.pendingByAddr[s.addr] <= 0 {
		delete(o.pendingByAddr, s.addr)
	}
	if k := (meetingAddr{s.meeting, s.addr}); o.pendingByBoth[k] <= 1 {
		delete(o.pendingByBoth, k)
	} else {
		o.pendingByBoth[k]--
	}
}

// pendingAsk is who takes a seat, for the caps on seats waiting for their
// connection.
type pendingAsk struct {
	addr netip.Addr
	// host is the meeting's host joining: not held by the meeting's caps.
	host bool
	// move is a join that proved it replaces a participant (its rejoin
	// secret): it takes over a seat already held, so no cap holds it.
	move bool
}

// overPending is the 429 for a join past a cap on waiting seats: one
// frees within the hold.
func (o *owner) overPending(ask pendingAsk, meetingID string) error {
	if ask.move {
		return nil
	}
	retry := o.holdUntil(time.Time{}).Sub(time.Time{})
	if o.perAddr >= 0 && o.pendingByAddr[addrKey(ask.addr)] >= o.perAddr {
		return rateLimited(retry, "this address has %d joins whose participants have not connected yet", o.perAddr)
	}
	if !ask.host && o.perMeetingAddr > 0 && o.pendingByBoth[meetingAddr{meetingID, addrKey(ask.addr)}] >= o.perMeetingAddr {
		return rateLimited(retry, "this address has %d joins to this meeting whose participants have not connected yet", o.perMeetingAddr)
	}
	if !ask.host && o.perMeeting >= 0 && o.pendingByMeeting[meetingID] >= o.perMeeting {
		return rateLimited(retry, "the meeting has %d joins whose participants have not connected yet", o.perMeeting)
	}
	return nil
}

func newOwner(t cluster.Timing, tokenTTL time.Duration, rnd *rand.Rand, certs *certifier, log *slog.Logger) *owner {
	o := &owner{mbox: newMailbox(), log: log, timing: t, tokenTTL: tokenTTL, rand: rnd, nodes: newRegistry(), certs: certs,
		seats: map[string]seat{}, pendingByMeeting: map[string]int{}, pendingByAddr: map[netip.Addr]int{}, pendingByBoth: map[meetingAddr]int{}, active: map[string]bool{}, pending: map[string]*meetingPending{}, planned: map[string]uint64{},
		held: map[string]int{}, shown: map[string]*meetingPending{}, sched: newDueState(), reports: map[string]report{}, lobbyWake: map[string]chan struct{}{},
		perMeeting: -1, perAddr: -1, perMeetingAddr: -1, seatHold: -1}
	o.publish()
	return o
}

func (o *owner) run(ctx context.Context) {
	o.mbox.run(ctx, func() {
		if o.dirty {
			o.publish()
		}
	})
}

func (o *owner) publish() {
	o.view.Store(o.nodes.publish(o.shown))
	o.dirty = false
}

// setPending records what enforcement remembers of a meeting (nil:
// nothing).
func (o *owner) setPending(id string, p *meetingPending) {
	if p == nil {
		delete(o.pending, id)
	} else {
		o.pending[id] = p
	}
	if p != nil && len(p.moves)+len(p.closed) > 0 {
		o.shown[id] = p
	} else {
		delete(o.shown, id)
	}
}

// do runs f on the owner and publishes what it changed before returning.
func (o *owner) do(ctx context.Context, f func()) error {
	return o.mbox.call(ctx, func() {
		f()
		o.nodesChanged()
		o.dirty = true
		o.publish()
	})
}

// nodesChanged makes due the meetings on every node changed since the
// last call, and those whose links a node reports differently.
func (o *owner) nodesChanged() {
	nodes, relayed := o.nodes.takeTouched()
	for _, id := range nodes {
		o.markNode(id)
	}
	for _, id := range relayed {
		if o.active[id] || o.pending[id] != nil {
			o.markDue(id)
		}
	}
}

func (o *owner) live() *liveView { return o.view.Load() }

// heartbeat is posted, not called: a node's report needs no answer.
func (o *owner) heartbeat(hb cluster.Heartbeat, now time.Time) {
	id := hb.Node.ID
	o.reportsMu.Lock()
	_, waiting := o.reports[id]
	o.reports[id] = report{hb: hb, at: now}
	o.reportsMu.Unlock()
	if waiting {
		return // the closure already queued takes this newer report
	}
	o.mbox.post(func() {
		o.reportsMu.Lock()
		r := o.reports[id]
		delete(o.reports, id)
		o.reportsMu.Unlock()
		o.takeHeartbeat(r.hb, r.at)
	})
}

// report is a heartbeat and when it arrived.
type report struct {
	hb cluster.Heartbeat
	at time.Time
}

// takeHeartbeat records a node's report on the owner.
func (o *owner) takeHeartbeat(hb cluster.Heartbeat, now time.Time) {
	prev := o.nodes.nodes[hb.Node.ID]
	var held certStatus
	if prev != nil {
		held = prev.Cert
	}
	st := o.certs.check(hb.Node, held, now)
	var prevBytes map[string]uint64
	if prev != nil {
		prevBytes = prev.MeetingBytes
	}
	o.trafficChanged(prevBytes, hb.MeetingBytes, now)
	if o.nodes.heartbeat(hb, st, now) {
		o.log.Info("node healthy", "node", hb.Node.ID, "country", hb.Node.Country, "certified", st.ok)
	}
	if acts := o.certChange(prev, hb.Node, st); len(acts) > 0 {
		o.hand(acts)
	}
	o.nodesChanged()
	o.dirty = true
}

// revocations takes a newer revocation list and withdraws at once what it
// revokes: the next plan of each meeting moves participants off, and
// nothing new is placed or relayed there.
func (o *owner) revocations(ctx context.Context, data []byte, now time.Time) error {
	var err error
	if cerr := o.do(ctx, func() {
		if err = o.certs.setRevocations(data); err == nil {
			o.hand(o.recheckCerts(now))
		}
	}); cerr != nil {
		return cerr
	}
	return err
}

// load takes in the state a previous run left in the store.
func (o *owner) load(ctx context.Context, nodes []cluster.NodeInfo, meetings []*meeting, now time.Time) error {
	return o.do(ctx, func() {
		for _, info := range nodes {
			o.nodes.known(info)
		}
		counts := map[string]int{}
		for _, m := range meetings {
			o.index(m.ID, meetingNodes(m, o.pending[m.ID]))
			for _, p := range m.active() {
				o.active[m.ID] = true
				counts[p.Node.ID]++
				if p.Connected == nil {
					o.addSeat(p.ID, seat{meeting: m.ID, node: p.Node.ID, deadline: o.holdUntil(p.Joined), stored: true})
				}
			}
		}
		o.nodes.resetAssigned(counts)
		o.started = now
		o.sched.sweepNext = now.Add(o.timing.SweepInterval)
	})
}

// placed is where the owner put a participant.
type placed struct {
	placement.Decision
	Info cluster.NodeInfo
	// Cert is the node's certificate as verified (only certified nodes
	// are placed on): the participant's client checks it itself.
	Cert string
}

// reserve places a participant and takes its seat in one step, so two
// joins cannot both take a node's last seat, nor pass a cap on waiting
// seats together.
func (o *owner) reserve(ctx context.Context, pid, meetingID string, ask pendingAsk, req placement.Request, now time.Time) (placed, error) {
	var out placed
	var err error
	if cerr := o.do(ctx, func() {
		if err = o.overPending(ask, meetingID); err != nil {
			return
		}
		out.Decision, err = o.nodes.snapshot().Place(req, o.rand)
		if err != nil {
			return
		}
		out.Info = o.nodes.nodes[out.Node.ID].Info
		out.Cert = o.nodes.nodes[out.Node.ID].Cert.text
		o.nodes.assign(out.Node.ID, 1)
		o.addSeat(pid, seat{meeting: meetingID, node: out.Node.ID, addr: addrKey(ask.addr), deadline: o.holdUntil(now)})
	}); cerr != nil {
		return placed{}, cerr
	}
	return out, err
}

// release gives back a seat reserve took for a join that did not happen.
func (o *owner) release(ctx context.Context, pid string) error {
	return o.do(ctx, func() {
		if s, ok := o.dropSeat(pid); ok {
			o.nodes.assign(s.node, -1)
		}
	})
}

// joined marks a meeting active once participant pid's join is stored at
// revision rev.
func (o *owner) joined(ctx context.Context, meetingID, pid string, rev uint64) error {
	return o.do(ctx, func() {
		o.active[meetingID] = true
		o.planned[meetingID] = max(o.planned[meetingID], rev)
		if s, ok := o.seats[pid]; ok {
			s.stored = true
			o.seats[pid] = s
		}
	})
}

// hold keeps a due meeting from being planned while its policy changes;
// the change's plan (planOpts.unhold) lets go.
func (o *owner) hold(ctx context.Context, meetingID string) error {
	return o.do(ctx, func() { o.held[meetingID]++ })
}

// unhold lets go of a hold whose change did not happen.
func (o *owner) unhold(ctx context.Context, meetingID string) error {
	return o.do(ctx, func() { o.unholdLocked(meetingID) })
}

func (o *owner) unholdLocked(meetingID string) {
	if o.held[meetingID]--; o.held[meetingID] <= 0 {
		delete(o.held, meetingID)
	}
}

// hand gives acts to the executor (see owner.submit).
func (o *owner) hand(acts []action) <-chan struct{} {
	if o.submit == nil {
		done := make(chan struct{})
		close(done)
		return done
	}
	return o.submit(acts)
}

// connected is a placed participant arriving on its node: its seat is
// taken for good.
func (o *owner) connected(ctx context.Context, pid string) error {
	return o.do(ctx, func() { o.dropSeat(pid) })
}

// left records a participant's departure from a node in the store: its
// node has one participant fewer.
func (o *owner) left(ctx context.Context, nodeID string) error {
	return o.do(ctx, func() { o.nodes.assign(nodeID, -1) })
}

// leaveFailed forgets that a participant was told to leave, so the next
// plan decides again.
func (o *owner) leaveFailed(ctx context.Context, meetingID, pid string) error {
	return o.do(ctx, func() {
		if p := o.pending[meetingID]; p != nil {
			if _, ok := p.leaving[pid]; ok {
				n := p.clone()
				delete(n.leaving, pid)
				o.setPending(meetingID, n)
				o.markDue(meetingID)
			}
		}
	})
}

// replaced is a participant that replaces another having connected: the
// old connection may linger ReplacedGrace (make before break), then its
// node is told to close it.
func (o *owner) replaced(ctx context.Context, meetingID, oldPID, oldNode string, now time.Time) error {
	return o.do(ctx, func() {
		n := o.pending[meetingID].clone()
		deadline := now.Add(o.timing.ReplacedGrace)
		if mv, ok := n.moves[oldPID]; ok && mv.deadline.Before(deadline) {
			mv.kickReason = api.ReasonMoved
			n.moves[oldPID] = mv
		} else {
			n.moves[oldPID] = move{node: oldNode, reason: api.ReasonMoved, deadline: deadline, kickReason: api.ReasonMoved}
		}
		o.setPending(meetingID, n)
		o.schedule(meetingID, nextDeadline(n, o.sched.trafficDirty[meetingID], o.timing))
	})
}

// tick expires silent nodes and stale seats, hands what that asks for to
// the executor (done is closed once it is carried out), makes due the
// meetings that calls for (those on a node gone silent, those waiting for
// the end of the start-up grace) and takes the next step of the safety
// sweep; meetings are those it made due. It is called every tickEvery.
func (o *owner) tick(ctx context.Context, now time.Time) (acts []action, meetings []string, done <-chan struct{}, err error) {
	err = o.do(ctx, func() {
		before := maps.Clone(o.sched.due)
		// Certificates expire as time passes, between heartbeats too.
		acts = append(acts, o.recheckCerts(now)...)
		acts = append(acts, o.expireNodes(now)...)
		var expired []string
		for pid, s := range o.seats {
			if now.After(s.deadline) {
				expired = append(expired, pid)
			}
		}
		slices.Sort(expired)
		for _, pid := range expired {
			s := o.seats[pid]
			o.dropSeat(pid)
			if s.stored {
				acts = append(acts, action{Kind: actLeave, Meeting: s.meeting,
					Left: leave{Participant: pid, Node: s.node, Reason: reasonNeverConnected, At: now, Unconnected: true}})
			} else {
				o.nodes.assign(s.node, -1)
			}
		}
		if !o.sched.graceOver && now.Sub(o.started) > 2*o.timing.HeartbeatTimeout {
			// Participants on nodes not heard from since the start are
			// taken for gone from now on (plan's Started).
			o.sched.graceOver = true
			for id := range o.sched.byNode {
				if n, ok := o.nodes.nodes[id]; !ok || !n.Healthy {
					o.markNode(id)
				}
			}
		}
		o.nodesChanged()
		o.sweepStep(now, tickEvery(o.timing))
		for id := range o.sched.due {
			if _, ok := before[id]; !ok {
				meetings = append(meetings, id)
			}
		}
		slices.Sort(meetings)
		done = o.hand(acts)
	})
	return acts, meetings, done, err
}

// expireNodes marks the nodes silent for longer than HeartbeatTimeout
// unhealthy and returns the audit entries that calls for.
func (o *owner) expireNodes(now time.Time) []action {
	var acts []action
	for _, n := range o.nodes.expire(now, o.timing.HeartbeatTimeout) {
		o.log.Warn("node unhealthy: no heartbeat", "node", n.ID, "country", n.Country, "timeout", o.timing.HeartbeatTimeout)
		acts = append(acts, action{Kind: actAudit, Entry: audit.Entry{Kind: audit.KindNodeDown, Node: n.ID, NodeCountry: n.Country,
			Reason: fmt.Sprintf("no heartbeat for %s", o.timing.HeartbeatTimeout)}})
	}
	return acts
}

// due takes what is due at now (takeDue) after marking unhealthy the nodes
// whose heartbeat is overdue, so that their meetings are planned at once
// rather than at the next tick; next is also when the next node will be
// overdue.
func (o *owner) due(ctx context.Context, now time.Time) (ids []string, next time.Time, err error) {
	err = o.do(ctx, func() {
		if acts := o.expireNodes(now); len(acts) > 0 {
			o.hand(acts)
			o.nodesChanged()
		}
		ids, next = o.takeDue(now)
		if at := o.nodes.nextExpiry(o.timing.HeartbeatTimeout); !at.IsZero() && (next.IsZero() || at.Before(next)) {
			next = at
		}
	})
	return ids, next, err
}

// tickEvery is how often tick is called.
func tickEvery(t cluster.Timing) time.Duration { return t.HeartbeatInterval / 4 }

// expire disconnects, in every meeting, the participants whose move
// deadline has passed, and hands that to the executor. It needs no read of
// the meetings, so a deadline is kept however long planning takes on a
// loaded store.
func (o *owner) expire(ctx context.Context, now time.Time) (acts []action, err error) {
	err = o.do(ctx, func() {
		var due []string
		for id, pend := range o.pending {
			for _, mv := range pend.moves {
				if now.After(mv.deadline) {
					due = append(due, id)
					break
				}
			}
		}
		slices.Sort(due)
		for _, id := range due {
			pend := o.pending[id]
			p := &planner{planInput: planInput{Meeting: &meeting{ID: id}, Nodes: o.nodes.view(), Pending: pend, Now: now, Timing: o.timing},
				next: pend.clone()}
			p.expireMoves()
			o.setPending(id, p.next)
			acts = append(acts, p.acts...)
		}
		var urgent, rest []action
		for _, a := range acts {
			if a.Kind == actLeave || a.Kind == actCommand && a.Cmd.Kind == cluster.CommandKick {
				urgent = append(urgent, a)
			} else {
				rest = append(rest, a)
			}
		}
		if o.submitUrgent != nil && len(urgent) > 0 {
			o.submitUrgent(urgent)
			o.hand(rest)
			return
		}
		o.hand(acts)
	})
	return acts, err
}

// planOpts are what a plan carries besides the meeting.
type planOpts struct {
	// lead are actions to carry out before the plan's own (a policy
	// change's audit entry).
	lead []action
	// unhold lets go of the caller's hold on the meeting.
	unhold bool
}

// planned is what owner.plan decided.
type planned struct {
	acts []action
	done <-chan struct{} // closed once acts are carried out
	// stale is set when a newer read of the meeting was planned already:
	// nothing but opts.lead was handed over.
	stale bool
}

// plan decides what one meeting, read at revision rev, needs, records the
// decision and hands its actions to the executor, all in one step.
func (o *owner) plan(ctx context.Context, m *meeting, rev uint64, eff policy.Effective, now time.Time, opts planOpts) (planned, error) {
	var out planned
	err := o.do(ctx, func() {
		if opts.unhold {
			o.unholdLocked(m.ID)
			if _, due := o.sched.due[m.ID]; due && o.held[m.ID] == 0 {
				o.markDue(m.ID) // what came meanwhile is planned next
			}
		}
		if rev < o.planned[m.ID] {
			out = planned{acts: opts.lead, done: o.hand(opts.lead), stale: true}
			return
		}
		o.planned[m.ID] = rev
		before := o.pending[m.ID]
		acts, next := plan(planInput{Meeting: m, Policy: eff, Nodes: o.nodes.view(), Pending: before,
			Now: now, Started: o.started, Timing: o.timing})
		if len(m.active()) == 0 {
			delete(o.active, m.ID)
		} else {
			o.active[m.ID] = true
		}
		if next.empty() && !o.active[m.ID] {
			o.setPending(m.ID, nil)
			o.planDone(m, before, nil, now)
		} else {
			o.setPending(m.ID, next)
			o.planDone(m, before, next, now)
		}
		acts = append(slices.Clip(opts.lead), acts...)
		out = planned{acts: acts, done: o.hand(acts)}
	})
	return out, err
}
