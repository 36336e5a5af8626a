package control

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/oakmeet/oakmeet/api"
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
	url    string
	nc     *nats.Conn // the fake nodes' connection
	timing cluster.Timing

	mu    sync.Mutex
	nodes map[string]*fakeNodeState
	cmds  []sentCommand
}

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
	emb, err := bus.Embed(bus.EmbedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	ctl, err := emb.Connect("control")
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
	srv, err := New(ctx, Config{Store: st, NATS: ctl, Locator: loc, Key: key, TrustClientLocation: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Timing: rigTiming})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	r := &rig{t: t, srv: srv, url: hs.URL, timing: rigTiming, nodes: map[string]*fakeNodeState{}}
	if r.nc, err = emb.Connect("nodes"); err != nil {
		t.Fatal(err)
	}
	for _, spec := range nodes {
		r.addNode(spec)
	}
	if _, err := r.nc.Subscribe(cluster.SubjectCommand("*"), r.gotCommand); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	wg.Go(func() { r.sendHeartbeats(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait(); hs.Close(); r.nc.Close() })
	r.waitFor("every node healthy", func() bool {
		var h api.Health
		return r.get("/healthz", &h) == 200 && h.HealthyNodes == len(nodes)
	})
	return r
}

// addNode adds a node given as "id:CC".
func (r *rig) addNode(spec string) {
	id, country, _ := strings.Cut(spec, ":")
	where, _ := geo.CountryLocation(country)
	pub, _, _ := ed25519.GenerateKey(nil) // relay tokens vouch for it
	r.nodes[id] = &fakeNodeState{info: cluster.NodeInfo{ID: id, Country: country, Lat: where.Lat, Lon: where.Lon, URL: "ws://" + id, IdentityKey: pub}}
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
			_ = r.nc.Publish(cluster.SubjectHeartbeat, data)
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
	r.cmds = append(r.cmds, sentCommand{node: strings.TrimPrefix(m.Subject, cluster.SubjectCommand("")), cmd: c})
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

func (r *rig) do(method, path, auth string, body, out any) int {
	r.t.Helper()
	data, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, r.url+path, bytes.NewReader(data))
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			r.t.Fatalf("%s %s: %d: %v", method, path, resp.StatusCode, err)
		}
	}
	return resp.StatusCode
}

func (r *rig) get(path string, out any) int { return r.do("GET", path, "", nil, out) }

func (r *rig) createMeeting(p policy.Policy) api.CreatedMeeting {
	r.t.Helper()
	var m api.CreatedMeeting
	if code := r.do("POST", "/api/meetings", "", api.CreateRequest{Policy: p}, &m); code != http.StatusCreated {
		r.t.Fatalf("create meeting: %d", code)
	}
	return m
}

func (r *rig) setPolicy(m api.CreatedMeeting, p policy.Policy) {
	r.t.Helper()
	if code := r.do("PUT", "/api/meetings/"+m.ID+"/policy", m.HostToken, p, nil); code != http.StatusOK {
		r.t.Fatalf("put policy: %d", code)
	}
}

// join places a participant from country and has it connect to its node.
func (r *rig) join(meetingID, country, replaces string) api.JoinResponse {
	r.t.Helper()
	var jr api.JoinResponse
	if code := r.do("POST", "/api/meetings/"+meetingID+"/join", "", api.JoinRequest{Location: api.Hint{Country: country}, Replaces: replaces}, &jr); code != http.StatusOK {
		r.t.Fatalf("join from %s: %d", country, code)
	}
	r.event(cluster.Event{Kind: cluster.EventConnected, Node: jr.Node.ID, Meeting: meetingID, Participant: jr.ParticipantID, Time: time.Now()})
	r.waitFor(jr.ParticipantID+" connected", func() bool {
		m, _, err := r.srv.meetings.get(context.Background(), meetingID)
		return err == nil && m.participant(jr.ParticipantID).Connected != nil
	})
	return jr
}

func (r *rig) event(ev cluster.Event) {
	data, _ := json.Marshal(ev)
	if err := r.nc.Publish(cluster.SubjectEvents, data); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) routing(meetingID string) api.Routing {
	r.t.Helper()
	var v api.Routing
	if code := r.get("/api/meetings/"+meetingID+"/routing", &v); code != 200 {
		r.t.Fatalf("routing: %d", code)
	}
	return v
}

// audit lists a chain's entries (meeting "" is every chain) as "kind
// participant reason".
func (r *rig) audit(meetingID string, kind string) []string {
	r.t.Helper()
	path := "/api/audit"
	if meetingID != "" {
		path += "?meeting=" + meetingID
	}
	var a api.AuditEntries
	if code := r.get(path, &a); code != 200 {
		r.t.Fatalf("audit: %d", code)
	}
	var out []string
	for _, e := range a.Entries {
		if e.Kind == kind {
			out = append(out, strings.TrimSpace(e.Participant+" "+e.Node+" "+e.Reason))
		}
	}
	return out
}
