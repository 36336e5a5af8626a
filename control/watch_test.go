package control

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/store"
)

// quietTiming is rigTiming with a safety sweep too slow to matter in a
// test: whatever is enforced is enforced by what triggered it.
var quietTiming = func() cluster.Timing {
	t := rigTiming
	t.SweepInterval = time.Hour
	return t
}()

// rigEnv is an embedded NATS server, its store and fake nodes' connections,
// on which control planes come and go.
type rigEnv struct {
	t      *testing.T
	emb    *bus.Embedded
	ctl    *nats.Conn
	st     *store.Store
	key    ed25519.PrivateKey
	timing cluster.Timing
	nodes  []string // "id:CC"
	conns  map[string]*nats.Conn
}

func newRigEnv(t *testing.T, timing cluster.Timing, nodes ...string) *rigEnv {
	t.Helper()
	emb, err := bus.Embed(bus.EmbedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	ctl, err := emb.ConnectControl("control")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ctl.Close)
	st, err := store.Open(context.Background(), ctl)
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(nil)
	e := &rigEnv{t: t, emb: emb, ctl: ctl, st: st, key: key, timing: timing, nodes: nodes, conns: map[string]*nats.Conn{}}
	for _, spec := range nodes {
		id := (&rig{nodes: map[string]*fakeNodeState{}}).addNode(spec)
		nc, err := emb.ConnectNode(id)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		e.conns[id] = nc
	}
	return e
}

// start runs a control plane on the environment, with the fake nodes
// sending heartbeats, until stop is called (or the test ends). Rigs
// started one after the other share the meetings' secrets through carry.
func (e *rigEnv) start(carry *rig) (r *rig, stop func()) {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	loc, err := locate.New(locate.Config{TrustClientHints: true, DisableBuiltin: true})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(ctx, Config{Store: e.st, NATS: e.ctl, Locator: loc, Key: e.key, EnrollmentKey: testEnrollmentPub(), TrustClientLocation: true, Limits: NoLimits(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Timing: e.timing, OperatorToken: rigOperator, LobbyWait: rigLobbyWait})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	r = &rig{t: t, srv: srv, url: hs.URL, api: apiclient.New(hs.URL, hs.Client()).WithBearer(rigOperator), timing: e.timing, nodes: map[string]*fakeNodeState{},
		conns: e.conns, secrets: map[string]string{}, hosts: map[string]*apiclient.Host{}}
	if carry != nil {
		carry.mu.Lock()
		r.nodes, r.secrets, r.hosts = carry.nodes, carry.secrets, carry.hosts
		carry.mu.Unlock()
	} else {
		for _, spec := range e.nodes {
			r.addNode(spec)
		}
	}
	var subs []*nats.Subscription
	for id, nc := range e.conns {
		sub, err := nc.Subscribe(cluster.SubjectCommand(id), r.gotCommand)
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	wg.Go(func() { r.sendHeartbeats(ctx) })
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			hs.Close()
			for _, s := range subs {
				_ = s.Unsubscribe()
			}
		})
	}
	t.Cleanup(stop)
	r.waitFor("every node healthy", func() bool {
		h, err := r.api.Health(ctx)
		return err == nil && h.HealthyNodes == len(e.nodes)
	})
	return r, stop
}

// plans is how many plans of the meeting the control plane made.
func (r *rig) plans(meetingID string) uint64 {
	r.t.Helper()
	var n uint64
	if err := r.srv.owner.do(context.Background(), func() { n = r.srv.owner.sched.plansOf[meetingID] }); err != nil {
		r.t.Fatal(err)
	}
	return n
}

// heartbeatsPass waits until the node has been heard from n more times
// (as the API shows its last heartbeat), so that time has passed for the
// control plane as well as for the test.
func (r *rig) heartbeatsPass(node string, n int) {
	r.t.Helper()
	seen := func() time.Time {
		for _, nd := range r.nodeList() {
			if nd.ID == node && nd.LastSeen != nil {
				return *nd.LastSeen
			}
		}
		return time.Time{}
	}
	from := seen()
	r.waitFor("heartbeats", func() bool { return seen().Sub(from) >= time.Duration(n)*r.timing.HeartbeatInterval })
}

// A policy stored by someone else (another control plane, an operator's
// tool with the control plane's key) is seen by the watch and enforced,
// with no sweep to find it.
func TestPolicyWrittenElsewhereIsEnforced(t *testing.T) {
	e := newRigEnv(t, quietTiming, "de-fra:DE", "us-iad:US")
	r, _ := e.start(nil)
	m := r.createMeeting(policy.Policy{})
	pid := r.join(m.ID, "US", "").ParticipantID

	ctx := context.Background()
	rec, err := e.st.Meeting(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	var stored meeting
	if err := json.Unmarshal(rec.Value, &stored); err != nil {
		t.Fatal(err)
	}
	stored.Policy = policy.Policy{BlockedCountries: []string{"US"}}
	data, _ := json.Marshal(stored)
	if _, err := e.st.UpdateMeeting(ctx, m.ID, data, rec.Revision); err != nil {
		t.Fatal(err)
	}
	r.expectCommands(forParticipant(pid), "move us-iad "+pid+" policy_change")
}

// A node going silent moves its participants off without any other
// meeting being planned again.
func TestSilentNodePlansOnlyItsMeetings(t *testing.T) {
	e := newRigEnv(t, quietTiming, "de-fra:DE", "us-iad:US")
	r, _ := e.start(nil)
	onDE := r.createMeeting(policy.Policy{})
	pid := r.join(onDE.ID, "DE", "").ParticipantID
	var others []string
	for range 5 {
		m := r.createMeeting(policy.Policy{})
		r.join(m.ID, "US", "")
		others = append(others, m.ID)
	}
	r.heartbeatsPass("us-iad", 2)
	before := map[string]uint64{}
	for _, id := range others {
		before[id] = r.plans(id)
	}
	r.setNode("de-fra", func(n *fakeNodeState) { n.silent = true })
	r.waitFor("the participant on the silent node recorded gone", func() bool {
		mt, _, err := r.srv.meetings.get(context.Background(), onDE.ID)
		p := mt.participant(pid)
		return err == nil && p.Left != nil && p.LeftReason == api.ReasonNodeDown
	})
	r.heartbeatsPass("us-iad", 2)
	for _, id := range others {
		if got := r.plans(id); got != before[id] {
			t.Errorf("meeting %s on a healthy node planned %d times more", id, got-before[id])
		}
	}
}

// A meeting at rest (connected, nothing pending, nothing changing) is not
// planned again while the nodes keep reporting.
func TestMeetingAtRestIsNotPlannedAgain(t *testing.T) {
	e := newRigEnv(t, quietTiming, "de-fra:DE")
	r, _ := e.start(nil)
	m := r.createMeeting(policy.Policy{})
	r.join(m.ID, "DE", "")
	r.join(m.ID, "DE", "")
	r.heartbeatsPass("de-fra", 2)
	n := r.plans(m.ID)
	if n == 0 {
		t.Fatal("the meeting was never planned")
	}
	r.heartbeatsPass("de-fra", 3*int(quietTiming.HeartbeatTimeout/quietTiming.HeartbeatInterval))
	if got := r.plans(m.ID); got != n {
		t.Fatalf("a meeting at rest was planned %d times more", got-n)
	}
}

// A meeting across two nodes has its relay link ordered again every
// RelayResend, with no sweep to plan it: its own deadline does.
func TestRelayIsOrderedAgainAtItsDeadline(t *testing.T) {
	e := newRigEnv(t, quietTiming, "de-fra:DE", "us-iad:US")
	r, _ := e.start(nil)
	m := r.createMeeting(policy.Policy{})
	r.join(m.ID, "DE", "")
	r.join(m.ID, "US", "")
	relays := func() []string {
		return r.commands(func(c sentCommand) bool { return c.cmd.Kind == cluster.CommandRelay && c.cmd.Meeting == m.ID })
	}
	r.waitFor("the link ordered", func() bool { return len(relays()) >= 1 })
	first := time.Now()
	r.waitFor("the link ordered twice more", func() bool { return len(relays()) >= 3 })
	// Two resends take two intervals; the test may see the first order late,
	// so only one is asked for.
	if took := time.Since(first); took < quietTiming.RelayResend {
		t.Fatalf("three orders within %s, RelayResend is %s", took, quietTiming.RelayResend)
	}
}
