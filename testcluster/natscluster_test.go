package testcluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/store"
	"github.com/oakmeet/oakmeet/testcluster"
)

// On three clustered NATS servers with every bucket and stream replicated
// three times, the deployment outlives any one server: joins go on, and
// what was stored before is read after.
func TestNATSClusterOutlivesAServer(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:2], testcluster.WithNATSCluster(3))
	if c.NATSServers() != 3 {
		t.Fatalf("%d NATS servers", c.NATSServers())
	}
	m := c.CreateMeeting(policy.Policy{})
	if _, ae, _ := c.Join(m.ID, "DE"); ae != nil {
		t.Fatalf("join: %v", ae)
	}
	ctx := context.Background()
	st := c.Store()
	if err := st.PutControl(ctx, "probe", []byte("before")); err != nil {
		t.Fatal(err)
	}

	// The JetStream meta leader is the server whose loss costs most.
	leader := c.NATSMetaLeader()
	killed := time.Now()
	c.KillNATSServer(leader)
	recovered := waitWritable(t, st, "after-kill")
	t.Logf("KV writes succeed again %s after the JetStream meta leader was killed", recovered.Sub(killed).Round(time.Millisecond))
	if v, err := st.Control(ctx, "probe"); err != nil || string(v) != "after-kill" {
		t.Fatalf("probe %q, %v", v, err)
	}
	c.WaitHealthy(2)
	joinEventually(t, c, m.ID)
	// The meeting stored before the loss is still there, with its
	// participants.
	if _, err := st.Meeting(ctx, m.ID); err != nil {
		t.Fatal(err)
	}

	// The server comes back and catches up; then losing the one that
	// leads the meetings bucket (every join writes there) still leaves a
	// quorum, once the other two have elected a new leader for it.
	c.RestartNATSServer(leader)
	testcluster.WaitFor(t, 30*time.Second, "the restarted server caught up", func() bool { return c.NATSCurrent(leader) })
	other := c.NATSStreamLeader("KV_" + cluster.BucketMeetings)
	killed = time.Now()
	c.KillNATSServer(other)
	joinEventually(t, c, m.ID)
	t.Logf("a join is placed again %s after the meetings bucket's leader was killed", time.Since(killed).Round(time.Millisecond))
	if v, err := st.Control(ctx, "probe"); err != nil || string(v) != "after-kill" {
		t.Fatalf("probe %q, %v", v, err)
	}
	c.RestartNATSServer(other)

	// A server that handed its leaderships over first is lost without an
	// election: the next join does not wait.
	testcluster.WaitFor(t, 30*time.Second, "the restarted server caught up", func() bool { return c.NATSCurrent(other) })
	third := c.NATSStreamLeader("KV_" + cluster.BucketMeetings)
	// The restarted server may still be catching up on a stream, whose
	// state then takes a while to answer.
	testcluster.WaitFor(t, 30*time.Second, "leaderships handed over", func() bool {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return st.StepDownLeaders(sctx, c.NATSServerName(third)) == nil
	})
	testcluster.WaitFor(t, 30*time.Second, "the meetings bucket led elsewhere", func() bool {
		return c.NATSStreamLeader("KV_"+cluster.BucketMeetings) != third
	})
	killed = time.Now()
	c.KillNATSServer(third)
	t.Logf("KV writes succeed %s after a server that had stepped down as leader was killed", waitWritable(t, st, "after-third-kill").Sub(killed).Round(time.Millisecond))
	joinEventually(t, c, m.ID)
	t.Logf("a join is placed %s after a server that had stepped down as leader was killed", time.Since(killed).Round(time.Millisecond))
}

// waitWritable writes a control value until a write succeeds, and returns
// when it did.
func waitWritable(t *testing.T, st *store.Store, value string) time.Time {
	t.Helper()
	var last error
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		last = st.PutControl(ctx, "probe", []byte(value))
		cancel()
		if last == nil {
			return time.Now()
		}
	}
	t.Fatalf("no KV write succeeded in 30 s: %v", last)
	return time.Time{}
}

// joinEventually joins until a join is placed: while JetStream elects new
// stream leaders a join may be refused as unavailable, never half done.
func joinEventually(t *testing.T, c *testcluster.Cluster, id string) {
	t.Helper()
	var last *api.Error
	testcluster.WaitFor(t, 30*time.Second, "a join placed", func() bool {
		_, ae, _ := c.Join(id, "DE")
		if ae != nil && (last == nil || last.Message != ae.Message) {
			t.Logf("join refused while NATS recovers: %d %s", ae.Status, ae.Message)
		}
		last = ae
		return ae == nil
	})
}

// The whole deployment restarted on its NATS cluster keeps its meetings.
func TestNATSClusterRestartControl(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1], testcluster.WithNATSCluster(3))
	m := c.CreateMeeting(policy.Policy{})
	c.RestartControl()
	c.StartNode(testcluster.World()[0])
	c.WaitHealthy(1)
	if _, ae, _ := c.Join(m.ID, "DE"); ae != nil {
		t.Fatalf("join after the restart: %v", ae)
	}
}
