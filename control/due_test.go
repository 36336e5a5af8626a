package control

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/cluster"
)

func TestNextDeadline(t *testing.T) {
	tm := fastTiming
	at := t0.Add(time.Second)
	for _, tc := range []struct {
		name    string
		pend    *meetingPending
		traffic bool
		want    time.Time
	}{
		{"nothing pending", nil, false, time.Time{}},
		{"at rest", &meetingPending{trafficAt: at}, false, time.Time{}},
		{"relay resend", &meetingPending{relays: map[[2]string]time.Time{{"a", "b"}: at, {"a", "c"}: at.Add(time.Millisecond)}}, false, at.Add(tm.RelayResend)},
		{"closed link forgotten", &meetingPending{closed: map[[2]string]time.Time{{"a", "b"}: at}}, false, at.Add(closedWindow(tm) + time.Nanosecond)},
		{"departure decided again", &meetingPending{leaving: map[string]time.Time{"p": at}}, false, at.Add(tm.HeartbeatTimeout + time.Nanosecond)},
		{"move deadline", &meetingPending{moves: map[string]move{"p": {deadline: at}}}, false, at.Add(time.Nanosecond)},
		{"end of rest", &meetingPending{restUntil: at}, false, at},
		{"traffic to store", &meetingPending{trafficAt: at}, true, at.Add(tm.TrafficEvery)},
		{"earliest of all", &meetingPending{relays: map[[2]string]time.Time{{"a", "b"}: at}, restUntil: at.Add(time.Microsecond)}, false, at.Add(time.Microsecond)},
	} {
		if got := nextDeadline(tc.pend, tc.traffic, tm); !got.Equal(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// takeDueAt takes what is due on the owner at now.
func takeDueAt(t *testing.T, o *owner, now time.Time) (ids []string, next time.Time) {
	t.Helper()
	if err := o.do(context.Background(), func() { ids, next = o.takeDue(now) }); err != nil {
		t.Fatal(err)
	}
	return ids, next
}

// A meeting across two nodes is planned again when its relay link is to be
// ordered again, and not before.
func TestRelayResendIsPlannedAtItsDeadline(t *testing.T) {
	o := startOwner(t, de(), us())
	ctx := context.Background()
	m := meetingWith(viewOf(de(), us()), "p1@de-fra", "p2@us-iad")
	acts, err := planActs(o.plan(ctx, m, 1, effOf(t), t0, planOpts{}))
	if err != nil || !slices.Contains(describeAll(acts), "relay de-fra>us-iad") {
		t.Fatalf("first plan: %q %v", describeAll(acts), err)
	}
	resend := t0.Add(fastTiming.RelayResend)
	if ids, next := takeDueAt(t, o, resend.Add(-time.Nanosecond)); len(ids) != 0 || !next.Equal(resend) {
		t.Fatalf("before the resend: due %q, next %v (want %v)", ids, next, resend)
	}
	ids, _ := takeDueAt(t, o, resend)
	if !slices.Equal(ids, []string{"m1"}) {
		t.Fatalf("at the resend: due %q", ids)
	}
	acts, _ = planActs(o.plan(ctx, m, 1, effOf(t), resend, planOpts{}))
	if !slices.Equal(describeAll(acts), []string{"relay de-fra>us-iad"}) {
		t.Fatalf("plan at the resend: %q", describeAll(acts))
	}
	if _, next := takeDueAt(t, o, resend); !next.Equal(resend.Add(fastTiming.RelayResend)) {
		t.Fatalf("next resend at %v", next)
	}
}

// A meeting on one healthy node with nothing pending is never due again
// while its node keeps reporting the same, however much time passes; a
// change of the node (it drains) makes it due at once.
func TestMeetingAtRestIsNeverDue(t *testing.T) {
	node := de()
	o := startOwner(t, node)
	ctx := context.Background()
	// No safety sweep comes within the test.
	if err := o.do(ctx, func() { o.timing.SweepInterval, o.sched.sweepNext = time.Hour, t0.Add(time.Hour) }); err != nil {
		t.Fatal(err)
	}
	m := meetingWith(viewOf(de()), "p1@de-fra", "p2@de-fra")
	if acts, err := planActs(o.plan(ctx, m, 1, effOf(t), t0, planOpts{})); err != nil || len(acts) != 0 {
		t.Fatalf("first plan: %q %v", describeAll(acts), err)
	}
	takeDueAt(t, o, t0)
	step := fastTiming.HeartbeatInterval / 4
	for now := t0; now.Before(t0.Add(100 * fastTiming.HeartbeatTimeout)); now = now.Add(step) {
		o.heartbeat(cluster.Heartbeat{Node: node.Info}, now)
		if _, made, _, err := o.tick(ctx, now); err != nil || len(made) != 0 {
			t.Fatalf("tick at %v made %q due (%v)", now.Sub(t0), made, err)
		}
		if ids, next := takeDueAt(t, o, now); len(ids) != 0 || !next.IsZero() {
			t.Fatalf("at %v: due %q, next %v", now.Sub(t0), ids, next)
		}
	}
	now := t0.Add(101 * fastTiming.HeartbeatTimeout)
	o.heartbeat(cluster.Heartbeat{Node: node.Info, Draining: true}, now)
	if ids, _ := takeDueAt(t, o, now); !slices.Equal(ids, []string{"m1"}) {
		t.Fatalf("after the node drains: due %q", ids)
	}
}

// New byte counts make a meeting due when its traffic may be stored next:
// at once the first time, then TrafficEvery after the last store.
func TestTrafficIsPlannedWhenItMayBeStored(t *testing.T) {
	node := de()
	o := startOwner(t, node)
	ctx := context.Background()
	m := meetingWith(viewOf(de()), "p1@de-fra")
	if _, err := o.plan(ctx, m, 1, effOf(t), t0, planOpts{}); err != nil {
		t.Fatal(err)
	}
	takeDueAt(t, o, t0)
	report := func(at time.Time, bytes uint64) {
		o.heartbeat(cluster.Heartbeat{Node: node.Info, MeetingBytes: map[string]uint64{"m1": bytes}}, at)
	}
	report(t0, 100)
	if ids, _ := takeDueAt(t, o, t0); !slices.Equal(ids, []string{"m1"}) {
		t.Fatalf("first counts: due %q", ids)
	}
	acts, _ := planActs(o.plan(ctx, m, 1, effOf(t), t0, planOpts{}))
	if !slices.Equal(describeAll(acts), []string{"traffic de-fra"}) {
		t.Fatalf("plan: %q", describeAll(acts))
	}
	later := t0.Add(fastTiming.TrafficEvery / 2)
	report(later, 200)
	if ids, next := takeDueAt(t, o, later); len(ids) != 0 || !next.Equal(t0.Add(fastTiming.TrafficEvery)) {
		t.Fatalf("new counts before TrafficEvery: due %q, next %v", ids, next)
	}
	// The same counts again ask for nothing.
	report(later, 200)
	if ids, _ := takeDueAt(t, o, t0.Add(fastTiming.TrafficEvery)); !slices.Equal(ids, []string{"m1"}) {
		t.Fatalf("at TrafficEvery: due %q", ids)
	}
}

// The safety sweep plans every active meeting once per SweepInterval,
// spread over the ticks.
func TestSweepPlansEveryActiveMeetingOncePerInterval(t *testing.T) {
	node := de()
	o := startOwner(t, node)
	ctx := context.Background()
	var ids []string
	for _, id := range []string{"m1", "m2", "m3", "m4", "m5"} {
		m := meetingWith(viewOf(de()), "p1@de-fra")
		m.ID = id
		if _, err := o.plan(ctx, m, 1, effOf(t), t0, planOpts{}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	takeDueAt(t, o, t0)
	step := tickEvery(fastTiming)
	seen := map[string]int{}
	start := t0.Add(fastTiming.SweepInterval) // the first sweep starts one interval after the load
	for now := start; now.Before(start.Add(fastTiming.SweepInterval)); now = now.Add(step) {
		o.heartbeat(cluster.Heartbeat{Node: node.Info}, now)
		if _, _, _, err := o.tick(ctx, now); err != nil {
			t.Fatal(err)
		}
		due, _ := takeDueAt(t, o, now)
		if len(due) > 1 {
			t.Errorf("%d meetings swept in one tick", len(due))
		}
		for _, id := range due {
			seen[id]++
		}
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("meeting %s swept %d times in one interval", id, seen[id])
		}
	}
}
