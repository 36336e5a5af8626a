package control

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/geo"
	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/store"
)

// rig is a control plane on an embedded NATS server with fake nodes: the
// test sends their heartbeats and events and sees the commands they get.
type rig struct {
	t      *testing.T
	srv    *Server
	api    *apiclient.Client
	url    string                // the control plane's HTTP address
	conns  map[string]*nats.Conn // each fake node's own, set before the rig runs
	timing cluster.Timing

	mu      sync.Mutex
	nodes   map[string]*fakeNodeState
	cmds    []sentCommand
	secrets map[string]string // join secret by meeting
	hosts   map[string]*apiclient.Host
}

// rigOperator is the rig's operator token.
const rigOperator = "rig-operator-token"

type fakeNodeState struct {
	info     cluster.NodeInfo
	draining bool
	silent   bool
	relays   []cluster.RelayLink
}

type sentCommand struct {
	node string
	cmd  cluster.Command
}

// rigTiming makes a node loss or a move play out in a few hundred
// milliseconds.
var rigTiming = cluster.DefaultTiming().Scaled(20)

func startRig(t *testing.T, nodes ...string) *rig {
	t.Helper()
	return startRigWith(t, nil, nodes...)
}

// startRigWith is startRig with forge changing what a node registers as
// from its very first heartbeat (an attacker's node).
func startRigWith(t *testing.T, forge func(*fakeNodeState), nodes ...string) *rig {
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
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, ctl)
	if err != nil {
		t.Fatal(err)
	}
	loc, err := locate.New(locate.Config{TrustClientHints: true, DisableBuiltin: true})
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(nil)
	srv, err := New(ctx, Config{Store: st, NATS: ctl, Locator: loc, Key: key, EnrollmentKey: testEnrollmentPub(), TrustClientLocation: true, Limits: NoLimits(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Timing: rigTiming, OperatorToken: rigOperator, LobbyWait: rigLobbyWait})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	r := &rig{t: t, srv: srv, url: hs.URL, api: apiclient.New(hs.URL, hs.Client()).WithBearer(rigOperator), timing: rigTiming, nodes: map[string]*fakeNodeState{},
		conns: map[string]*nats.Conn{}, secrets: map[string]string{}, hosts: map[string]*apiclient.Host{}}
	for _, spec := range nodes {
		id := r.addNode(spec)
		if forge != nil {
			forge(r.nodes[id])
		}
		nc, err := emb.ConnectNode(id)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		r.conns[id] = nc
		if _, err := nc.Subscribe(cluster.SubjectCommand(id), r.gotCommand); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	wg.Go(func() { r.sendHeartbeats(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait(); hs.Close() })
	r.waitFor("every node healthy", func() bool {
		h, err := r.api.Health(ctx)
		return err == nil && h.HealthyNodes == len(nodes)
	})
	return r
}

// addNode adds a node given as "id:CC" and returns its id.
func (r *rig) addNode(spec string) string {
	id, country, _ := strings.Cut(spec, ":")
	where, _ := geo.CountryLocation(country)
	pub, _, _ := ed25519.GenerateKey(nil) // relay tokens vouch for it
	r.nodes[id] = &fakeNodeState{info: enrolled(cluster.NodeInfo{ID: id, Country: country, Lat: where.Lat, Lon: where.Lon, URL: "ws://" + id, IdentityKey: pub})}
	return id
}

func (r *rig) sendHeartbeats(ctx context.Context) {
	tick := time.NewTicker(r.timing.HeartbeatInterval)
	defer tick.Stop()
	for {
		r.mu.Lock()
		var hbs []cluster.Heartbeat
		for _, n := range r.nodes {
			if !n.silent {
				hbs = append(hbs, cluster.Heartbeat{Node: n.info, Draining: n.draining, Relays: slices.Clone(n.relays), Sent: time.Now()})
			}
		}
		r.mu.Unlock()
		for _, hb := range hbs {
			data, _ := json.Marshal(hb)
			_ = r.conns[hb.Node.ID].Publish(cluster.SubjectHeartbeat(hb.Node.ID), data)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// setNode changes what a fake node reports from its next heartbeat on.
func (r *rig) setNode(id string, f func(n *fakeNodeState)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r.nodes[id])
}

func (r *rig) gotCommand(m *nats.Msg) {
	var c cluster.Command
	if err := json.Unmarshal(m.Data, &c); err != nil {
		r.t.Errorf("command on %s: %v", m.Subject, err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cmds = append(r.cmds, sentCommand{node: nodeOf(m.Subject), cmd: c})
}

// commands lists the commands sent so far that match, as "kind node
// participant reason" or "kind node>peer".
func (r *rig) commands(match func(sentCommand) bool) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.cmds {
		if !match(c) {
			continue
		}
		if c.cmd.Peer != "" {
			out = append(out, c.cmd.Kind+" "+c.node+">"+c.cmd.Peer)
		} else {
			out = append(out, c.cmd.Kind+" "+c.node+" "+c.cmd.Participant+" "+c.cmd.Reason)
		}
	}
	return out
}

// expectCommands waits until as many commands match as want lists, then
// checks that they are exactly want: one too many fails.
func (r *rig) expectCommands(match func(sentCommand) bool, want ...string) {
	r.t.Helper()
	r.waitFor(fmt.Sprintf("commands %q", want), func() bool { return len(r.commands(match)) >= len(want) })
	if got := r.commands(match); !slices.Equal(got, want) {
		r.t.Fatalf("commands %q, want %q", got, want)
	}
}

func forParticipant(pid string) func(sentCommand) bool {
	return func(c sentCommand) bool { return c.cmd.Participant == pid }
}

func ofKind(kind string) func(sentCommand) bool {
	return func(c sentCommand) bool { return c.cmd.Kind == kind }
}

// waitFor polls cond until it holds; a second is far more than any of
// these tests needs.
func (r *rig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// rigLobbyWait is how long the rig holds a lobby ask open.
const rigLobbyWait = 300 * time.Millisecond

// createMeeting creates a meeting with policy p (every meeting has a host
// key: the rig keeps its host for setPolicy) and keeps its join secret for
// join.
func (r *rig) createMeeting(p policy.Policy) api.CreatedMeeting {
	r.t.Helper()
	m, _ := r.createHosted(api.CreateRequest{Policy: p})
	return m
}

// createHosted creates a meeting with a host key and returns its host.
func (r *rig) createHosted(req api.CreateRequest) (api.CreatedMeeting, *apiclient.Host) {
	r.t.Helper()
	m, h, err := r.api.CreateHosted(context.Background(), req)
	if err != nil {
		r.t.Fatal(err)
	}
	r.keepSecret(m)
	r.mu.Lock()
	r.hosts[m.ID] = h
	r.mu.Unlock()
	return m, h
}

func (r *rig) keepSecret(m api.CreatedMeeting) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secrets[m.ID] = m.JoinSecret
}

// secret is the join secret of a meeting the rig created.
func (r *rig) secret(id string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.secrets[id]
}

// host is the host of a meeting the rig created.
func (r *rig) host(id string) *apiclient.Host {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hosts[id]
}

func (r *rig) setPolicy(m api.CreatedMeeting, p policy.Policy) {
	r.t.Helper()
	if _, err := r.host(m.ID).SetPolicy(context.Background(), p); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) nodeList() []api.Node {
	r.t.Helper()
	nodes, err := r.api.Nodes(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	return nodes
}

// join places a participant from country and has it connect to its node.
func (r *rig) join(meetingID, country, replaces string) api.JoinResponse {
	r.t.Helper()
	jr, err := r.api.Join(context.Background(), meetingID, api.JoinRequest{Location: api.Hint{Country: country}, Replaces: replaces,
		Secret: r.secret(meetingID), RejoinSecret: r.rejoinSecret(replaces)})
	if err != nil {
		r.t.Fatalf("join from %s: %v", country, err)
	}
	r.keepRejoin(jr)
	r.connect(meetingID, jr)
	return jr
}

// connect has a placed participant connect to its node.
func (r *rig) connect(meetingID string, jr api.JoinResponse) {
	r.t.Helper()
	r.event(cluster.Event{Kind: cluster.EventConnected, Node: jr.Node.ID, Meeting: meetingID, Participant: jr.ParticipantID, Time: time.Now()})
	r.waitFor(jr.ParticipantID+" connected", func() bool {
		m, _, err := r.srv.meetings.get(context.Background(), meetingID)
		return err == nil && m.participant(jr.ParticipantID).Connected != nil
	})
}

// keepRejoin remembers a participant's rejoin secret, which a join that
// replaces it needs.
func (r *rig) keepRejoin(jr api.JoinResponse) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secrets["rejoin:"+jr.ParticipantID] = jr.RejoinSecret
}

func (r *rig) rejoinSecret(pid string) string {
	if pid == "" {
		return ""
	}
	return r.secret("rejoin:" + pid)
}

func (r *rig) event(ev cluster.Event) {
	data, _ := json.Marshal(ev)
	if err := r.conns[ev.Node].Publish(cluster.SubjectEvents(ev.Node), data); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) routing(meetingID string) api.Routing {
	r.t.Helper()
	v, err := r.api.Routing(context.Background(), meetingID)
	if err != nil {
		r.t.Fatal(err)
	}
	return v
}

// audit lists a chain's entries (meeting "" is every chain) as "kind
// participant reason".
func (r *rig) audit(meetingID string, kind string) []string {
	r.t.Helper()
	a, err := r.api.Audit(context.Background(), meetingID)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for _, e := range a.Entries {
		if e.Kind == kind {
			out = append(out, strings.TrimSpace(e.Participant+" "+e.Node+" "+e.Reason))
		}
	}
	return out
}

// expectAudit checks a chain's entries of one kind, as audit lists them.
// The audit log is appended on its own goroutine, after the state it
// records changed, so the entries are waited for (with a deadline).
func (r *rig) expectAudit(meetingID, kind string, want ...string) {
	r.t.Helper()
	var got []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got = r.audit(meetingID, kind); slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s entries %q, want %q", kind, got, want)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

func nodeOf(subject string) string {
	id, _ := cluster.SubjectNode(subject)
	return id
}
