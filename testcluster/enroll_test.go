package testcluster

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/policy"
)

func certified(c *Cluster, id string) (bool, string) {
	nodes, err := c.API.Nodes(context.Background())
	if err != nil {
		c.t.Fatal(err)
	}
	i := slices.IndexFunc(nodes, func(n api.Node) bool { return n.ID == id })
	if i < 0 {
		return false, "not listed"
	}
	return nodes[i].Certified, nodes[i].CertError
}

// Every node a test cluster starts is enrolled, and a revocation takes it
// out of use within seconds, also across a restart of the control plane.
func TestNodesAreEnrolledAndRevocationHolds(t *testing.T) {
	c := Start(t, policy.Policy{}, []NodeSpec{{ID: "de-fra", Country: "DE"}, {ID: "de-ber", Country: "DE"}})
	for _, id := range []string{"de-fra", "de-ber"} {
		if ok, why := certified(c, id); !ok {
			t.Fatalf("%s not certified: %s", id, why)
		}
	}
	m := c.CreateMeeting(policy.Policy{AllowedCountries: []string{"DE"}})
	jr, refused, _ := c.Join(m.ID, "DE")
	if refused != nil {
		t.Fatal(refused)
	}
	victim, other := jr.Node.ID, "de-ber"
	if victim == other {
		other = "de-fra"
	}
	start := time.Now()
	c.Revoke(victim)
	WaitFor(t, 5*time.Second, victim+" revoked", func() bool {
		ok, why := certified(c, victim)
		return !ok && strings.Contains(why, "revoked")
	})
	t.Logf("revoked in %s", time.Since(start))
	for range 4 {
		if j, refused, _ := c.Join(m.ID, "DE"); refused != nil || j.Node.ID != other {
			t.Fatalf("placed on %s (%v) after %s was revoked", j.Node.ID, refused, victim)
		}
	}
	entries, err := c.API.Audit(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(entries.Entries, func(e audit.Entry) bool {
		return e.Kind == audit.KindNodeDown && e.Node == victim && strings.Contains(e.Reason, "(revoked)")
	}) {
		t.Fatalf("no audit entry for the revocation of %s: %+v", victim, entries.Entries)
	}
	// A restarted control plane holds the list from its start: the node,
	// started again with the same certificate's validity, stays out.
	c.RestartControl()
	for _, id := range []string{victim, other} {
		c.StartNode(NodeSpec{ID: id, Country: "DE"})
	}
	WaitFor(t, 5*time.Second, "the nodes heard again", func() bool {
		ok, why := certified(c, victim)
		okOther, _ := certified(c, other)
		return !ok && strings.Contains(why, "revoked") && okOther
	})
}
