package control

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/policy"
)

// Events published while no control plane runs are kept by their stream
// and taken in by the next control plane: a participant that connected
// meanwhile is recorded connected, one that left is recorded gone.
func TestEventsWithoutControlPlaneAreTakenInByTheNext(t *testing.T) {
	e := newRigEnv(t, quietTiming, "de-fra:DE")
	a, stopA := e.start(nil)
	m := a.createMeeting(policy.Policy{})
	ctx := context.Background()
	joinOnly := func() api.JoinResponse {
		jr, err := a.api.Join(ctx, m.ID, api.JoinRequest{Location: api.Hint{Country: "DE"}, Secret: a.secret(m.ID)})
		if err != nil {
			t.Fatal(err)
		}
		return jr
	}
	comes := joinOnly()
	leaves := a.join(m.ID, "DE", "")
	stopA()

	a.event(cluster.Event{Kind: cluster.EventConnected, Node: "de-fra", Meeting: m.ID, Participant: comes.ParticipantID, Time: time.Now()})
	a.event(cluster.Event{Kind: cluster.EventDisconnected, Node: "de-fra", Meeting: m.ID, Participant: leaves.ParticipantID, Reason: "bye", Time: time.Now()})
	// Nothing took them in yet.
	mt, _, err := a.srv.meetings.get(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if mt.participant(comes.ParticipantID).Connected != nil || mt.participant(leaves.ParticipantID).Left != nil {
		t.Fatal("events taken in with no control plane running")
	}

	b, _ := e.start(a)
	b.waitFor("both events taken in", func() bool {
		mt, _, err := b.srv.meetings.get(ctx, m.ID)
		if err != nil {
			return false
		}
		c, l := mt.participant(comes.ParticipantID), mt.participant(leaves.ParticipantID)
		return c.Connected != nil && c.Left == nil && l.Left != nil && l.LeftReason == "bye"
	})
}

// An event delivered again (the control plane stopped before its
// acknowledgement) changes nothing more.
func TestRedeliveredEventChangesNothing(t *testing.T) {
	e := newRigEnv(t, quietTiming, "de-fra:DE", "us-iad:US")
	r, _ := e.start(nil)
	m := r.createMeeting(policy.Policy{})
	ctx := context.Background()
	jr, err := r.api.Join(ctx, m.ID, api.JoinRequest{Location: api.Hint{Country: "DE"}, Secret: r.secret(m.ID)})
	if err != nil {
		t.Fatal(err)
	}
	stays := r.join(m.ID, "US", "")
	// A second participant on the node, so that a seat given back twice
	// shows in the node's count.
	r.join(m.ID, "DE", "")
	r.heartbeatsPass("de-fra", 2)
	for _, ev := range []cluster.Event{
		{Kind: cluster.EventConnected, Node: "de-fra", Meeting: m.ID, Participant: jr.ParticipantID, Time: time.Now()},
		{Kind: cluster.EventDisconnected, Node: "de-fra", Meeting: m.ID, Participant: jr.ParticipantID, Reason: "bye", Time: time.Now().Add(time.Second)},
	} {
		r.srv.nodeEvent(ctx, ev)
		_, rev, err := r.srv.meetings.get(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := r.owner().live().assigned
		r.srv.nodeEvent(ctx, ev)
		_, again, err := r.srv.meetings.get(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if again != rev {
			t.Fatalf("%s delivered again stored the meeting again (revision %d, then %d)", ev.Kind, rev, again)
		}
		if got := r.owner().live().assigned; !equalCounts(got, want) {
			t.Fatalf("%s delivered again changed the seats: %v, then %v", ev.Kind, want, got)
		}
	}
	// Through the stream as well: the same event published twice.
	data, _ := json.Marshal(cluster.Event{Kind: cluster.EventDisconnected, Node: "us-iad", Meeting: m.ID, Participant: stays.ParticipantID, Reason: "bye", Time: time.Now()})
	for range 2 {
		if err := e.conns["us-iad"].Publish(cluster.SubjectEvents("us-iad"), data); err != nil {
			t.Fatal(err)
		}
	}
	r.waitFor("the departure", func() bool { return len(r.routing(m.ID).Participants) == 1 })
	r.waitFor("the seat given back", func() bool { return r.owner().live().assigned["us-iad"] == 0 })
	if got := r.owner().live().assigned; !equalCounts(got, map[string]int{"de-fra": 1}) {
		t.Fatalf("seats %v after an event delivered twice", got)
	}
}

func (r *rig) owner() *owner { return r.srv.owner }

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
