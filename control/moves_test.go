package control_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/control"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// A wave of moves (every participant joining again at once as its own
// replacement, as a lost or draining node or a policy change asks) is not
// held by the caps on waiting seats, however tight; a second waiting
// replacement of one participant is.
func TestMoveWaveIsNotHeldByWaitingSeatCaps(t *testing.T) {
	ensureLoopbackAliases(t)
	const n = 8
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1],
		testcluster.WithLimits(control.Limits{PendingSeatsPerMeeting: 2, PendingSeatsPerAddress: 2,
			PendingSeatsPerMeetingAddress: 1, PendingHold: time.Minute}))
	m := c.CreateMeeting(policy.Policy{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr := func(i int) *http.Client { return from(t, fmt.Sprintf("127.0.4.%d", 1+i%2)) }
	joins := make([]client.JoinResult, n)
	for i := range joins {
		jr, err := client.Join(ctx, addr(i), c.URL, m.ID, client.JoinRequest{Name: "p", Country: "DE", Secret: m.JoinSecret})
		if err != nil {
			t.Fatalf("join %d: %v", i, err)
		}
		s, err := client.Connect(ctx, jr, client.Options{LoopbackOnly: true})
		if err != nil {
			t.Fatalf("connect %d: %v", i, err)
		}
		t.Cleanup(func() { _ = s.Close() })
		go func() {
			for range s.Events() {
			}
		}()
		joins[i] = jr
		// Connected as the control plane records it, so its seat is free.
		testcluster.WaitFor(t, 10*time.Second, "participant recorded connected", func() bool {
			r, err := c.API.MeetingReport(ctx, m.ID)
			if err != nil {
				t.Fatal(err)
			}
			connected := 0
			for _, u := range r.Nodes {
				connected += u.Participants
			}
			return connected == i+1
		})
	}
	wantAnswer := func(what string, err error) {
		t.Helper()
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != http.StatusTooManyRequests || ae.Code != api.CodeRateLimited {
			t.Fatalf("%s: %v; want 429 %s", what, err, api.CodeRateLimited)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	moved := make([]client.JoinResult, n)
	for i := range joins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			moved[i], errs[i] = client.Join(ctx, addr(i), c.URL, m.ID, client.JoinRequest{Name: "p", Country: "DE", Secret: m.JoinSecret,
				Replaces: joins[i].ParticipantID, RejoinSecret: joins[i].RejoinSecret})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("move %d of %d: %v", i, n, err)
		}
	}
	// The wave's seats wait for their connections: a fresh join is held.
	_, err := client.Join(ctx, addr(0), c.URL, m.ID, client.JoinRequest{Name: "new", Country: "DE", Secret: m.JoinSecret})
	wantAnswer("a fresh join while the wave's seats wait", err)
	// Asking again with the same rejoin secret while the first
	// replacement waits is a new waiting seat, held by the caps; and so
	// is a replacement of the replacement, which never connected.
	_, err = client.Join(ctx, addr(0), c.URL, m.ID, client.JoinRequest{Name: "p", Country: "DE", Secret: m.JoinSecret,
		Replaces: joins[0].ParticipantID, RejoinSecret: joins[0].RejoinSecret})
	wantAnswer("a second waiting replacement of one participant", err)
	_, err = client.Join(ctx, addr(0), c.URL, m.ID, client.JoinRequest{Name: "p", Country: "DE", Secret: m.JoinSecret,
		Replaces: moved[0].ParticipantID, RejoinSecret: moved[0].RejoinSecret})
	wantAnswer("a replacement of a replacement that never connected", err)
}

// One address holds at most PendingSeatsPerMeetingAddress of a meeting's
// waiting seats: a few addresses with the meeting's secret cannot fill
// the meeting's cap and lock everyone else out. Other meetings, other
// addresses and the host still get in.
func TestWaitingSeatsPerMeetingAndAddress(t *testing.T) {
	ensureLoopbackAliases(t)
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1],
		testcluster.WithLimits(control.Limits{PendingSeatsPerMeeting: 10, PendingSeatsPerAddress: 10,
			PendingSeatsPerMeetingAddress: 3, PendingHold: time.Minute}))
	m, other := c.CreateMeeting(policy.Policy{}), c.CreateMeeting(policy.Policy{})
	body := func(id string) api.JoinRequest {
		return api.JoinRequest{Name: "x", Secret: c.Secret(id), Location: api.Hint{Country: "DE"}}
	}
	path := func(id string) string { return c.URL + api.MeetingPath(id, "join") }
	a, b := from(t, "127.0.5.1"), from(t, "127.0.5.2")
	for i := range 3 {
		if r := send(t, a, http.MethodPost, path(m.ID), "", body(m.ID)); r.status != http.StatusOK {
			t.Fatalf("join %d: %d %+v", i, r.status, r.err)
		}
	}
	r := send(t, a, http.MethodPost, path(m.ID), "", body(m.ID))
	wantRateLimited(t, "fourth waiting seat of one address in one meeting", r)
	if r.err.RetryAfter != 60 {
		t.Fatalf("Retry-After %d; want the hold, 60 s", r.err.RetryAfter)
	}
	if r := send(t, a, http.MethodPost, path(other.ID), "", body(other.ID)); r.status != http.StatusOK {
		t.Fatalf("the same address, another meeting: %d %+v", r.status, r.err)
	}
	if r := send(t, b, http.MethodPost, path(m.ID), "", body(m.ID)); r.status != http.StatusOK {
		t.Fatalf("another address, the same meeting: %d %+v", r.status, r.err)
	}
	if r := send(t, a, http.MethodPost, path(m.ID), c.Host(m.ID).Token, body(m.ID)); r.status != http.StatusOK {
		t.Fatalf("the host's own join: %d %+v", r.status, r.err)
	}
	if d := control.DefaultLimits().PendingSeatsPerMeetingAddress; d < 3 || d > 5 {
		t.Fatalf("default per meeting and address %d; want 3 to 5", d)
	}
}
