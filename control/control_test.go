package control_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/control"
	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/node"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/store"
	"github.com/oakmeet/oakmeet/token"
)

type nodeSpec struct {
	id, country, region string
	max                 int
}

var worldNodes = []nodeSpec{
	{"de-fra", "DE", "eu-central-1", 0},
	{"us-iad", "US", "us-east-1", 0},
	{"jp-tyo", "JP", "ap-northeast-1", 0},
	{"sg-sin", "SG", "ap-southeast-1", 0},
	{"br-gru", "BR", "sa-east-1", 0},
	{"in-bom", "IN", "ap-south-1", 0},
	{"cn-pek", "CN", "cn-north-1", 0},
	{"ru-mow", "RU", "ru-central1", 0},
}

// cluster is a control plane with real in-process nodes over an embedded
// NATS server.
type cluster struct {
	t     *testing.T
	dir   string
	key   ed25519.PrivateKey
	floor policy.Policy
	emb   *bus.Embedded
	srv   *control.Server
	http  *httptest.Server
	stop  context.CancelFunc
	wg    sync.WaitGroup
	nodes map[string]context.CancelFunc
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startCluster(t *testing.T, floor policy.Policy, nodes []nodeSpec) *cluster {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(nil)
	c := &cluster{t: t, dir: t.TempDir(), key: key, floor: floor, nodes: map[string]context.CancelFunc{}}
	c.startControl()
	for _, n := range nodes {
		c.startNode(n)
	}
	c.waitHealthy(len(nodes))
	t.Cleanup(c.shutdown)
	return c
}

func (c *cluster) startControl() {
	t := c.t
	emb, err := bus.Embed(bus.EmbedConfig{StoreDir: c.dir})
	if err != nil {
		t.Fatal(err)
	}
	c.emb = emb
	nc, err := emb.Connect("control")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	loc, err := locate.New(locate.Config{TrustClientHints: true, DisableBuiltin: true})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := control.New(ctx, control.Config{Store: st, NATS: nc, Locator: loc, Floor: c.floor, Key: c.key, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	c.srv = srv
	c.http = httptest.NewServer(srv.Handler())
	runCtx, cancel := context.WithCancel(ctx)
	c.stop = func() { cancel(); nc.Close() }
	c.wg.Go(func() {
		if err := srv.Run(runCtx); err != nil {
			t.Errorf("control run: %v", err)
		}
	})
	waitFor(t, 10*time.Second, "control ready", func() bool {
		resp, err := http.Get(c.http.URL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

func (c *cluster) startNode(s nodeSpec) {
	t := c.t
	nc, err := c.emb.Connect("node-" + s.id)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.New(context.Background(), node.Config{
		ID: s.id, Country: s.country, Region: s.region, MaxParticipants: s.max, NATS: nc, Logger: quietLogger(),
		LoopbackOnly: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	c.nodes[s.id] = func() { cancel(); <-done; nc.Close() }
	go func() {
		defer close(done)
		if err := n.Run(ctx); err != nil {
			t.Errorf("node %s: %v", s.id, err)
		}
	}()
}

func (c *cluster) stopNode(id string) {
	if stop, ok := c.nodes[id]; ok {
		stop()
		delete(c.nodes, id)
	}
}

// restartControl stops the control plane and its NATS server and starts
// them again on the same data directory.
func (c *cluster) restartControl() {
	for id := range c.nodes {
		c.stopNode(id)
	}
	c.http.Close()
	c.stop()
	c.wg.Wait()
	c.emb.Shutdown()
	c.startControl()
}

func (c *cluster) shutdown() {
	for id := range c.nodes {
		c.stopNode(id)
	}
	c.http.Close()
	c.stop()
	c.wg.Wait()
	c.emb.Shutdown()
}

func (c *cluster) waitHealthy(n int) {
	waitFor(c.t, 10*time.Second, fmt.Sprintf("%d healthy nodes", n), func() bool {
		var nodes []control.NodeView
		c.get("/api/nodes", &nodes)
		healthy := 0
		for _, v := range nodes {
			if v.Healthy {
				healthy++
			}
		}
		return healthy == n
	})
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func (c *cluster) do(method, path, auth string, body any, out any) int {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, _ := json.Marshal(b)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, c.http.URL+path, rd)
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			c.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

func (c *cluster) get(path string, out any) int { return c.do("GET", path, "", nil, out) }

type created struct {
	ID              string        `json:"id"`
	HostToken       string        `json:"host_token"`
	Policy          policy.Policy `json:"policy"`
	EffectivePolicy policy.Policy `json:"effective_policy"`
	Warnings        []string      `json:"warnings"`
}

func (c *cluster) create(p policy.Policy) created {
	c.t.Helper()
	var m created
	if code := c.do("POST", "/api/meetings", "", map[string]any{"title": "t", "policy": p}, &m); code != 201 {
		c.t.Fatalf("create: %d", code)
	}
	return m
}

func (c *cluster) join(id, country string) (control.JoinResponse, apiError, int) {
	c.t.Helper()
	var raw json.RawMessage
	code := c.do("POST", "/api/meetings/"+id+"/join", "", map[string]any{"name": "n-" + country, "location": map[string]string{"country": country}}, &raw)
	var jr control.JoinResponse
	var ae apiError
	if code == 200 {
		json.Unmarshal(raw, &jr)
	} else {
		json.Unmarshal(raw, &ae)
	}
	return jr, ae, code
}

func TestJoinsAvoidBlockedCountry(t *testing.T) {
	c := startCluster(t, policy.Policy{}, worldNodes)
	m := c.create(policy.Policy{BlockedCountries: []string{"cn"}})
	if len(m.Warnings) != 0 {
		t.Fatalf("warnings: %v", m.Warnings)
	}
	want := map[string]string{"JP": "JP", "DE": "DE", "US": "US", "BR": "BR"}
	for _, from := range []string{"CN", "JP", "KR", "DE", "US", "BR"} {
		jr, ae, code := c.join(m.ID, from)
		if code != 200 {
			t.Fatalf("join from %s: %d %+v", from, code, ae)
		}
		if jr.Node.Country == "CN" {
			t.Fatalf("join from %s placed in CN", from)
		}
		if w, ok := want[from]; ok && jr.Node.Country != w {
			t.Errorf("join from %s placed in %s, want the local node in %s", from, jr.Node.Country, w)
		}
		claims, err := token.VerifyJoin(c.srv.PublicKey(), jr.Token, time.Now())
		if err != nil || claims.Node != jr.Node.ID || claims.Meeting != m.ID || claims.Participant != jr.ParticipantID {
			t.Fatalf("token %+v: %v", claims, err)
		}
		if !strings.HasPrefix(jr.Node.URL, "ws://") {
			t.Fatalf("node url %q", jr.Node.URL)
		}
	}
	var rv control.RoutingView
	c.get("/api/meetings/"+m.ID+"/routing", &rv)
	if len(rv.Participants) != 6 {
		t.Fatalf("routing has %d participants", len(rv.Participants))
	}
	for _, p := range rv.Participants {
		if p.Node.Country == "CN" {
			t.Fatalf("routing shows %s in CN", p.ID)
		}
	}
}

func TestBlockingEveryNodeRefusesJoin(t *testing.T) {
	c := startCluster(t, policy.Policy{}, worldNodes)
	m := c.create(policy.Policy{})
	all := []string{"DE", "US", "JP", "SG", "BR", "IN", "CN", "RU"}
	var out created
	if code := c.do("PUT", "/api/meetings/"+m.ID+"/policy", m.HostToken, policy.Policy{BlockedCountries: all}, &out); code != 200 {
		t.Fatalf("put policy: %d", code)
	}
	if len(out.Warnings) == 0 {
		t.Fatal("no warning for a policy that leaves no node")
	}
	_, ae, code := c.join(m.ID, "DE")
	if code != 503 || ae.Code != "no_node_in_allowed_regions" {
		t.Fatalf("join: %d %+v", code, ae)
	}
	var a struct{ Entries []audit.Entry }
	c.get("/api/audit?meeting="+m.ID, &a)
	last := a.Entries[len(a.Entries)-1]
	if last.Kind != audit.KindRefusal || !strings.Contains(last.Reason, "no_node_in_allowed_regions") {
		t.Fatalf("last audit entry %+v", last)
	}
}

func TestOnlyHostChangesPolicy(t *testing.T) {
	c := startCluster(t, policy.Policy{}, worldNodes[:2])
	m := c.create(policy.Policy{})
	var ae apiError
	if code := c.do("PUT", "/api/meetings/"+m.ID+"/policy", "", policy.Policy{BlockedCountries: []string{"DE"}}, &ae); code != 401 || ae.Code != "unauthorized" {
		t.Fatalf("no token: %d %+v", code, ae)
	}
	if code := c.do("PUT", "/api/meetings/"+m.ID+"/policy", "wrong", policy.Policy{BlockedCountries: []string{"DE"}}, &ae); code != 403 || ae.Code != "forbidden" {
		t.Fatalf("wrong token: %d %+v", code, ae)
	}
	var got created
	c.get("/api/meetings/"+m.ID, &got)
	if len(got.Policy.BlockedCountries) != 0 {
		t.Fatalf("policy changed by non-host: %+v", got.Policy)
	}
	if got.HostToken != "" {
		t.Fatal("GET shows the host token")
	}
	var raw map[string]any
	c.get("/api/meetings/"+m.ID, &raw)
	for k := range raw {
		if strings.Contains(k, "token") || strings.Contains(k, "hash") && k != "policy_hash" {
			t.Fatalf("GET shows secret field %q", k)
		}
	}
}

func TestBadInputAnsweredPrecisely(t *testing.T) {
	c := startCluster(t, policy.Policy{}, worldNodes[:1])
	m := c.create(policy.Policy{})
	cases := []struct {
		method, path, body string
		status             int
		code, mention      string
	}{
		{"POST", "/api/meetings", `{"policy":{"blocked_countries":["XX"]}}`, 400, "unknown_country", "XX"},
		{"POST", "/api/meetings", `{"policy":{"blocked_regions":["mars-1"]}}`, 400, "unknown_region", "mars-1"},
		{"POST", "/api/meetings", `{"title":`, 400, "bad_json", ""},
		{"POST", "/api/meetings", `{"policy":{"blocked_country":["CN"]}}`, 400, "bad_json", "blocked_country"},
		{"POST", "/api/meetings", `{} {}`, 400, "bad_json", ""},
		{"GET", "/api/meetings/nosuchmeeting", ``, 404, "not_found", "nosuchmeeting"},
		{"GET", "/api/meetings/..%2Fetc", ``, 404, "not_found", ""},
		{"POST", "/api/meetings/" + m.ID + "/join", `{"location":{"country":"QQ"}}`, 400, "unknown_country", "QQ"},
		{"POST", "/api/meetings/" + m.ID + "/join", `{"name":"` + strings.Repeat("x", 65) + `"}`, 400, "bad_request", "64"},
		{"POST", "/api/meetings/" + m.ID + "/join", `[1,2]`, 400, "bad_json", ""},
		{"GET", "/api/nope", ``, 404, "not_found", ""},
		{"GET", "/api/audit?meeting=nosuchmeeting", ``, 404, "not_found", ""},
	}
	for _, tc := range cases {
		var ae apiError
		code := c.do(tc.method, tc.path, "", tc.body, &ae)
		if code != tc.status || ae.Code != tc.code || !strings.Contains(ae.Error, tc.mention) {
			t.Errorf("%s %s %s: got %d %+v, want %d %s mentioning %q", tc.method, tc.path, tc.body, code, ae, tc.status, tc.code, tc.mention)
		}
	}
	// The meeting is unaffected: a good join still works.
	if _, ae, code := c.join(m.ID, "DE"); code != 200 {
		t.Fatalf("join after bad input: %d %+v", code, ae)
	}
}

func TestCapacitySpillsThenRefuses(t *testing.T) {
	c := startCluster(t, policy.Policy{}, []nodeSpec{
		{"de-fra", "DE", "eu-central-1", 1},
		{"fr-par", "FR", "eu-west-3", 1},
		{"cn-pek", "CN", "cn-north-1", 5},
	})
	m := c.create(policy.Policy{BlockedCountries: []string{"CN"}})
	seen := map[string]bool{}
	for range 2 {
		jr, ae, code := c.join(m.ID, "DE")
		if code != 200 {
			t.Fatalf("join: %d %+v", code, ae)
		}
		seen[jr.Node.ID] = true
	}
	if !seen["de-fra"] || !seen["fr-par"] {
		t.Fatalf("placements %v, want one on each allowed node", seen)
	}
	_, ae, code := c.join(m.ID, "DE")
	if code != 503 || ae.Code != "no_capacity_in_allowed_regions" {
		t.Fatalf("over capacity: %d %+v", code, ae)
	}
}

func TestAuditExportVerifiesAndDetectsTampering(t *testing.T) {
	c := startCluster(t, policy.Policy{}, worldNodes)
	m := c.create(policy.Policy{BlockedCountries: []string{"CN"}})
	for _, from := range []string{"CN", "JP", "DE"} {
		if _, ae, code := c.join(m.ID, from); code != 200 {
			t.Fatalf("join: %d %+v", code, ae)
		}
	}
	c.do("PUT", "/api/meetings/"+m.ID+"/policy", m.HostToken, policy.Policy{BlockedCountries: []string{"CN", "RU"}}, nil)

	for _, path := range []string{"/api/audit/export?meeting=" + m.ID, "/api/audit/export"} {
		resp, err := http.Get(c.http.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		sum, err := audit.VerifyExport(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if sum.Entries < 5 || !bytes.Equal(sum.PublicKey, c.srv.PublicKey()) {
			t.Fatalf("%s: summary %+v", path, sum)
		}
		lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
		entry := lines[2]
		i := bytes.Index(entry, []byte(`"kind":"`)) + len(`"kind":"`)
		tampered := bytes.Clone(data)
		off := bytes.Index(data, entry) + i
		tampered[off] ^= 0x01
		if _, err := audit.VerifyExport(bytes.NewReader(tampered)); err == nil {
			t.Fatalf("%s: a changed byte verified", path)
		}
	}
}

func TestStateSurvivesControlRestart(t *testing.T) {
	c := startCluster(t, policy.Policy{}, worldNodes[:3])
	m := c.create(policy.Policy{BlockedCountries: []string{"US"}})
	if _, ae, code := c.join(m.ID, "DE"); code != 200 {
		t.Fatalf("join: %d %+v", code, ae)
	}
	var before struct{ Entries []audit.Entry }
	c.get("/api/audit?meeting="+m.ID, &before)

	c.restartControl()
	for _, n := range worldNodes[:3] {
		c.startNode(n)
	}
	c.waitHealthy(3)

	var got created
	if code := c.get("/api/meetings/"+m.ID, &got); code != 200 || len(got.Policy.BlockedCountries) != 1 {
		t.Fatalf("meeting after restart: %d %+v", code, got)
	}
	if code := c.do("PUT", "/api/meetings/"+m.ID+"/policy", m.HostToken, policy.Policy{BlockedCountries: []string{"US", "JP"}}, nil); code != 200 {
		t.Fatalf("host token after restart: %d", code)
	}
	if _, ae, code := c.join(m.ID, "JP"); code != 200 {
		t.Fatalf("join after restart: %d %+v", code, ae)
	}
	var rv control.RoutingView
	c.get("/api/meetings/"+m.ID+"/routing", &rv)
	if len(rv.Participants) != 2 {
		t.Fatalf("participants after restart: %+v", rv.Participants)
	}
	resp, err := http.Get(c.http.URL + "/api/audit/export")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum, err := audit.VerifyExport(resp.Body)
	if err != nil {
		t.Fatalf("audit after restart: %v", err)
	}
	if sum.Entries < len(before.Entries)+2 {
		t.Fatalf("audit entries %d, had %d before restart", sum.Entries, len(before.Entries))
	}
}

func TestNodeLossIsNoticedAndAudited(t *testing.T) {
	c := startCluster(t, policy.Policy{}, worldNodes[:2])
	c.stopNode("de-fra")
	// A deregistered node disappears from heartbeats; it must turn
	// unhealthy within the heartbeat timeout plus one check.
	waitFor(t, 6*time.Second, "de-fra unhealthy", func() bool {
		var nodes []control.NodeView
		c.get("/api/nodes", &nodes)
		for _, n := range nodes {
			if n.ID == "de-fra" {
				return !n.Healthy
			}
		}
		return false
	})
	var a struct{ Entries []audit.Entry }
	c.get("/api/audit", &a)
	found := false
	for _, e := range a.Entries {
		found = found || (e.Kind == audit.KindNodeDown && e.Node == "de-fra" && e.NodeCountry == "DE")
	}
	if !found {
		t.Fatalf("no node_down entry in %+v", a.Entries)
	}
	m := c.create(policy.Policy{})
	jr, ae, code := c.join(m.ID, "DE")
	if code != 200 || jr.Node.ID == "de-fra" {
		t.Fatalf("join after node loss: %d %+v %+v", code, jr.Node, ae)
	}
}

func TestFloorCannotBeLoosened(t *testing.T) {
	c := startCluster(t, policy.Policy{BlockedCountries: []string{"RU"}}, worldNodes)
	m := c.create(policy.Policy{AllowedCountries: []string{"RU", "DE"}})
	if !contains(m.EffectivePolicy.BlockedCountries, "RU") {
		t.Fatalf("effective policy lost the floor: %+v", m.EffectivePolicy)
	}
	for range 5 {
		jr, ae, code := c.join(m.ID, "RU")
		if code != 200 || jr.Node.Country != "DE" {
			t.Fatalf("join from RU: %d %+v %+v", code, jr.Node, ae)
		}
	}
	var cfg struct{ Floor policy.Policy }
	c.get("/api/config", &cfg)
	if !contains(cfg.Floor.BlockedCountries, "RU") {
		t.Fatalf("config floor %+v", cfg.Floor)
	}
}

func TestMetrics(t *testing.T) {
	c := startCluster(t, policy.Policy{}, worldNodes[:2])
	m := c.create(policy.Policy{BlockedCountries: []string{"DE", "US"}})
	c.join(m.ID, "DE")
	m2 := c.create(policy.Policy{})
	c.join(m2.ID, "DE")
	resp, err := http.Get(c.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`oakmeet_placements_total{node_country="DE"} 1`,
		`oakmeet_refusals_total{code="no_node_in_allowed_regions"} 1`,
		`oakmeet_healthy_nodes 2`,
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
