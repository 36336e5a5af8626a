package system

import (
	"context"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/placement"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// Many meetings with random policies, nodes with small capacities that
// fail and come back, hosts changing policies at random: at every poll, no
// participant is on a node its meeting's policy blocks (except while being
// moved, within the deadline), every join is either placed on an allowed
// node or refused with a precise code, and the audit log verifies. The
// load's steps share its state (meetings, nodes down), so it stays one
// function.
func TestRandomizedPolicyInvariant(t *testing.T) {
	t.Parallel() // a light test: see the package documentation
	specs := []testcluster.NodeSpec{
		{ID: "de-fra", Country: "DE", Region: "eu-central-1", Max: 3},
		{ID: "fr-par", Country: "FR", Region: "eu-west-3", Max: 3},
		{ID: "gb-lon", Country: "GB", Region: "eu-west-2", Max: 3},
		{ID: "us-iad", Country: "US", Region: "us-east-1", Max: 3},
		{ID: "jp-tyo", Country: "JP", Region: "ap-northeast-1", Max: 3},
		{ID: "sg-sin", Country: "SG", Region: "ap-southeast-1", Max: 3},
		{ID: "br-gru", Country: "BR", Region: "sa-east-1", Max: 3},
		{ID: "cn-pek", Country: "CN", Region: "cn-north-1", Max: 3},
	}
	// A move deadline of ten heartbeats rather than 5 s: the watchers hold
	// the cluster to it, and the end of the test watches for one deadline.
	// Five heartbeats (production's ratio) left too little room for the
	// tick and the store on a machine loaded with other tests.
	timing := testcluster.Timing()
	timing.MoveDeadline = 10 * timing.HeartbeatInterval
	c := testcluster.Start(t, policy.Policy{}, specs, testcluster.WithTiming(timing))
	rnd := rand.New(rand.NewPCG(7, 11))
	countries := []string{"DE", "FR", "GB", "US", "JP", "SG", "BR", "CN"}
	randomPolicy := func() policy.Policy {
		var p policy.Policy
		for _, cc := range countries {
			if rnd.IntN(4) == 0 {
				p.BlockedCountries = append(p.BlockedCountries, cc)
			}
		}
		if rnd.IntN(5) == 0 {
			p.AllowedCountries = []string{countries[rnd.IntN(len(countries))], countries[rnd.IntN(len(countries))]}
		}
		return p
	}

	type mtg struct {
		id   string
		host *apiclient.Host
	}
	var meetings []mtg
	var watchers []*watcher
	for range 6 {
		m := c.CreateMeeting(randomPolicy())
		meetings = append(meetings, mtg{m.ID, c.Host(m.ID)})
		watchers = append(watchers, watch(t, c.API, m.ID, c.Timing.MoveDeadline))
	}
	ctx := context.Background()
	down := map[string]bool{}
	placed, refused := 0, 0
	// A fixed number of steps, paced to the cluster's clock: a node fails
	// or comes back about every fifth step, several times within one
	// heartbeat timeout, and many times over the test.
	for step := range 150 {
		m := meetings[rnd.IntN(len(meetings))]
		switch r := rnd.IntN(10); {
		case r < 6: // a join from a random country
			jr, ae, code := c.Join(m.id, countries[rnd.IntN(len(countries))])
			switch code {
			case 200:
				placed++
				rv, err := c.API.Routing(ctx, m.id)
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				eff, _ := policy.Combine(policy.Policy{}, rv.EffectivePolicy)
				if !eff.Allows(jr.Node.Country, jr.Node.Region) {
					t.Errorf("step %d: placed on %s, which the policy blocks", step, jr.Node.ID)
				}
			case 503:
				refused++
				if ae.Code != placement.CodeNoNodeInAllowedRegions && ae.Code != placement.CodeNoCapacity {
					t.Errorf("step %d: refusal code %q", step, ae.Code)
				}
			default:
				t.Errorf("step %d: join answered %d %+v", step, code, ae)
			}
		case r < 8: // the host changes the policy
			if _, err := m.host.SetPolicy(ctx, randomPolicy()); err != nil {
				t.Errorf("step %d: policy change: %v", step, err)
			}
		default: // a node fails or comes back
			s := specs[rnd.IntN(len(specs))]
			if down[s.ID] {
				c.StartNode(s)
				delete(down, s.ID)
			} else if len(down) < 3 {
				c.StopNode(s.ID)
				down[s.ID] = true
			}
		}
		time.Sleep(time.Duration(10+rnd.IntN(40)) * time.Millisecond) // pacing of the random load, not synchronisation
	}
	// The watchers go on looking for one move deadline (and their slack)
	// after the load, so that whatever is left on a blocked node past its
	// deadline shows; by then every meeting is back within its policy.
	// Anything left past its own deadline is a violation the watchers
	// record (and finish reports); the wait for every meeting to be clean
	// only bounds how long the test may take to see that.
	loadEnded := time.Now()
	window := c.Timing.MoveDeadline + watchSlack
	allClean := func() bool {
		for _, w := range watchers {
			if !w.cleanSince(loadEnded.Add(window)) {
				return false
			}
		}
		return true
	}
	for settle := time.Now().Add(window + 5*time.Second); time.Since(loadEnded) < window || !allClean(); {
		if time.Now().After(settle) {
			var seen []string
			for _, w := range watchers {
				seen = append(seen, w.offenders(time.Now())...)
			}
			t.Errorf("meetings not within their policy %s after the load: %q", time.Since(loadEnded).Round(time.Millisecond), seen)
			break
		}
		time.Sleep(20 * time.Millisecond) // polling the watchers' state, not synchronisation
	}
	for _, w := range watchers {
		w.finish()
	}
	if placed < 10 || refused < 1 {
		t.Errorf("the load did not exercise both outcomes: %d placed, %d refused", placed, refused)
	}
	if _, err := c.API.Audit(ctx, ""); err != nil {
		t.Fatalf("audit: %v", err)
	}
	verifyAudit(t, c.API)
	t.Logf("%d placed, %d refused, nodes down at the end: %v", placed, refused, slices.Sorted(maps.Keys(down)))
}
