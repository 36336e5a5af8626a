package system

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// A node whose certificate is revoked mid-meeting loses its participants:
// nobody is left on it past the move deadline, real bots on it move to
// another node, as they do off a country the host blocks, and media goes
// on.
func TestRevokedNodeLosesItsParticipants(t *testing.T) {
	t.Parallel() // a light test: see the package documentation
	ctx := context.Background()
	c := testcluster.Start(t, policy.Policy{}, []testcluster.NodeSpec{
		{ID: "de-fra", Country: "DE", Region: "eu-central-1"},
		{ID: "fr-par", Country: "FR", Region: "eu-west-3"},
	})
	m := c.CreateMeeting(policy.Policy{})
	stop := startBots(t,
		bot.Config{Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: fingerprint(t, m), Name: "a", Country: "DE", LoopbackOnly: true, RejoinPause: c.Timing.HeartbeatInterval},
		bot.Config{Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: fingerprint(t, m), Name: "b", Country: "DE", LoopbackOnly: true, RejoinPause: c.Timing.HeartbeatInterval})
	onNode := func(node string) int {
		rv, err := c.API.Routing(ctx, m.ID)
		if err != nil {
			return -1
		}
		n := 0
		for _, p := range rv.Participants {
			if p.Node.ID == node {
				n++
			}
		}
		return n
	}
	testcluster.WaitFor(t, 10*time.Second, "both bots on de-fra", func() bool { return onNode("de-fra") == 2 })
	waitTraffic(t, c.API, m.ID, map[string]uint64{"de-fra": 0}, mediaWhile, 15*time.Second)

	revoked := time.Now()
	defer func() {
		if t.Failed() {
			rv, err := c.API.Routing(ctx, m.ID)
			t.Logf("routing at the end (%v): %+v", err, rv.Participants)
			a, _ := c.API.Audit(ctx, m.ID)
			for _, e := range a.Entries {
				t.Logf("audit %s %s %s %s", e.Time.Format("15:04:05.000"), e.Kind, e.Participant, e.Reason)
			}
		}
	}()
	c.Revoke("de-fra")
	// The control plane notices the revocation on a tick and orders the
	// moves (audited as migrations for node_uncertified); how soon
	// depends on the machine's load, so it has a generous bound of its
	// own.
	// Each participant's deadline runs from its own order, and the two
	// orders need not be audited at the same moment: the bound is the
	// later one's.
	var ordered time.Time
	testcluster.WaitFor(t, 10*time.Second, "the moves off the revoked node ordered", func() bool {
		a, err := c.API.Audit(ctx, m.ID)
		if err != nil {
			return false
		}
		orders := map[string]time.Time{}
		for _, e := range a.Entries {
			if e.Kind == audit.KindMigration && strings.HasPrefix(e.Reason, api.ReasonNodeUncertified) {
				orders[e.Participant] = e.Time
				if e.Time.After(ordered) {
					ordered = e.Time
				}
			}
		}
		return len(orders) == 2
	})
	t.Logf("moves ordered %s after the revocation", ordered.Sub(revoked).Round(time.Millisecond))
	// The promise: nobody left on the revoked node past the move
	// deadline from the order, whoever is slow. Where they land is the
	// bots' own recovery, which a loaded machine may slow down.
	testcluster.WaitFor(t, time.Until(ordered.Add(c.Timing.MoveDeadline+watchSlack)), "nobody left on the revoked node", func() bool {
		return onNode("de-fra") == 0
	})
	t.Logf("off the revoked node %s after the revocation", time.Since(revoked).Round(time.Millisecond))
	testcluster.WaitFor(t, 20*time.Second, "both bots on fr-par", func() bool { return onNode("fr-par") == 2 })
	waitTraffic(t, c.API, m.ID, map[string]uint64{"fr-par": nodeBytes(c.API, m.ID)["fr-par"]}, mediaWhile, 15*time.Second)
	for i, rep := range stop() {
		if rep == nil || len(rep.Moves) != 1 || rep.Moves[0].From.ID != "de-fra" || rep.Moves[0].To.ID != "fr-par" {
			t.Errorf("bot %d moves: %+v", i, rep)
		}
	}
}
