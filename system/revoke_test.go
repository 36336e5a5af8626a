package system

import (
	"context"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// A node whose certificate is revoked mid-meeting loses its participants:
// real bots on it move to another node within the move deadline, as they
// do off a country the host blocks, and media goes on.
func TestRevokedNodeLosesItsParticipants(t *testing.T) {
	t.Parallel() // a light test: see the package documentation
	ctx := context.Background()
	c := testcluster.Start(t, policy.Policy{}, []testcluster.NodeSpec{
		{ID: "de-fra", Country: "DE", Region: "eu-central-1"},
		{ID: "fr-par", Country: "FR", Region: "eu-west-3"},
	})
	m := c.CreateMeeting(policy.Policy{})
	stop := startBots(t,
		bot.Config{Server: c.URL, Meeting: m.ID, Name: "a", Country: "DE", LoopbackOnly: true, RejoinPause: c.Timing.HeartbeatInterval},
		bot.Config{Server: c.URL, Meeting: m.ID, Name: "b", Country: "DE", LoopbackOnly: true, RejoinPause: c.Timing.HeartbeatInterval})
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
	c.Revoke("de-fra")
	testcluster.WaitFor(t, c.Timing.MoveDeadline+watchSlack, "the bots off the revoked node", func() bool {
		return onNode("de-fra") == 0 && onNode("fr-par") == 2
	})
	t.Logf("off the revoked node %s after the revocation", time.Since(revoked).Round(time.Millisecond))
	waitTraffic(t, c.API, m.ID, map[string]uint64{"fr-par": nodeBytes(c.API, m.ID)["fr-par"]}, mediaWhile, 15*time.Second)
	for i, rep := range stop() {
		if rep == nil || len(rep.Moves) != 1 || rep.Moves[0].From.ID != "de-fra" || rep.Moves[0].To.ID != "fr-par" {
			t.Errorf("bot %d moves: %+v", i, rep)
		}
	}
}
