package system

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/adversary"
	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// The control plane as three replicas on a three-server NATS cluster
// (every bucket and stream with three JetStream replicas), behind a
// round-robin balancer, with real nodes: what a deployment that survives
// the loss of any one process looks like, and what each loss costs.

// takeoverLimit is the promise: another replica takes over within 5 s
// of the leader's death.
const takeoverLimit = 5 * time.Second

func startReplicated(t *testing.T, nodes []testcluster.NodeSpec) *testcluster.Cluster {
	t.Helper()
	return testcluster.Start(t, policy.Policy{}, nodes, testcluster.WithNATSCluster(3), testcluster.WithReplicas(3))
}

// counting counts the answers of one status an HTTP client is given.
type counting struct {
	base   http.RoundTripper
	status int
	n      atomic.Int64
}

func (c *counting) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(r)
	if err == nil && resp.StatusCode == c.status {
		c.n.Add(1)
	}
	return resp, err
}

// joinLoad sends joins through the balancer from several clients until
// stopped, as participants would during a failover, and counts what came
// of them.
type joinLoad struct {
	unavailable *counting // 503 unavailable answers, which the client retried
	ok, cut     atomic.Int64
	stop        context.CancelFunc
	wg          sync.WaitGroup

	mu     sync.Mutex
	failed []error
}

// startJoins runs workers clients joining the meetings in turn (hint DE)
// through c.URL. A join the balancer answers 502 was on its way to, or
// being answered by, the replica that was killed: that client joins again
// (a new participant), as a client whose join failed does, and it is
// counted as cut.
func startJoins(c *testcluster.Cluster, meetings []testcluster.Created, workers int) *joinLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &joinLoad{unavailable: &counting{base: http.DefaultTransport, status: http.StatusServiceUnavailable}, stop: cancel}
	cl := apiclient.New(c.URL, &http.Client{Transport: l.unavailable})
	for w := range workers {
		l.wg.Go(func() {
			for k := 0; ctx.Err() == nil; k++ {
				m := meetings[(w+k)%len(meetings)]
				jctx, jcancel := context.WithTimeout(ctx, 30*time.Second)
				_, err := cl.Join(jctx, m.ID, api.JoinRequest{Name: fmt.Sprintf("load-%d-%d", w, k), Location: api.Hint{Country: "DE"}, Secret: m.JoinSecret})
				jcancel()
				var ae *api.Error
				switch {
				case err == nil:
					l.ok.Add(1)
				case ctx.Err() != nil:
					return
				case errors.As(err, &ae) && ae.Status == http.StatusBadGateway:
					l.cut.Add(1)
				default:
					l.mu.Lock()
					l.failed = append(l.failed, err)
					l.mu.Unlock()
				}
			}
		})
	}
	return l
}

// finish stops the joins and fails the test if any failed for a reason
// other than the kill of the replica it was sent to; at most one join a
// client can have been cut.
func (l *joinLoad) finish(t *testing.T, workers int) {
	t.Helper()
	l.stop()
	l.wg.Wait()
	t.Logf("joins: %d answered OK, %d answers 503 unavailable turned into success by the client's retry, %d cut with the killed replica and joined again",
		l.ok.Load(), l.unavailable.n.Load(), l.cut.Load())
	for _, err := range l.failed {
		t.Errorf("join failed: %v", err)
	}
	if n := l.cut.Load(); n > int64(workers) {
		t.Errorf("%d joins cut: more than the %d clients can have had in flight at the kill", n, workers)
	}
	if l.ok.Load() == 0 {
		t.Error("no join succeeded")
	}
}

// waitOK waits until the load has at least n more successes than it had.
func (l *joinLoad) waitOK(t *testing.T, n int64, what string) {
	t.Helper()
	base := l.ok.Load()
	testcluster.WaitFor(t, 30*time.Second, what, func() bool { return l.ok.Load() >= base+n })
}

// logState is what a client holds of the log before a failure: every
// entry and a signed checkpoint.
type logState struct {
	entries    []audit.Entry
	checkpoint []byte
}

func readLog(t *testing.T, cl *apiclient.Client) logState {
	t.Helper()
	ctx := context.Background()
	cp, err := cl.Checkpoint(ctx)
	if err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	a := auditAll(t, cl, "")
	return logState{entries: a.Entries, checkpoint: cp}
}

// auditAll reads a meeting's log ("" = all of it). A read of the R3
// audit stream can meet "no responders" for a moment, answered 500, with
// nothing failing; that is not what these tests are after, so it is
// retried, and said.
func auditAll(t *testing.T, cl *apiclient.Client, meeting string) api.AuditEntries {
	t.Helper()
	var a api.AuditEntries
	var last error
	refused := 0
	testcluster.WaitFor(t, 10*time.Second, "the audit log read", func() bool {
		var err error
		if a, err = cl.Audit(context.Background(), meeting); err != nil {
			refused, last = refused+1, err
			return false
		}
		return true
	})
	if refused > 0 {
		t.Logf("reading the audit log failed %d times before it worked (last: %v)", refused, last)
	}
	return a
}

// checkLogKept reads the log through cl and fails unless it verifies, is
// consistent with the checkpoint held before and holds every entry seen
// before, unchanged and in its place.
func checkLogKept(t *testing.T, cl *apiclient.Client, before logState) {
	t.Helper()
	ctx := context.Background()
	var buf bytes.Buffer
	if err := cl.AuditExport(ctx, "", &buf); err != nil {
		t.Fatal(err)
	}
	sum, err := audit.VerifyExport(&buf, audit.VerifyOptions{Log: adversary.LogVerifier(t, cl), Checkpoints: [][]byte{before.checkpoint}})
	if err != nil {
		t.Fatalf("the log after the failure does not verify against the checkpoint held before: %v", err)
	}
	a := auditAll(t, cl, "")
	byIndex := map[int64]audit.Entry{}
	for _, e := range a.Entries {
		byIndex[e.Index] = e
	}
	for _, e := range before.entries {
		if got, ok := byIndex[e.Index]; !ok || got.Hash != e.Hash {
			t.Fatalf("entry %d (%s %s) seen before the failure is gone or changed: %+v", e.Index, e.Kind, e.Meeting, got)
		}
	}
	t.Logf("log: %d entries before, %d after; verified, consistent with the checkpoint at %d", len(before.entries), sum.Entries, sum.Checkpoint.Size)
}

// replicaClient speaks to replica i alone, retrying while it has no leader.
func replicaClient(c *testcluster.Cluster, i int) *apiclient.Client {
	return apiclient.New(c.ReplicaURL(i), c.HTTPClient()).WithBearer(c.OperatorToken())
}

// other is a replica that is not i.
func other(c *testcluster.Cluster, i int) int { return (i + 1) % c.Replicas() }

// createMeetings creates n meetings through the balancer.
func createMeetings(c *testcluster.Cluster, n int) []testcluster.Created {
	var ms []testcluster.Created
	for range n {
		ms = append(ms, c.CreateMeeting(policy.Policy{}))
	}
	return ms
}

// checkMeetingsKept reads every meeting back through cl.
func checkMeetingsKept(t *testing.T, cl *apiclient.Client, ms []testcluster.Created) {
	t.Helper()
	for _, m := range ms {
		// A 503 (no leader yet, after a second loss) is a wait, not a loss.
		var got api.Meeting
		var err error
		testcluster.WaitFor(t, 45*time.Second, "meeting "+m.ID+" read back", func() bool {
			got, err = cl.Meeting(context.Background(), m.ID)
			var ae *api.Error
			return err == nil || !errors.As(err, &ae) || ae.Code != api.CodeUnavailable
		})
		if err != nil || got.ID != m.ID {
			t.Fatalf("meeting %s created before the failure: %+v, %v", m.ID, got, err)
		}
	}
}

// takeover kills the leader and measures how long until another replica
// holds the lease (elected) and until it leads with its control plane
// ready (ready).
func takeover(tb testing.TB, c *testcluster.Cluster) (killed int, elected, ready time.Duration) {
	tb.Helper()
	killed = c.WaitLeader(30 * time.Second)
	at := time.Now()
	c.KillReplica(killed)
	testcluster.WaitFor(tb, 30*time.Second, "another replica leading", func() bool {
		if elected == 0 {
			for i := range c.Replicas() {
				if r := c.Replica(i); r != nil && r.Status().IsLeader {
					elected = time.Since(at)
				}
			}
		}
		return c.Leader() >= 0
	})
	ready = time.Since(at)
	if elected == 0 {
		elected = ready
	}
	if next := c.Leader(); next == killed {
		tb.Fatalf("replica %d, killed, leads", killed)
	}
	for i := range c.Replicas() {
		if n := c.ReplicaRestarts(i); n > 0 {
			tb.Logf("replica %d exited on its own and was started again %d times (its control plane could not start)", i, n)
		}
	}
	return killed, elected, ready
}

// The leader replica is killed (no step-down, its lease left to expire)
// while clients join through the balancer: another replica leads within
// 5 s, every meeting and the host's token survive, the log read through a
// surviving replica holds and verifies everything seen before, and every
// join is answered, the ones made while there was no leader by the
// client's retry of a clear 503.
func TestFailoverLeaderKilled(t *testing.T) {
	ctx := context.Background()
	c := startReplicated(t, testcluster.World()[:3])
	ms := createMeetings(c, 5)
	const workers = 8
	load := startJoins(c, ms, workers)
	load.waitOK(t, 20, "joins before the kill")
	before := readLog(t, c.API)

	killed, elected, ready := takeover(t, c)
	t.Logf("replica %d killed; replica %d elected %s later, its control plane ready %s later",
		killed, c.Leader(), elected.Round(time.Millisecond), ready.Round(time.Millisecond))
	if elected > takeoverLimit {
		t.Errorf("a new leader was elected %s after the kill, more than %s", elected, takeoverLimit)
	}
	load.waitOK(t, 20, "joins after the takeover")
	load.finish(t, workers)

	cl := replicaClient(c, other(c, killed))
	checkMeetingsKept(t, cl, ms)
	// The host's token, issued by the old leader, still changes the policy.
	if got, err := c.Host(ms[0].ID).SetPolicy(ctx, policy.Policy{BlockedCountries: []string{"CN"}}); err != nil || !slices.Contains(got.Policy.BlockedCountries, "CN") {
		t.Fatalf("host's policy change after the failover: %+v, %v", got.Policy, err)
	}
	checkLogKept(t, cl, before)

	// The killed replica comes back as a follower and answers again.
	c.RestartReplica(killed)
	testcluster.WaitFor(t, 10*time.Second, "the restarted replica knows the leader", func() bool {
		st := c.Replica(killed).Status()
		return st.Leader != "" && !st.IsLeader
	})
	checkMeetingsKept(t, replicaClient(c, killed), ms)
}

// routing is where a meeting's participants are, by name.
func routing(t *testing.T, cl *apiclient.Client, meeting string) map[string]api.RoutingEntry {
	t.Helper()
	rv, err := cl.Routing(context.Background(), meeting)
	if err != nil {
		return nil
	}
	out := map[string]api.RoutingEntry{}
	for _, p := range rv.Participants {
		out[p.Name] = p
	}
	return out
}

// Right after the leader is killed, the host blocks JP (through the
// balancer: the client retries while there is no leader) and the US node
// stops. The new leader enforces both: the JP bot is moved off jp-tyo
// within 5 s of the change being accepted, the move logged after the
// change; the US bot is moved off the stopped node (its going away, an
// event published while nobody led, reaches the next leader); the DE bot,
// on a node nothing changed for, stays where it was, connected across the
// failover.
func TestFailoverPolicyChangeAndSilentNodeDuringTakeover(t *testing.T) {
	ctx := context.Background()
	c := startReplicated(t, testcluster.World()[:3]) // de-fra, us-iad, jp-tyo
	m := c.CreateMeeting(policy.Policy{})
	cfg := func(name, country string) bot.Config {
		return bot.Config{Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: fingerprint(t, m), Name: name, Country: country,
			LoopbackOnly: true, RejoinPause: c.Timing.HeartbeatInterval}
	}
	stopBots := startBots(t, cfg("bot-DE", "DE"), cfg("bot-US", "US"), cfg("bot-JP", "JP"))
	placed := func(want map[string]string) func() bool {
		return func() bool {
			on := routing(t, c.API, m.ID)
			for name, node := range want {
				if p, ok := on[name]; !ok || p.Node.ID != node || p.Moving != "" {
					return false
				}
			}
			return len(on) == len(want)
		}
	}
	testcluster.WaitFor(t, 20*time.Second, "each bot on its country's node", placed(map[string]string{"bot-DE": "de-fra", "bot-US": "us-iad", "bot-JP": "jp-tyo"}))
	waitTraffic(t, c.API, m.ID, map[string]uint64{"de-fra": 0, "jp-tyo": 0, "us-iad": 0}, mediaWhile, 20*time.Second)
	de := routing(t, c.API, m.ID)["bot-DE"]

	killed := c.WaitLeader(30 * time.Second)
	killedAt := time.Now()
	c.KillReplica(killed)
	c.StopNode("us-iad")
	if _, err := c.Host(m.ID).SetPolicy(ctx, policy.Policy{BlockedCountries: []string{"JP"}}); err != nil {
		t.Fatalf("policy change during the failover: %v", err)
	}
	accepted := time.Now()
	t.Logf("policy change accepted %s after the kill", accepted.Sub(killedAt).Round(time.Millisecond))

	offBoth := func() bool {
		on := routing(t, c.API, m.ID)
		jp, us := on["bot-JP"], on["bot-US"]
		return jp.Node.ID != "" && jp.Node.ID != "jp-tyo" && jp.Moving == "" && us.Node.ID != "" && us.Node.ID != "us-iad" && us.Moving == ""
	}
	testcluster.WaitFor(t, 20*time.Second, "bot-JP off jp-tyo and bot-US off the stopped us-iad", offBoth)
	on := routing(t, c.API, m.ID)
	t.Logf("after the takeover: bot-JP on %s, bot-US on %s", on["bot-JP"].Node.ID, on["bot-US"].Node.ID)
	if got := on["bot-DE"]; got.ID != de.ID || got.Node.ID != "de-fra" || !got.Joined.Equal(de.Joined) {
		t.Errorf("bot-DE did not stay: before %+v, after %+v", de, got)
	}

	// The log: the JP bot's move comes after the policy change and within
	// 5 s of its acceptance.
	a := auditAll(t, replicaClient(c, other(c, killed)), m.ID)
	var change, moved *audit.Entry
	defer func() {
		if t.Failed() {
			for _, e := range a.Entries {
				t.Logf("audit %d %s %s %s %s %s", e.Index, e.Time.Format("15:04:05.000"), e.Kind, e.Participant, e.Node, e.Reason)
			}
		}
	}()
	for _, e := range a.Entries {
		switch {
		case e.Kind == audit.KindPolicyChange:
			change = &e
		case e.Kind == audit.KindMigration && e.Node == "jp-tyo" && change != nil && moved == nil:
			moved = &e
		}
	}
	if moved == nil {
		t.Fatal("no migration off jp-tyo logged after the policy change")
	}
	// The change is accepted when the leader logs it; the client hears of
	// it a moment later.
	if d := moved.Time.Sub(change.Time); d > 5*time.Second || moved.Time.After(accepted.Add(5*time.Second)) {
		t.Errorf("the move off jp-tyo was logged %s after the policy change", d)
	} else {
		t.Logf("move off jp-tyo logged %s after the policy change (%s)", d.Round(time.Millisecond), moved.Reason)
	}
	// The new leader knows the stopped node is gone: it placed bot-US
	// elsewhere, and says so of the node.
	nodes, err := c.API.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.ID == "us-iad" && n.Healthy {
			t.Errorf("the new leader holds the stopped us-iad healthy: %+v", n)
		}
	}

	reps := stopBots()
	for i, name := range []string{"bot-DE", "bot-US", "bot-JP"} {
		if reps[i] == nil {
			t.Fatalf("%s: no report", name)
		}
		t.Logf("%s moves: %+v", name, reps[i].Moves)
	}
	if len(reps[0].Moves) != 0 || reps[0].ParticipantID != de.ID {
		t.Errorf("bot-DE was moved or joined again across the failover: %s, %+v", reps[0].ParticipantID, reps[0].Moves)
	}
	verifyAuditOf(t, c.API, m.ID)
}

// One NATS server is killed, the one leading the meetings bucket's raft
// group: the replicas' connections move to the others, and nothing is
// lost, joins go on, the log verifies; restarted, the server catches up.
// Joins sent while the streams that server led elect new leaders are
// answered 503 unavailable and retried by the client.
func TestFailoverNATSServerKilled(t *testing.T) {
	c := startReplicated(t, testcluster.World()[:2])
	ms := createMeetings(c, 5)
	const workers = 8
	load := startJoins(c, ms, workers)
	load.waitOK(t, 20, "joins before the kill")
	before := readLog(t, c.API)

	victim := c.NATSStreamLeader("KV_" + cluster.BucketMeetings)
	t.Logf("killing NATS server %s, which leads the meetings bucket", c.NATSServerName(victim))
	killed := time.Now()
	c.KillNATSServer(victim)
	defer func() {
		if t.Failed() {
			for _, name := range []string{"KV_" + cluster.BucketMeetings, cluster.StreamAudit, "KV_" + cluster.BucketControl, "KV_" + cluster.BucketNodes, "KV_" + cluster.BucketLeader, cluster.StreamEvents} {
				t.Logf("stream %s: led by server %d now (-1: none)", name, c.NATSStreamLeaderNow(name))
			}
			t.Logf("leader replica: %d", c.Leader())
		}
	}()
	load.waitOK(t, 20, "joins after the NATS server's kill")
	t.Logf("20 joins succeeded %s after the kill", time.Since(killed).Round(time.Millisecond))
	load.finish(t, workers)

	checkMeetingsKept(t, c.API, ms)
	checkLogKept(t, c.API, before)

	c.RestartNATSServer(victim)
	testcluster.WaitFor(t, 30*time.Second, "the restarted NATS server caught up", func() bool { return c.NATSCurrent(victim) })
	// Caught up, it makes the quorum with one other: with a second server
	// gone, what it holds is what the control plane reads and writes.
	held := readLog(t, c.API)
	m := c.CreateMeeting(policy.Policy{})
	second := (victim + 1) % c.NATSServers()
	c.KillNATSServer(second)
	t.Logf("killed NATS server %s after the first came back", c.NATSServerName(second))
	// The second loss may cost JetStream an election of the streams that
	// server led (4 to 9 s), and the replicas one of the lease: joins
	// are refused meanwhile with 503s, then succeed.
	var lastErr string
	testcluster.WaitFor(t, 45*time.Second, "a join with the restarted server in the quorum", func() bool {
		_, ae, status := c.Join(m.ID, "DE")
		if ae != nil {
			lastErr = fmt.Sprintf("%d %v", status, ae)
			return false
		}
		return true
	})
	t.Logf("joined with the restarted server in the quorum (last refusal before: %s)", lastErr)
	checkMeetingsKept(t, c.API, append(ms, m))
	checkLogKept(t, c.API, held)
}

// median of ds.
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// joinsClient is an API client for the benchmarks that keeps a
// connection per worker.
func joinsClient(url string, workers int) *apiclient.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = workers
	return apiclient.New(url, &http.Client{Transport: tr})
}

// closedLoopJoins makes n joins from workers clients, each sending its
// next as soon as the last is answered, spread over the meetings, and
// returns the wall time.
func closedLoopJoins(b *testing.B, cl *apiclient.Client, ms []testcluster.Created, n, workers int) time.Duration {
	b.Helper()
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				k := next.Add(1) - 1
				if k >= int64(n) {
					return
				}
				m := ms[k%int64(len(ms))]
				if _, err := cl.Join(context.Background(), m.ID, api.JoinRequest{Name: "bench", Location: api.Hint{Country: "DE"}, Secret: m.JoinSecret}); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d joins failed", f, n)
	}
	return wall
}

// Joins a second through the control plane in three shapes: three
// replicas on three NATS servers (R3) through the balancer, the same
// straight to the leader, and one replica on one NATS server. Followers
// forward every request to the leader, so replicas add availability, not
// throughput.
//
//	go test -run '^$' -bench BenchmarkFailoverJoins -benchtime 2000x ./system/
func BenchmarkFailoverJoins(b *testing.B) {
	const workers = 8
	run := func(b *testing.B, c *testcluster.Cluster, url string) {
		ms := createMeetings(c, 20)
		cl := joinsClient(url, workers)
		b.ResetTimer()
		wall := closedLoopJoins(b, cl, ms, b.N, workers)
		b.ReportMetric(float64(b.N)/wall.Seconds(), "joins/s")
		b.ReportMetric(float64(wall.Microseconds())/float64(b.N)/1000*workers, "ms/join")
	}
	b.Run("replicas=3/nats=3/balancer", func(b *testing.B) {
		c := testcluster.Start(b, policy.Policy{}, testcluster.World()[:1], testcluster.WithNATSCluster(3), testcluster.WithReplicas(3))
		run(b, c, c.URL)
	})
	b.Run("replicas=3/nats=3/leader", func(b *testing.B) {
		c := testcluster.Start(b, policy.Policy{}, testcluster.World()[:1], testcluster.WithNATSCluster(3), testcluster.WithReplicas(3))
		run(b, c, c.ReplicaURL(c.WaitLeader(30*time.Second)))
	})
	b.Run("replicas=1/nats=1", func(b *testing.B) {
		c := testcluster.Start(b, policy.Policy{}, testcluster.World()[:1], testcluster.WithReplicas(1))
		run(b, c, c.URL)
	})
}

// The time from killing the leader replica to another holding the lease
// and to its control plane being ready, five kills (each killed replica
// restarted before the next).
//
//	go test -run '^$' -bench BenchmarkFailoverTakeover -benchtime 1x ./system/
func BenchmarkFailoverTakeover(b *testing.B) {
	c := testcluster.Start(b, policy.Policy{}, testcluster.World()[:2], testcluster.WithNATSCluster(3), testcluster.WithReplicas(3))
	createMeetings(c, 20)
	var elected, ready []time.Duration
	for range b.N {
		for range 5 {
			killed, e, r := takeover(b, c)
			elected, ready = append(elected, e), append(ready, r)
			b.Logf("replica %d killed: elected after %s, ready after %s", killed, e.Round(time.Millisecond), r.Round(time.Millisecond))
			c.RestartReplica(killed)
			testcluster.WaitFor(b, 30*time.Second, "the restarted replica following", func() bool {
				st := c.Replica(killed).Status()
				return st.Leader != "" && !st.IsLeader
			})
		}
	}
	b.ReportMetric(float64(median(elected).Milliseconds()), "elected-median-ms")
	b.ReportMetric(float64(median(ready).Milliseconds()), "ready-median-ms")
	b.ReportMetric(float64(slices.Max(ready).Milliseconds()), "ready-max-ms")
}
