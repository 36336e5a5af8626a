package control

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/policy"
)

// Plans run at millisecond fake time: every clock is a thousandth of the
// default.
var (
	fastTiming = cluster.DefaultTiming().Scaled(1000)
	t0         = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	longAgo    = t0.Add(-time.Hour)
)

func fakeNode(id, country, region string, mods ...func(*nodeState)) *nodeState {
	info := enrolled(cluster.NodeInfo{ID: id, Country: country, Region: region, URL: "ws://" + id})
	n := &nodeState{Info: info, Healthy: true, LastSeen: t0, Cert: certStatus{text: info.Cert, verified: true, ok: true}}
	for _, m := range mods {
		m(n)
	}
	return n
}

func draining(n *nodeState) { n.Draining = true }
func silent(n *nodeState)   { n.Healthy = false }
func uncertified(n *nodeState) {
	n.Cert = n.Cert.fail("revoked", "certificate is revoked")
}

func reports(meeting, peer string) func(*nodeState) {
	return func(n *nodeState) {
		n.Relays = append(n.Relays, cluster.RelayLink{Meeting: meeting, Peer: peer, Dialer: true, Connected: true})
	}
}

func de(mods ...func(*nodeState)) *nodeState {
	return fakeNode("de-fra", "DE", "eu-central-1", mods...)
}
func us(mods ...func(*nodeState)) *nodeState { return fakeNode("us-iad", "US", "us-east-1", mods...) }
func cn(mods ...func(*nodeState)) *nodeState { return fakeNode("cn-pek", "CN", "cn-north-1", mods...) }

func viewOf(nodes ...*nodeState) nodeView {
	r := newRegistry()
	for _, n := range nodes {
		r.nodes[n.Info.ID] = n
	}
	return r.view()
}

// meetingWith has one connected participant per "pid@node" spec.
func meetingWith(nodes nodeView, specs ...string) *meeting {
	m := &meeting{ID: "m1"}
	for _, s := range specs {
		pid, node, _ := strings.Cut(s, "@")
		n := nodes.byID[node].Info
		at := t0.Add(-time.Minute)
		m.Participants = append(m.Participants, participant{ID: pid, Node: api.PlacedNode{ID: node, Country: n.Country, Region: n.Region}, Joined: at, Connected: &at})
	}
	return m
}

func effOf(t *testing.T, blocked ...string) policy.Effective {
	t.Helper()
	eff, err := policy.Combine(policy.Policy{}, policy.Policy{BlockedCountries: blocked})
	if err != nil {
		t.Fatal(err)
	}
	return eff
}

// summary is an action in a few words, for comparing plans.
func summary(a action) string {
	switch a.Kind {
	case actCommand:
		if a.Cmd.Peer != "" {
			return fmt.Sprintf("%s %s>%s", a.Cmd.Kind, a.Node, a.Cmd.Peer)
		}
		return fmt.Sprintf("%s %s@%s %s", a.Cmd.Kind, a.Cmd.Participant, a.Node, a.Cmd.Reason)
	case actRelay:
		return fmt.Sprintf("relay %s>%s", a.Relay.From.ID, a.Relay.To.ID)
	case actLeave:
		return fmt.Sprintf("left %s@%s %s", a.Left.Participant, a.Left.Node, a.Left.Reason)
	case actAudit:
		return fmt.Sprintf("audit %s %s@%s", a.Entry.Kind, a.Entry.Participant, a.Entry.Node)
	case actMigration:
		return "migration " + a.Reason
	case actTraffic:
		return "traffic " + strings.Join(slices.Sorted(maps.Keys(a.Traffic)), ",")
	}
	return fmt.Sprintf("unknown action %d", a.Kind)
}

func describeAll(acts []action) []string {
	out := []string{}
	for _, a := range acts {
		out = append(out, summary(a))
	}
	return out
}

// carryOut applies to m what the actions do to the world: departures are
// stored, and a node told to close a link stops reporting it.
func carryOut(m *meeting, nodes nodeView, acts []action) (*meeting, nodeView) {
	m2 := *m
	m2.Participants = slices.Clone(m.Participants)
	m2.Traffic = map[string]*traffic{}
	for id, t := range m.Traffic {
		c := *t
		m2.Traffic[id] = &c
	}
	byID := maps.Clone(nodes.byID)
	for _, a := range acts {
		switch {
		case a.Kind == actTraffic:
			foldTraffic(&m2, a.Traffic, t0)
		case a.Kind == actLeave:
			if p := m2.participant(a.Left.Participant); p != nil && p.Left == nil {
				t := a.Left.At
				p.Left = &t
			}
		case a.Kind == actCommand && a.Cmd.Kind == cluster.CommandUnrelay:
			if n, ok := byID[a.Node]; ok {
				c := *n
				c.Relays = slices.DeleteFunc(slices.Clone(c.Relays), func(l cluster.RelayLink) bool { return l.Peer == a.Cmd.Peer })
				byID[a.Node] = &c
			}
		}
	}
	return &m2, nodeView{byID: byID, snap: nodes.snap}
}

func pendingWith(f func(p *meetingPending)) *meetingPending {
	p := (*meetingPending)(nil).clone()
	p.trafficAt = t0 // traffic is its own case
	f(p)
	return p
}

// TestPlan is one table of situations, one per line of what enforcement
// must do; it is long for the table, not for its logic.
func TestPlan(t *testing.T) {
	sortedPair := [2]string{"de-fra", "us-iad"}
	cases := []struct {
		name    string
		nodes   []*nodeState
		people  []string
		blocked []string
		pending *meetingPending
		started time.Time
		want    []string
	}{
		{
			name: "policy change moves a participant off a blocked node", nodes: []*nodeState{de(), us()},
			people: []string{"p1@us-iad"}, blocked: []string{"US"},
			want: []string{"move p1@us-iad policy_change", "migration policy_change", "audit migration p1@us-iad"},
		},
		{
			name: "nothing allowed left disconnects", nodes: []*nodeState{us(), cn()},
			people: []string{"p1@us-iad"}, blocked: []string{"US", "CN"},
			want: []string{"kick p1@us-iad policy_no_allowed_node", "left p1@us-iad policy_no_allowed_node",
				"migration policy_no_allowed_node", "audit disconnect p1@us-iad"},
		},
		{
			name: "a draining node's participants move", nodes: []*nodeState{de(draining), us()},
			people: []string{"p1@de-fra"},
			want:   []string{"move p1@de-fra node_draining", "migration node_draining", "audit migration p1@de-fra"},
		},
		{
			name: "draining with nowhere to go disconnects", nodes: []*nodeState{de(draining), cn()},
			people: []string{"p1@de-fra"}, blocked: []string{"CN"},
			want: []string{"kick p1@de-fra node_draining_no_allowed_node", "left p1@de-fra node_draining_no_allowed_node",
				"migration node_draining_no_allowed_node", "audit disconnect p1@de-fra"},
		},
		{
			name: "an uncertified node's participants move, and no relay joins it", nodes: []*nodeState{de(uncertified), us()},
			people: []string{"p1@de-fra", "p2@us-iad"},
			want:   []string{"move p1@de-fra node_uncertified", "migration node_uncertified", "audit migration p1@de-fra"},
		},
		{
			name: "uncertified with nowhere to go disconnects", nodes: []*nodeState{de(uncertified), cn()},
			people: []string{"p1@de-fra"}, blocked: []string{"CN"},
			want: []string{"kick p1@de-fra node_uncertified_no_allowed_node", "left p1@de-fra node_uncertified_no_allowed_node",
				"migration node_uncertified_no_allowed_node", "audit disconnect p1@de-fra"},
		},
		{
			name: "a dead node's participants are marked left and audited", nodes: []*nodeState{de(silent), us()},
			people: []string{"p1@de-fra", "p2@us-iad"},
			want:   []string{"left p1@de-fra node_down", "audit disconnect p1@de-fra"},
		},
		{
			name: "right after a start silent nodes are not dead yet", nodes: []*nodeState{de(silent)},
			people: []string{"p1@de-fra"}, started: t0.Add(-fastTiming.HeartbeatTimeout),
			want: []string{},
		},
		{
			name: "a passed move deadline disconnects", nodes: []*nodeState{de(), us()},
			people: []string{"p1@us-iad"}, blocked: []string{"US"},
			pending: pendingWith(func(p *meetingPending) {
				p.moves["p1"] = move{node: "us-iad", reason: api.ReasonPolicyChange, deadline: t0.Add(-time.Millisecond), kickReason: api.ReasonPolicyChange}
			}),
			want: []string{"kick p1@us-iad policy_change", "left p1@us-iad policy_change", "audit disconnect p1@us-iad"},
		},
		{
			name: "a move not yet due waits", nodes: []*nodeState{de(), us()},
			people: []string{"p1@us-iad"}, blocked: []string{"US"},
			pending: pendingWith(func(p *meetingPending) {
				p.moves["p1"] = move{node: "us-iad", reason: api.ReasonPolicyChange, deadline: t0, kickReason: api.ReasonPolicyChange}
			}),
			want: []string{},
		},
		{
			name: "a replaced participant is closed after its grace, unaudited", nodes: []*nodeState{de(), us()},
			people: []string{"old@de-fra", "new@de-fra"},
			pending: pendingWith(func(p *meetingPending) {
				p.moves["old"] = move{node: "de-fra", reason: api.ReasonMoved, deadline: t0.Add(-time.Millisecond), kickReason: api.ReasonMoved}
			}),
			want: []string{"kick old@de-fra moved", "left old@de-fra moved"},
		},
		{
			name: "a relay opens between allowed used nodes", nodes: []*nodeState{de(), us(), cn()},
			people: []string{"p1@de-fra", "p2@us-iad"}, blocked: []string{"CN"},
			want: []string{"relay de-fra>us-iad", "audit relay @de-fra"},
		},
		{
			name: "a relay closes when a node becomes blocked", nodes: []*nodeState{de(), us()},
			people: []string{"p1@de-fra", "p2@us-iad"}, blocked: []string{"US"},
			pending: pendingWith(func(p *meetingPending) { p.relays[sortedPair] = t0 }),
			want: []string{"move p2@us-iad policy_change", "migration policy_change", "audit migration p2@us-iad",
				"unrelay de-fra>us-iad", "unrelay us-iad>de-fra"},
		},
		{
			name: "a relay is ordered again after RelayResend", nodes: []*nodeState{de(), us()},
			people:  []string{"p1@de-fra", "p2@us-iad"},
			pending: pendingWith(func(p *meetingPending) { p.relays[sortedPair] = t0.Add(-fastTiming.RelayResend) }),
			want:    []string{"relay de-fra>us-iad"},
		},
		{
			name: "a relay is not ordered again before RelayResend", nodes: []*nodeState{de(), us()},
			people:  []string{"p1@de-fra", "p2@us-iad"},
			pending: pendingWith(func(p *meetingPending) { p.relays[sortedPair] = t0.Add(-fastTiming.RelayResend + time.Microsecond) }),
			want:    []string{},
		},
		{
			name: "a participant told to leave a moment ago is left alone", nodes: []*nodeState{de(), us()},
			people: []string{"p1@us-iad"}, blocked: []string{"US"},
			pending: pendingWith(func(p *meetingPending) { p.leaving["p1"] = t0.Add(-fastTiming.HeartbeatTimeout) }),
			want:    nil,
		},
		{
			// Its departure was lost (a store write that failed, a stop):
			// the plan decides again rather than forget the participant.
			name: "a participant told to leave long ago is decided again", nodes: []*nodeState{de(), us()},
			people: []string{"p1@us-iad"}, blocked: []string{"US"},
			pending: pendingWith(func(p *meetingPending) { p.leaving["p1"] = t0.Add(-fastTiming.HeartbeatTimeout - time.Microsecond) }),
			want:    []string{"move p1@us-iad policy_change", "migration policy_change", "audit migration p1@us-iad"},
		},
		{
			name: "a reported relay to a blocked node is closed", nodes: []*nodeState{de(reports("m1", "cn-pek")), cn()},
			people: []string{"p1@de-fra"}, blocked: []string{"CN"},
			want: []string{"unrelay de-fra>cn-pek"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nodes := viewOf(tc.nodes...)
			started := tc.started
			if started.IsZero() {
				started = longAgo
			}
			pending := tc.pending
			if pending == nil {
				pending = pendingWith(func(*meetingPending) {})
			}
			before := pending.clone()
			in := planInput{Meeting: meetingWith(nodes, tc.people...), Policy: effOf(t, tc.blocked...), Nodes: nodes,
				Pending: pending, Now: t0, Started: started, Timing: fastTiming}
			acts, next := plan(in)
			if got := describeAll(acts); !slices.Equal(got, tc.want) {
				t.Fatalf("plan:\n got %q\nwant %q", got, tc.want)
			}
			if !reflect.DeepEqual(pending, before) {
				t.Fatalf("plan changed its input: %+v, was %+v", pending, before)
			}
			// Carried out, the same plan again decides nothing new.
			in.Meeting, in.Nodes = carryOut(in.Meeting, in.Nodes, acts)
			in.Pending = next
			if again, _ := plan(in); len(again) != 0 {
				t.Fatalf("planned again after carrying out: %q", describeAll(again))
			}
		})
	}
}

func TestPlanRecordsWhatItDecided(t *testing.T) {
	nodes := viewOf(de(), us())
	in := planInput{Meeting: meetingWith(nodes, "p1@us-iad", "p2@de-fra"), Policy: effOf(t, "US"), Nodes: nodes,
		Now: t0, Started: longAgo, Timing: fastTiming}
	acts, next := plan(in)
	mv, ok := next.moves["p1"]
	if !ok || mv.reason != api.ReasonPolicyChange || !mv.deadline.Equal(t0.Add(fastTiming.MoveDeadline)) {
		t.Fatalf("pending move %+v (%v) after %q", mv, ok, describeAll(acts))
	}
	// Before carrying anything out (the departure not stored yet), a
	// second plan still sends nothing twice.
	in.Pending = next
	in.Now = t0.Add(time.Microsecond)
	if again, _ := plan(in); len(again) != 0 {
		t.Fatalf("second plan: %q", describeAll(again))
	}
	// Past the deadline the participant is disconnected once.
	in.Now = t0.Add(fastTiming.MoveDeadline + time.Microsecond)
	acts, next = plan(in)
	want := []string{"kick p1@us-iad policy_change", "left p1@us-iad policy_change", "audit disconnect p1@us-iad"}
	if got := describeAll(acts); !slices.Equal(got, want) {
		t.Fatalf("after the deadline: %q, want %q", got, want)
	}
	if e := acts[2].Entry; !strings.Contains(e.Reason, "did not move within "+fastTiming.MoveDeadline.String()) || e.NodeCountry != "US" {
		t.Fatalf("disconnect entry %+v", e)
	}
	in.Pending = next
	if again, _ := plan(in); len(again) != 0 {
		t.Fatalf("after the kick, before the departure is stored: %q", describeAll(again))
	}
}

func TestPlanTraffic(t *testing.T) {
	counts := func(b uint64) func(n *nodeState) {
		return func(n *nodeState) { n.MeetingBytes = map[string]uint64{"m1": b, "other": 5} }
	}
	nodes := viewOf(de(counts(100)), us())
	in := planInput{Meeting: meetingWith(nodes, "p1@de-fra"), Policy: effOf(t), Nodes: nodes, Now: t0, Started: longAgo, Timing: fastTiming}
	acts, next := plan(in)
	if got := describeAll(acts); !slices.Equal(got, []string{"traffic de-fra"}) || acts[0].Traffic["de-fra"] != (nodeBytes{Bytes: 100, Country: "DE", Region: "eu-central-1"}) {
		t.Fatalf("first plan: %q %+v", got, acts)
	}
	in.Meeting, _ = carryOut(in.Meeting, nodes, acts)
	in.Pending, in.Now = next, t0.Add(fastTiming.TrafficEvery-time.Microsecond)
	in.Nodes = viewOf(de(counts(150)), us())
	if acts, _ := plan(in); len(acts) != 0 {
		t.Fatalf("traffic stored again too soon: %q", describeAll(acts))
	}
	in.Now = t0.Add(fastTiming.TrafficEvery)
	acts, next = plan(in)
	if !slices.Equal(describeAll(acts), []string{"traffic de-fra"}) {
		t.Fatalf("after TrafficEvery: %q", describeAll(acts))
	}
	in.Meeting, _ = carryOut(in.Meeting, in.Nodes, acts)
	in.Pending = next
	in.Now = in.Now.Add(fastTiming.TrafficEvery)
	if acts, _ := plan(in); len(acts) != 0 {
		t.Fatalf("unchanged counts stored again: %q", describeAll(acts))
	}

	// When the last participant has gone the meeting rests, but the counts
	// the node reports after its room closed are still folded for
	// restWindow, each as soon as it changes.
	in.Meeting, _ = carryOut(in.Meeting, in.Nodes, []action{{Kind: actLeave, Left: leave{Participant: "p1", At: in.Now}}})
	rested := in.Now
	acts, next = plan(in)
	if len(acts) != 0 || next.empty() || !next.restUntil.Equal(rested.Add(restWindow(fastTiming))) {
		t.Fatalf("resting: %q, pending %+v", describeAll(acts), next)
	}
	in.Pending, in.Now = next, rested.Add(time.Microsecond)
	in.Nodes = viewOf(de(counts(170)), us()) // the final count
	acts, next = plan(in)
	if !slices.Equal(describeAll(acts), []string{"traffic de-fra"}) || acts[0].Traffic["de-fra"].Bytes != 170 {
		t.Fatalf("final count at rest: %q %+v", describeAll(acts), acts)
	}
	in.Meeting, _ = carryOut(in.Meeting, in.Nodes, acts)
	if got := in.Meeting.Traffic["de-fra"].Bytes; got != 170 {
		t.Fatalf("folded %d bytes, want 170", got)
	}
	// The node forgets the meeting: its stored count is marked gone, so
	// that a later stay, counted from zero again, is counted whole.
	in.Pending, in.Now = next, in.Now.Add(time.Microsecond)
	in.Nodes = viewOf(de(), us())
	acts, next = plan(in)
	if len(acts) != 1 || !acts[0].Traffic["de-fra"].Gone {
		t.Fatalf("forgotten counter: %+v", acts)
	}
	in.Meeting, _ = carryOut(in.Meeting, in.Nodes, acts)
	if tr := in.Meeting.Traffic["de-fra"]; tr.LastReported != 0 || tr.Bytes != 170 {
		t.Fatalf("after gone: %+v", tr)
	}
	in.Pending, in.Now = next, rested.Add(restWindow(fastTiming))
	if acts, next = plan(in); len(acts) != 0 || !next.empty() {
		t.Fatalf("after the rest window: %q, pending %+v", describeAll(acts), next)
	}
	// Back on the node, counting from zero: all 30 bytes are new.
	in.Meeting.Participants = append(in.Meeting.Participants, participant{ID: "p2", Node: api.PlacedNode{ID: "de-fra", Country: "DE"}})
	in.Pending, in.Nodes = next, viewOf(de(counts(30)), us())
	acts, _ = plan(in)
	in.Meeting, _ = carryOut(in.Meeting, in.Nodes, acts)
	if got := in.Meeting.Traffic["de-fra"].Bytes; got != 200 {
		t.Fatalf("after coming back: %d bytes, want 200", got)
	}
}

func TestFoldTraffic(t *testing.T) {
	m := &meeting{}
	steps := []struct {
		reported    uint64
		wantBytes   uint64
		wantChanged bool
	}{
		{100, 100, true},
		{100, 100, false},
		{250, 250, true},
		{40, 290, true}, // the node restarted and counts from zero
		{0, 290, true},
	}
	for i, st := range steps {
		now := t0.Add(time.Duration(i) * time.Second)
		changed := foldTraffic(m, map[string]nodeBytes{"de-fra": {Bytes: st.reported, Country: "DE"}}, now)
		if got := m.Traffic["de-fra"]; changed != st.wantChanged || got.Bytes != st.wantBytes || got.Country != "DE" {
			t.Fatalf("step %d: changed %v, %+v; want %v, %d bytes", i, changed, got, st.wantChanged, st.wantBytes)
		}
	}
	gone := foldTraffic(m, map[string]nodeBytes{"de-fra": {Gone: true}}, t0)
	if gone || m.Traffic["de-fra"].LastReported != 0 {
		t.Fatalf("gone after a zero count: changed %v, %+v", gone, m.Traffic["de-fra"])
	}
	if !m.Traffic["de-fra"].FirstTraffic.Equal(t0) {
		t.Fatalf("first traffic %v", m.Traffic["de-fra"].FirstTraffic)
	}
}

func TestPlanAuditEntries(t *testing.T) {
	nodes := viewOf(de(), us())
	eff := effOf(t, "US")
	acts, _ := plan(planInput{Meeting: meetingWith(nodes, "p1@us-iad"), Policy: eff, Nodes: nodes, Now: t0, Started: longAgo, Timing: fastTiming})
	var entries []audit.Entry
	for _, a := range acts {
		if a.Kind == actAudit {
			entries = append(entries, a.Entry)
		}
	}
	want := audit.Entry{Kind: audit.KindMigration, Meeting: "m1", Participant: "p1", Node: "us-iad", NodeCountry: "US", PolicyHash: eff.Hash(),
		Reason: "policy_change: asked to leave node us-iad (US) within " + fastTiming.MoveDeadline.String()}
	if len(entries) != 1 || entries[0] != want {
		t.Fatalf("entries %+v, want %+v", entries, want)
	}
}

// A meeting that rested and comes back plans from the little pending state
// a rest keeps; that must be as writable as a fresh one.
func TestPlanAfterRest(t *testing.T) {
	nodes := viewOf(de(), us())
	in := planInput{Meeting: meetingWith(nodes, "p1@de-fra"), Policy: effOf(t), Nodes: nodes, Now: t0, Started: longAgo, Timing: fastTiming}
	in.Meeting, _ = carryOut(in.Meeting, nodes, []action{{Kind: actLeave, Left: leave{Participant: "p1", At: t0}}})
	_, rest := plan(in)
	if rest.empty() {
		t.Fatal("a meeting that just emptied keeps no rest window")
	}
	in.Meeting = meetingWith(nodes, "p2@de-fra", "p3@us-iad")
	in.Pending, in.Now = rest, t0.Add(time.Millisecond)
	acts, next := plan(in)
	if got := describeAll(acts); !slices.Contains(got, "relay de-fra>us-iad") || len(next.relays) != 1 || !next.restUntil.IsZero() {
		t.Fatalf("after rest: %q, pending %+v", got, next)
	}
}
