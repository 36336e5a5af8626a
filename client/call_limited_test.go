package client_test

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/control"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// A move whose join the control plane answers 429 (this address's join
// bucket is empty) is asked again after the answer's Retry-After and gets
// in, rather than ending the call.
func TestCallMoveRetriesAfter429(t *testing.T) {
	// One join every 2 s from an address: the test empties the bucket
	// just before the move, so the move's first ask is refused.
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:2],
		testcluster.WithLimits(control.Limits{Join: control.Rate{PerMinute: 30, Burst: 1}}))
	s := callSetup{cluster: c, gate: newGate(t, c.URL), meeting: c.CreateMeeting(policy.Policy{}), log: newLegLog()}
	call := s.start(t, client.CallConfig{RejoinPause: 50 * time.Millisecond, HandoverTimeout: 100 * time.Millisecond})
	first := s.log.next(t, "first")
	// Empty the bucket: a join the bucket refuses is answered before its
	// body is read, so an empty one does.
	joinPath := c.URL + api.MeetingPath(s.meeting.ID, "join")
	testcluster.WaitFor(t, 10*time.Second, "the join bucket empty", func() bool {
		resp, err := http.Post(joinPath, "application/json", bytes.NewReader(nil))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusTooManyRequests
	})
	began := time.Now()
	s.blockDE(t)
	second := s.log.next(t, "after the move message")
	if second.Node().ID != "us-iad" {
		t.Fatalf("moved to %s", second.Node().ID)
	}
	// The refused ask and the one after its Retry-After, both replacing
	// the first leg's participant.
	j := s.gate.joins()
	if len(j) != 3 || j[1] != first.ID() || j[2] != first.ID() {
		t.Fatalf("joins replaced %q; want [\"\" %q %q]: one refused 429, one after it", j, first.ID(), first.ID())
	}
	if d := time.Since(began); d < time.Second {
		t.Fatalf("moved %s after the 429: sooner than its Retry-After", d)
	}
	testcluster.WaitFor(t, 5*time.Second, "the new leg current", func() bool { return call.Current() == second })
	if call.Err() != nil {
		t.Fatalf("call ended: %v", call.Err())
	}
}

// A call's first join answered 429 waits out its Retry-After and gets in,
// as a person would, rather than failing: a bench's clients, many from one
// address, meet the join limits at once.
func TestCallFirstJoinRetriesAfter429(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:2],
		testcluster.WithLimits(control.Limits{Join: control.Rate{PerMinute: 30, Burst: 1}}))
	s := callSetup{cluster: c, gate: newGate(t, c.URL), meeting: c.CreateMeeting(policy.Policy{}), log: newLegLog()}
	joinPath := c.URL + api.MeetingPath(s.meeting.ID, "join")
	testcluster.WaitFor(t, 10*time.Second, "the join bucket empty", func() bool {
		resp, err := http.Post(joinPath, "application/json", bytes.NewReader(nil))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusTooManyRequests
	})
	began := time.Now()
	call := s.start(t, client.CallConfig{RejoinPause: 50 * time.Millisecond})
	s.log.next(t, "first")
	if j := s.gate.joins(); len(j) < 2 {
		t.Fatalf("joins %q: want a refused ask and the one after it", j)
	}
	if d := time.Since(began); d < time.Second {
		t.Fatalf("joined %s after the 429: sooner than its Retry-After", d)
	}
	if call.Err() != nil {
		t.Fatalf("call ended: %v", call.Err())
	}
}
