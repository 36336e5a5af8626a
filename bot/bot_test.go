package bot_test

import (
	"context"
	"errors"
	"github.com/oakmeet/oakmeet/api"
	"sync"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// Three bots in one meeting, in three countries on one node each side of
// the world, all receive each other's audio and video.
func TestThreeBotsExchangeMedia(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	m := c.CreateMeeting(policy.Policy{})

	var ready sync.WaitGroup
	ready.Add(3)
	reports := make([]*bot.Report, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i, country := range []string{"DE", "FR", "PL"} {
		wg.Go(func() {
			reports[i], errs[i] = bot.Run(context.Background(), bot.Config{
				Server: c.URL, Meeting: m.ID, Name: "bot-" + country, Country: country,
				Duration: 6 * time.Second, LoopbackOnly: true,
				Ready: func(string) { ready.Done() },
			})
		})
	}
	ready.Wait()
	allIn := time.Now()
	var rv api.Routing
	c.Get("/api/meetings/"+m.ID+"/routing", &rv)
	if len(rv.Participants) != 3 {
		t.Errorf("routing shows %d participants while three bots run", len(rv.Participants))
	}
	wg.Wait()

	for i, r := range reports {
		if errs[i] != nil {
			t.Fatalf("bot %d: %v", i, errs[i])
		}
		got := map[string]bot.TrackReport{}
		for _, tr := range r.Tracks {
			got[tr.ParticipantID+"/"+tr.Kind] = tr
		}
		for j, other := range reports {
			if j == i {
				continue
			}
			for _, kind := range []string{"audio", "video"} {
				tr, ok := got[other.ParticipantID+"/"+kind]
				if !ok {
					t.Fatalf("bot %d got no %s from bot %d: %+v", i, kind, j, r.Tracks)
				}
				if tr.Frames < 30 || tr.Packets < tr.Frames {
					t.Errorf("bot %d: %s from bot %d: %d frames, %d packets", i, kind, j, tr.Frames, tr.Packets)
				}
				if float64(tr.Lost) > 0.01*float64(tr.Packets) {
					t.Errorf("bot %d: %s from bot %d: lost %d of %d", i, kind, j, tr.Lost, tr.Packets)
				}
				if tr.LatencyMs.P50 <= 0 || tr.LatencyMs.P95 < tr.LatencyMs.P50 || tr.LatencyMs.P95 > 5000 { // measured, not judged: a loaded machine is slow
					t.Errorf("bot %d: %s from bot %d: latency %+v", i, kind, j, tr.LatencyMs)
				}
			}
		}
		// Compare the codes while all three were in (at the end, the first
		// to leave makes the others re-key before they leave too).
		mine, first := stateAt(r.KeyChanges, allIn.Add(3*time.Second)), stateAt(reports[0].KeyChanges, allIn.Add(3*time.Second))
		if mine.SecurityCode == "" || mine.SecurityCode != first.SecurityCode || mine.Epoch == 0 {
			t.Errorf("bot %d: security code %+v; bot 0 had %+v", i, mine, first)
		}
		for _, tr := range r.Tracks {
			if tr.DecryptFailures != 0 {
				t.Errorf("bot %d: %d decrypt failures on %s from %s", i, tr.DecryptFailures, tr.Kind, tr.ParticipantID)
			}
		}
		if len(r.Tracks) != 4 {
			t.Errorf("bot %d received %d tracks, want 4: %+v", i, len(r.Tracks), r.Tracks)
		}
		if r.Sent.VideoFrames < 100 || r.Sent.AudioFrames < 200 {
			t.Errorf("bot %d sent %+v", i, r.Sent)
		}
	}
	// After they leave, the routing view empties.
	testcluster.WaitFor(t, 5*time.Second, "participants gone", func() bool {
		var rv api.Routing
		c.Get("/api/meetings/"+m.ID+"/routing", &rv)
		return len(rv.Participants) == 0
	})
}

func TestRefusedJoinIsTyped(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	m := c.CreateMeeting(policy.Policy{BlockedCountries: []string{"DE"}})
	_, err := bot.Run(context.Background(), bot.Config{Server: c.URL, Meeting: m.ID, Duration: time.Second, LoopbackOnly: true})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 503 || ae.Code != "no_node_in_allowed_regions" {
		t.Fatalf("got %v", err)
	}
}

// When a participant leaves, the others re-key to a new epoch and a new
// code that they share, and that differs from the code with it present.
func TestLeaveRekeysToNewEqualCode(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	m := c.CreateMeeting(policy.Policy{})
	var wg sync.WaitGroup
	reports := make([]*bot.Report, 3)
	errs := make([]error, 3)
	var leftAt time.Time
	for i, d := range []time.Duration{9 * time.Second, 9 * time.Second, 3 * time.Second} {
		in := make(chan struct{})
		wg.Go(func() {
			reports[i], errs[i] = bot.Run(context.Background(), bot.Config{
				Server: c.URL, Meeting: m.ID, Country: "DE", Duration: d, LoopbackOnly: true,
				Ready: func(string) { close(in) },
			})
			if i == 2 {
				leftAt = time.Now()
			}
		})
		<-in // join one after another, so the order (and the leader) is fixed
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("bot %d: %v", i, err)
		}
	}
	a, b, leaver := reports[0], reports[1], reports[2]
	// The state two seconds after the leave, while both others remain.
	at := leftAt.Add(2 * time.Second)
	sa, sb := stateAt(a.KeyChanges, at), stateAt(b.KeyChanges, at)
	if sa.SecurityCode == "" || sa.SecurityCode != sb.SecurityCode || sa.Epoch != sb.Epoch {
		t.Fatalf("remaining bots disagree after the leave: %+v vs %+v", sa, sb)
	}
	if sa.SecurityCode == leaver.SecurityCode || sa.Epoch <= leaver.Epoch {
		t.Fatalf("no re-key after leave: %+v, leaver had %q epoch %d", sa, leaver.SecurityCode, leaver.Epoch)
	}
	if leaver.SecurityCode != stateAt(a.KeyChanges, leftAt.Add(-500*time.Millisecond)).SecurityCode {
		t.Fatalf("leaver's code %q was not the three-member code", leaver.SecurityCode)
	}
}

func stateAt(h []bot.KeyChange, at time.Time) bot.KeyChange {
	var s bot.KeyChange
	for _, c := range h {
		if c.At.After(at) {
			break
		}
		s = c
	}
	return s
}
