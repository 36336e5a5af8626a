package control

import (
	"context"
	"testing"

	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/policy"
)

// A batch whose context ends midway (the control plane lost its lease
// while it was stalled) sends nothing after: the action under way when
// ctx ends is the last.
func TestCarryOutStopsWhenContextEnds(t *testing.T) {
	r := startRig(t, "de-fra:DE")
	m := r.createMeeting(policy.Policy{})
	kick := func(pid string) action {
		return action{Kind: actCommand, Meeting: m.ID, Node: "de-fra",
			Cmd: cluster.Command{Kind: cluster.CommandKick, Meeting: m.ID, Participant: pid, Reason: "fence"}}
	}
	sentTo := func(pid string) bool {
		return len(r.commands(func(c sentCommand) bool { return c.cmd.Participant == pid })) > 0
	}
	// The departure waits on the meeting's update lock, held here, so the
	// batch stalls between its first kick and its others.
	unlock := r.srv.meetings.lock(m.ID)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.srv.carryOut(ctx, []action{
			kick("pbefore"),
			{Kind: actLeave, Meeting: m.ID, Left: leave{Participant: "pnobody", Node: "de-fra"}},
			kick("pafter"),
			{Kind: actRelay, Meeting: m.ID, Relay: relayOrder{}},
		})
	}()
	r.waitFor("the first kick", func() bool { return sentTo("pbefore") })
	cancel()
	unlock()
	<-done
	// Commands from one connection to one subject arrive in order: once a
	// marker sent after the batch is in, anything the batch sent is too.
	r.srv.command(context.Background(), "de-fra", cluster.Command{Kind: cluster.CommandKick, Meeting: m.ID, Participant: "pmarker"})
	r.waitFor("the marker", func() bool { return sentTo("pmarker") })
	if sentTo("pafter") {
		t.Fatal("a kick was sent after the batch's context ended")
	}
	if got := r.commands(func(c sentCommand) bool { return c.cmd.Kind == cluster.CommandRelay }); len(got) > 0 {
		t.Fatalf("relay orders %q sent after the batch's context ended", got)
	}
}
