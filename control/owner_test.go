package control

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/placement"
)

func startOwner(t *testing.T, nodes ...*nodeState) *owner {
	t.Helper()
	o := newOwner(fastTiming, time.Minute, rand.New(rand.NewPCG(1, 2)), testCertifier(t), slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { o.run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, n := range nodes {
		o.heartbeat(cluster.Heartbeat{Node: n.Info, Draining: n.Draining, MeetingBytes: n.MeetingBytes}, t0)
	}
	if err := o.load(ctx, nil, nil, longAgo); err != nil {
		t.Fatal(err)
	}
	return o
}

func TestOwnerDecidesAMoveOnceWhoeverAsks(t *testing.T) {
	o := startOwner(t, de(), us())
	m := meetingWith(viewOf(de(), us()), "p1@us-iad")
	eff := effOf(t, "US")
	var mu sync.Mutex
	var moves int
	var wg sync.WaitGroup
	for range 16 { // policy changes and ticks, all at once
		wg.Go(func() {
			acts, err := planActs(o.plan(context.Background(), m, 7, eff, t0, planOpts{}))
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, a := range acts {
				if a.Kind == actCommand && a.Cmd.Kind == cluster.CommandMove {
					moves++
				}
			}
		})
	}
	wg.Wait()
	if moves != 1 {
		t.Fatalf("%d moves sent", moves)
	}
	if got := o.live().pending["m1"].moving("p1"); got != api.ReasonPolicyChange {
		t.Fatalf("the view shows moving %q", got)
	}
}

func TestOwnerDropsAPlanFromAnOlderRead(t *testing.T) {
	o := startOwner(t, de(), us())
	ctx := context.Background()
	nodes := viewOf(de(), us())
	gone := meetingWith(nodes, "p1@us-iad")
	at := t0
	gone.Participants[0].Left = &at
	if _, err := planActs(o.plan(ctx, gone, 9, effOf(t), t0, planOpts{})); err != nil {
		t.Fatal(err)
	}
	// A read from before the departure arrives late: it must not decide
	// anything about p1 again.
	acts, err := planActs(o.plan(ctx, meetingWith(nodes, "p1@us-iad"), 8, effOf(t, "US"), t0, planOpts{}))
	if err != nil || len(acts) != 0 {
		t.Fatalf("stale plan: %q, %v", describeAll(acts), err)
	}
}

func TestOwnerClosesAReplacedConnectionAfterItsGrace(t *testing.T) {
	o := startOwner(t, de(), us())
	ctx := context.Background()
	m := meetingWith(viewOf(de(), us()), "old@de-fra", "new@us-iad")
	if err := o.replaced(ctx, "m1", "old", "de-fra", t0); err != nil {
		t.Fatal(err)
	}
	acts, _ := planActs(o.plan(ctx, m, 1, effOf(t), t0.Add(fastTiming.ReplacedGrace), planOpts{}))
	for _, a := range acts {
		if a.Kind == actCommand && a.Cmd.Kind == cluster.CommandKick {
			t.Fatalf("closed within the grace: %q", describeAll(acts))
		}
	}
	acts, _ = planActs(o.plan(ctx, m, 1, effOf(t), t0.Add(fastTiming.ReplacedGrace+time.Microsecond), planOpts{}))
	if got := describeAll(acts); len(got) < 2 || got[0] != "kick old@de-fra moved" || got[1] != "left old@de-fra moved" {
		t.Fatalf("after the grace: %q", got)
	}
}

// A move's deadline is kept by the owner's own clock, without a read of
// the meeting: once it has passed, the participant is disconnected and
// recorded leaving, once, with the reason it was asked to move; the audit
// names the node's country.
func TestOwnerExpiresAMoveWithoutReadingTheMeeting(t *testing.T) {
	o := startOwner(t, de(), us())
	ctx := context.Background()
	m := meetingWith(viewOf(de(), us()), "p1@us-iad")
	acts, err := planActs(o.plan(ctx, m, 1, effOf(t, "US"), t0, planOpts{}))
	if err != nil {
		t.Fatal(err)
	}
	if got := describeAll(acts); !slices.Contains(got, "move p1@us-iad policy_change") {
		t.Fatalf("no move asked: %q", got)
	}
	if acts, _ := o.expire(ctx, t0.Add(fastTiming.MoveDeadline)); len(acts) != 0 {
		t.Fatalf("expired at the deadline itself: %q", describeAll(acts))
	}
	acts, err = o.expire(ctx, t0.Add(fastTiming.MoveDeadline+time.Microsecond))
	if err != nil {
		t.Fatal(err)
	}
	got := describeAll(acts)
	if len(got) < 2 || got[0] != "kick p1@us-iad policy_change" || got[1] != "left p1@us-iad policy_change" {
		t.Fatalf("past the deadline: %q", got)
	}
	var audited bool
	for _, a := range acts {
		audited = audited || a.Kind == actAudit && a.Entry.Participant == "p1" && a.Entry.NodeCountry == "US" && a.Meeting == m.ID
	}
	if !audited {
		t.Fatalf("no audit entry naming the node's country: %+v", acts)
	}
	if acts, _ := o.expire(ctx, t0.Add(2*fastTiming.MoveDeadline)); len(acts) != 0 {
		t.Fatalf("expired twice: %q", describeAll(acts))
	}
	// The next plan of the meeting sees the participant leaving and asks
	// nothing more of it.
	acts, _ = planActs(o.plan(ctx, m, 2, effOf(t, "US"), t0.Add(fastTiming.MoveDeadline+2*time.Microsecond), planOpts{}))
	for _, a := range acts {
		if a.Kind == actCommand {
			t.Fatalf("planned again after the expiry: %q", describeAll(acts))
		}
	}
}

// What a passed deadline asks, the kick and the departure, is handed to
// the urgent lane, not behind the executor's queue, which a loaded store
// can keep seconds behind; its audit entry keeps the queue's order.
func TestExpiredMoveTakesTheUrgentLane(t *testing.T) {
	o := newOwner(fastTiming, time.Minute, rand.New(rand.NewPCG(1, 2)), testCertifier(t), slog.New(slog.NewTextHandler(io.Discard, nil)))
	var mu sync.Mutex
	var queued, urgent []action
	record := func(to *[]action) func([]action) <-chan struct{} {
		return func(acts []action) <-chan struct{} {
			mu.Lock()
			defer mu.Unlock()
			*to = append(*to, acts...)
			done := make(chan struct{})
			close(done)
			return done
		}
	}
	o.submit, o.submitUrgent = record(&queued), record(&urgent)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { o.run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, n := range []*nodeState{de(), us()} {
		o.heartbeat(cluster.Heartbeat{Node: n.Info}, t0)
	}
	if err := o.load(ctx, nil, nil, longAgo); err != nil {
		t.Fatal(err)
	}
	m := meetingWith(viewOf(de(), us()), "p1@us-iad")
	if _, err := o.plan(ctx, m, 1, effOf(t, "US"), t0, planOpts{}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	queued, urgent = nil, nil
	mu.Unlock()
	if _, err := o.expire(ctx, t0.Add(fastTiming.MoveDeadline+time.Microsecond)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := describeAll(urgent); len(got) != 2 || got[0] != "kick p1@us-iad policy_change" || got[1] != "left p1@us-iad policy_change" {
		t.Fatalf("urgent lane: %q", got)
	}
	if len(queued) != 1 || queued[0].Kind != actAudit {
		t.Fatalf("queued: %q", describeAll(queued))
	}
}

func TestHeartbeatReplacesMeetingBytes(t *testing.T) {
	o := startOwner(t, de(func(n *nodeState) { n.MeetingBytes = map[string]uint64{"m1": 10} }))
	if got := o.live().node("de-fra").MeetingBytes["m1"]; got != 10 {
		t.Fatalf("bytes %d", got)
	}
	// The meeting's room closed: the node no longer lists it.
	o.heartbeat(cluster.Heartbeat{Node: de().Info}, t0)
	if err := o.do(context.Background(), func() {}); err != nil {
		t.Fatal(err)
	}
	if got := o.live().node("de-fra").MeetingBytes; len(got) != 0 {
		t.Fatalf("stale bytes kept: %v", got)
	}
}

func TestReserveTakesTheLastSeatOnce(t *testing.T) {
	o := startOwner(t, de(func(n *nodeState) { n.Info.MaxParticipants = 1 }))
	ctx := context.Background()
	req := placement.Request{Policy: effOf(t)}
	if _, err := o.reserve(ctx, "p1", "m1", pendingAsk{}, req, t0); err != nil {
		t.Fatal(err)
	}
	var ref *placement.Refusal
	if _, err := o.reserve(ctx, "p2", "m1", pendingAsk{}, req, t0); !errors.As(err, &ref) || ref.Code != placement.CodeNoCapacity {
		t.Fatalf("second reserve: %v", err)
	}
	if err := o.release(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	if p, err := o.reserve(ctx, "p2", "m1", pendingAsk{}, req, t0); err != nil || p.Info.URL != "ws://de-fra" {
		t.Fatalf("after release: %+v %v", p, err)
	}
	if err := o.joined(ctx, "m1", "p2", 3); err != nil {
		t.Fatal(err)
	}
	// A seat never taken is released after the token's life and SeatGrace
	// (by then the silent node is down too).
	acts, _, err := tickActs(o.tick(ctx, t0.Add(time.Minute+fastTiming.SeatGrace)))
	if err != nil || !slices.Equal(describeAll(acts), []string{"audit node_down @de-fra"}) {
		t.Fatalf("tick at the deadline: %q %v", describeAll(acts), err)
	}
	acts, _, err = tickActs(o.tick(ctx, t0.Add(time.Minute+fastTiming.SeatGrace+time.Microsecond)))
	if err != nil || !slices.Equal(describeAll(acts), []string{"left p2@de-fra never connected"}) {
		t.Fatalf("tick after the deadline: %q %v", describeAll(acts), err)
	}
}

func planActs(p planned, err error) ([]action, error) { return p.acts, err }

func tickActs(acts []action, meetings []string, _ <-chan struct{}, err error) ([]action, []string, error) {
	return acts, meetings, err
}

// A seat whose join never reached the store (the store failed, or the
// release was lost) has no participant to record leaving: the owner gives
// the seat back itself when it expires, so capacity does not leak.
func TestUnstoredSeatIsGivenBack(t *testing.T) {
	o := startOwner(t, de(func(n *nodeState) { n.Info.MaxParticipants = 1 }))
	ctx := context.Background()
	req := placement.Request{Policy: effOf(t)}
	if _, err := o.reserve(ctx, "p1", "m1", pendingAsk{}, req, t0); err != nil {
		t.Fatal(err)
	}
	acts, _, err := tickActs(o.tick(ctx, t0.Add(time.Minute+fastTiming.SeatGrace+time.Microsecond)))
	if err != nil || slices.Contains(describeAll(acts), "left p1@de-fra never connected") {
		t.Fatalf("tick: %q %v", describeAll(acts), err)
	}
	o.heartbeat(cluster.Heartbeat{Node: de().Info}, t0.Add(time.Minute+fastTiming.SeatGrace+time.Microsecond))
	if _, err := o.reserve(ctx, "p2", "m1", pendingAsk{}, req, t0.Add(time.Minute)); err != nil {
		t.Fatalf("the expired seat was not given back: %v", err)
	}
}

// A node that floods its heartbeat subject costs one queued closure: the
// owner takes the newest report when it gets to it, so its mailbox stays
// bounded by the number of nodes however fast they publish.
func TestHeartbeatFloodIsCoalesced(t *testing.T) {
	o := newOwner(fastTiming, time.Minute, rand.New(rand.NewPCG(1, 2)), testCertifier(t), slog.New(slog.NewTextHandler(io.Discard, nil)))
	info := de().Info
	for i := range 10000 {
		o.heartbeat(cluster.Heartbeat{Node: info, Load: cluster.Load{Participants: i}}, t0)
	}
	o.heartbeat(cluster.Heartbeat{Node: us().Info}, t0)
	queued := o.mbox.q.Take()
	if len(queued) != 2 {
		t.Fatalf("%d closures queued for 10,001 heartbeats from two nodes", len(queued))
	}
	for _, f := range queued {
		f()
	}
	o.publish()
	if got := o.live().node("de-fra").Load.Participants; got != 9999 {
		t.Fatalf("the owner took report %d, not the newest", got)
	}
	o.heartbeat(cluster.Heartbeat{Node: info, Load: cluster.Load{Participants: 1}}, t0)
	if len(o.mbox.q.Take()) != 1 {
		t.Fatal("a report after the owner took the last one was not queued")
	}
}
