package control

import (
	"container/heap"
	"maps"
	"slices"
	"time"

	"github.com/oakmeet/oakmeet/cluster"
)

// Enforcement is reactive: the owner plans a meeting when something it
// depends on changed, not on every tick. A meeting becomes due when its
// stored record changes (the meetings bucket's watch), when a node it uses
// changes in a way a plan looks at (health, draining, certificate, what it
// registered, the relay links it reports), when bytes it forwarded change
// (its traffic is then stored at its next TrafficEvery), and when its own
// next deadline comes (nextDeadline). A slow safety sweep plans every
// active meeting once per SweepInterval, a few at each tick, so a missed
// trigger is never missed for long. All of it is state of the owner
// goroutine and, like the rest of the owner, does no I/O.

// dueState is what the owner keeps to know which meetings to plan next.
type dueState struct {
	due map[string]struct{}
	// at is each meeting's earliest deadline; deadlines is the heap of
	// them (an entry whose time is no longer at[id] is stale, skipped).
	at        map[string]time.Time
	deadlines deadlineHeap
	// trafficDirty are meetings whose nodes reported new byte counts not
	// yet stored.
	trafficDirty map[string]bool
	// byNode indexes, by node, the meetings with participants, moves or
	// relay links there as last planned (or loaded); nodesOf is the same
	// by meeting, to update it.
	byNode  map[string]map[string]struct{}
	nodesOf map[string][]string
	// sweep is what is left of the current safety sweep; sweepNext is when
	// the next one starts, sweepBatch how many it plans at each tick.
	sweep      []string
	sweepNext  time.Time
	sweepBatch int
	// graceOver is set once the start-up grace (see plan's Started) is
	// over and every active meeting was made due for it.
	graceOver bool
	// wake tells the planning loop something became due (buffered 1,
	// never blocks the owner).
	wake chan struct{}
	// plans counts the plans carried out (not those found stale), in all
	// and by meeting while enforcement follows it.
	plans   uint64
	plansOf map[string]uint64
}

func newDueState() dueState {
	return dueState{due: map[string]struct{}{}, at: map[string]time.Time{}, trafficDirty: map[string]bool{},
		byNode: map[string]map[string]struct{}{}, nodesOf: map[string][]string{}, wake: make(chan struct{}, 1),
		plansOf: map[string]uint64{}}
}

// markDue asks for the meeting to be planned soon.
func (o *owner) markDue(id string) {
	o.sched.due[id] = struct{}{}
	select {
	case o.sched.wake <- struct{}{}:
	default:
	}
}

// markNode makes due every meeting indexed on the node.
func (o *owner) markNode(nodeID string) {
	for id := range o.sched.byNode[nodeID] {
		o.markDue(id)
	}
}

// schedule asks for the meeting to be planned at t (zero: nothing asked),
// unless an earlier time is asked already.
func (o *owner) schedule(id string, t time.Time) {
	if t.IsZero() {
		return
	}
	if cur, ok := o.sched.at[id]; ok && !cur.After(t) {
		return
	}
	o.sched.at[id] = t
	heap.Push(&o.sched.deadlines, deadline{at: t, id: id})
	select {
	case o.sched.wake <- struct{}{}: // the planning loop's timer may be later
	default:
	}
}

// index records which nodes a meeting uses.
func (o *owner) index(id string, nodes []string) {
	for _, n := range o.sched.nodesOf[id] {
		if set := o.sched.byNode[n]; set != nil {
			delete(set, id)
			if len(set) == 0 {
				delete(o.sched.byNode, n)
			}
		}
	}
	if len(nodes) == 0 {
		delete(o.sched.nodesOf, id)
		return
	}
	o.sched.nodesOf[id] = nodes
	for _, n := range nodes {
		set := o.sched.byNode[n]
		if set == nil {
			set = map[string]struct{}{}
			o.sched.byNode[n] = set
		}
		set[id] = struct{}{}
	}
}

// meetingNodes are the nodes a meeting uses: those of its active
// participants and of what enforcement has pending for it.
func meetingNodes(m *meeting, pend *meetingPending) []string {
	set := map[string]bool{}
	for _, p := range m.active() {
		set[p.Node.ID] = true
	}
	if pend != nil {
		for pair := range pend.relays {
			set[pair[0]], set[pair[1]] = true, true
		}
		for _, mv := range pend.moves {
			set[mv.node] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// nextDeadline is when a meeting with what enforcement has pending must be
// planned again even if nothing else changes (zero: never): a relay link to
// order again, a link ordered closed or a departure to forget, a move's
// deadline, the end of a rest, and, with traffic not yet stored, the time
// the next store is due. Each is the first instant at which plan decides
// differently than just before.
func nextDeadline(pend *meetingPending, trafficDirty bool, t cluster.Timing) time.Time {
	var next time.Time
	take := func(at time.Time) {
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	if pend == nil {
		return next
	}
	for _, at := range pend.relays {
		take(at.Add(t.RelayResend))
	}
	for _, at := range pend.closed {
		take(at.Add(closedWindow(t) + time.Nanosecond))
	}
	for _, at := range pend.leaving {
		take(at.Add(t.HeartbeatTimeout + time.Nanosecond))
	}
	for _, mv := range pend.moves {
		take(mv.deadline.Add(time.Nanosecond))
	}
	if !pend.restUntil.IsZero() {
		take(pend.restUntil)
	}
	if trafficDirty && !pend.trafficAt.IsZero() {
		take(pend.trafficAt.Add(t.TrafficEvery))
	}
	return next
}

// trafficDue is when byte counts just reported for a meeting are stored:
// at once while it rests (its final counts) or if none were stored yet,
// else TrafficEvery after the last.
func trafficDue(pend *meetingPending, active bool, now time.Time, t cluster.Timing) time.Time {
	if !active || pend == nil || pend.trafficAt.IsZero() {
		return now
	}
	return later(now, pend.trafficAt.Add(t.TrafficEvery))
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// trafficChanged makes due the meetings whose byte counts a node's report
// changed (a count that appeared, moved or vanished). Only meetings
// enforcement follows (with participants, or resting) are concerned.
func (o *owner) trafficChanged(prev, next map[string]uint64, now time.Time) {
	note := func(id string) {
		pend := o.pending[id]
		if !o.active[id] && (pend == nil || pend.restUntil.IsZero()) {
			return
		}
		o.sched.trafficDirty[id] = true
		o.schedule(id, trafficDue(pend, o.active[id], now, o.timing))
	}
	for id, b := range next {
		if old, ok := prev[id]; !ok || old != b {
			note(id)
		}
	}
	for id := range prev {
		if _, ok := next[id]; !ok {
			note(id)
		}
	}
}

// planDone updates what is due after a plan of meeting m at now: the nodes
// it uses, whether its traffic is still to store, and its next deadline.
func (o *owner) planDone(m *meeting, before, after *meetingPending, now time.Time) {
	o.sched.plans++
	o.sched.plansOf[m.ID]++
	o.index(m.ID, meetingNodes(m, after))
	if o.sched.trafficDirty[m.ID] {
		// The plan looked at the counts unless TrafficEvery had not passed
		// since the last were stored.
		if before == nil || before.trafficAt.IsZero() || !now.Before(before.trafficAt.Add(o.timing.TrafficEvery)) || len(m.active()) == 0 {
			delete(o.sched.trafficDirty, m.ID)
		}
	}
	if after == nil && !o.active[m.ID] {
		o.forgetMeeting(m.ID)
		return
	}
	o.schedule(m.ID, nextDeadline(after, o.sched.trafficDirty[m.ID], o.timing))
}

// forgetMeeting drops what is due of a meeting enforcement no longer
// follows.
func (o *owner) forgetMeeting(id string) {
	o.index(id, nil)
	delete(o.sched.trafficDirty, id)
	delete(o.sched.plansOf, id)
	delete(o.sched.at, id) // its heap entry is skipped when it surfaces
}

// sweepStep adds the next few meetings of the safety sweep to what is due,
// starting a new sweep once the last is through and SweepInterval has
// passed since it started. A sweep is spread over ticks (one each every)
// so that it plans len(active)×every/SweepInterval meetings at each.
func (o *owner) sweepStep(now time.Time, every time.Duration) {
	if len(o.sched.sweep) == 0 {
		if now.Before(o.sched.sweepNext) {
			return
		}
		o.sched.sweep = slices.Sorted(maps.Keys(o.active))
		o.sched.sweepNext = now.Add(o.timing.SweepInterval)
		rounds := max(int(o.timing.SweepInterval/max(every, time.Nanosecond)), 1)
		o.sched.sweepBatch = max((len(o.sched.sweep)+rounds-1)/rounds, 1)
	}
	n := min(o.sched.sweepBatch, len(o.sched.sweep))
	for _, id := range o.sched.sweep[:n] {
		if o.active[id] {
			o.markDue(id)
		}
	}
	o.sched.sweep = o.sched.sweep[n:]
}

// takeDue returns the meetings to plan now (sorted; not those held for a
// policy change, which stay due) and when the next deadline is (zero:
// none).
func (o *owner) takeDue(now time.Time) (ids []string, next time.Time) {
	for len(o.sched.deadlines) > 0 {
		d := o.sched.deadlines[0]
		if d.at.After(now) {
			break
		}
		heap.Pop(&o.sched.deadlines)
		if at, ok := o.sched.at[d.id]; !ok || !at.Equal(d.at) {
			continue // superseded by an earlier one, already taken
		}
		delete(o.sched.at, d.id)
		o.sched.due[d.id] = struct{}{}
	}
	for id := range o.sched.due {
		if o.held[id] > 0 {
			continue
		}
		delete(o.sched.due, id)
		ids = append(ids, id)
	}
	slices.Sort(ids)
	// Stale heap entries are dropped as they surface; the heap is
	// rebuilt when they outnumber the live ones, so it stays bounded.
	if len(o.sched.deadlines) > 2*len(o.sched.at)+64 {
		o.sched.deadlines = o.sched.deadlines[:0]
		for id, at := range o.sched.at {
			o.sched.deadlines = append(o.sched.deadlines, deadline{at: at, id: id})
		}
		heap.Init(&o.sched.deadlines)
	}
	if len(o.sched.deadlines) > 0 {
		next = o.sched.deadlines[0].at
	}
	return ids, next
}

// deadline is one meeting's time to be planned.
type deadline struct {
	at time.Time
	id string
}

// deadlineHeap is a min-heap of deadlines by time.
type deadlineHeap []deadline

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h deadlineHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *deadlineHeap) Push(x any)        { *h = append(*h, x.(deadline)) }
func (h *deadlineHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	*h = old[:len(old)-1]
	return d
}

// changed is a meeting's stored record changing (posted: the watch does
// not wait): it is planned if it has participants or enforcement still
// follows it.
func (o *owner) changed(id string, active bool) {
	o.mbox.post(func() {
		if active || o.active[id] || o.pending[id] != nil {
			o.markDue(id)
		}
	})
}
