package control_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
	"github.com/oakmeet/oakmeet/token"
)

func TestJoinsAvoidBlockedCountry(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World())
	m := c.CreateMeeting(policy.Policy{BlockedCountries: []string{"cn"}})
	if len(m.Warnings) != 0 {
		t.Fatalf("warnings: %v", m.Warnings)
	}
	want := map[string]string{"JP": "JP", "DE": "DE", "US": "US", "BR": "BR"}
	for _, from := range []string{"CN", "JP", "KR", "DE", "US", "BR"} {
		jr, ae, code := c.Join(m.ID, from)
		if code != 200 {
			t.Fatalf("join from %s: %d %+v", from, code, ae)
		}
		if jr.Node.Country == "CN" {
			t.Fatalf("join from %s placed in CN", from)
		}
		if w, ok := want[from]; ok && jr.Node.Country != w {
			t.Errorf("join from %s placed in %s, want the local node in %s", from, jr.Node.Country, w)
		}
		claims, err := token.VerifyJoin(c.Srv.PublicKey(), jr.Token, time.Now())
		if err != nil || claims.Node != jr.Node.ID || claims.Meeting != m.ID || claims.Participant != jr.ParticipantID {
			t.Fatalf("token %+v: %v", claims, err)
		}
		if !strings.HasPrefix(jr.Node.URL, "ws://") {
			t.Fatalf("node url %q", jr.Node.URL)
		}
	}
	var rv api.Routing
	c.Get("/api/meetings/"+m.ID+"/routing", &rv)
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
	c := testcluster.Start(t, policy.Policy{}, testcluster.World())
	m := c.CreateMeeting(policy.Policy{})
	all := []string{"DE", "US", "JP", "SG", "BR", "IN", "CN", "RU"}
	out, err := c.Host(m.ID).SetPolicy(context.Background(), policy.Policy{BlockedCountries: all})
	if err != nil {
		t.Fatalf("put policy: %v", err)
	}
	if len(out.Warnings) == 0 {
		t.Fatal("no warning for a policy that leaves no node")
	}
	_, ae, code := c.Join(m.ID, "DE")
	if code != 503 || ae.Code != "no_node_in_allowed_regions" {
		t.Fatalf("join: %d %+v", code, ae)
	}
	var a struct{ Entries []audit.Entry }
	c.Get("/api/audit?meeting="+m.ID, &a)
	last := a.Entries[len(a.Entries)-1]
	if last.Kind != audit.KindRefusal || !strings.Contains(last.Reason, "no_node_in_allowed_regions") {
		t.Fatalf("last audit entry %+v", last)
	}
}

func TestOnlyHostChangesPolicy(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:2])
	m := c.CreateMeeting(policy.Policy{})
	var ae testcluster.APIError
	if code := c.Do("PUT", "/api/meetings/"+m.ID+"/policy", "", policy.Policy{BlockedCountries: []string{"DE"}}, &ae); code != 401 || ae.Code != "unauthorized" {
		t.Fatalf("no token: %d %+v", code, ae)
	}
	if code := c.Do("PUT", "/api/meetings/"+m.ID+"/policy", "wrong", policy.Policy{BlockedCountries: []string{"DE"}}, &ae); code != 403 || ae.Code != "forbidden" {
		t.Fatalf("wrong token: %d %+v", code, ae)
	}
	var got testcluster.Created
	c.Get("/api/meetings/"+m.ID, &got)
	if len(got.Policy.BlockedCountries) != 0 {
		t.Fatalf("policy changed by non-host: %+v", got.Policy)
	}
	if got.HostToken != "" {
		t.Fatal("GET shows the host token")
	}
	var raw map[string]any
	c.Get("/api/meetings/"+m.ID, &raw)
	for k := range raw {
		if strings.Contains(k, "token") || strings.Contains(k, "hash") && k != "policy_hash" {
			t.Fatalf("GET shows secret field %q", k)
		}
	}
}

func TestBadInputAnsweredPrecisely(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	m := c.CreateMeeting(policy.Policy{})
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
		var ae testcluster.APIError
		code := c.Do(tc.method, tc.path, "", tc.body, &ae)
		if code != tc.status || ae.Code != tc.code || !strings.Contains(ae.Error, tc.mention) {
			t.Errorf("%s %s %s: got %d %+v, want %d %s mentioning %q", tc.method, tc.path, tc.body, code, ae, tc.status, tc.code, tc.mention)
		}
	}
	// The meeting is unaffected: a good join still works.
	if _, ae, code := c.Join(m.ID, "DE"); code != 200 {
		t.Fatalf("join after bad input: %d %+v", code, ae)
	}
}

func TestCapacitySpillsThenRefuses(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, []testcluster.NodeSpec{
		{ID: "de-fra", Country: "DE", Region: "eu-central-1", Max: 1},
		{ID: "fr-par", Country: "FR", Region: "eu-west-3", Max: 1},
		{ID: "cn-pek", Country: "CN", Region: "cn-north-1", Max: 5},
	})
	m := c.CreateMeeting(policy.Policy{BlockedCountries: []string{"CN"}})
	seen := map[string]bool{}
	for range 2 {
		jr, ae, code := c.Join(m.ID, "DE")
		if code != 200 {
			t.Fatalf("join: %d %+v", code, ae)
		}
		seen[jr.Node.ID] = true
	}
	if !seen["de-fra"] || !seen["fr-par"] {
		t.Fatalf("placements %v, want one on each allowed node", seen)
	}
	_, ae, code := c.Join(m.ID, "DE")
	if code != 503 || ae.Code != "no_capacity_in_allowed_regions" {
		t.Fatalf("over capacity: %d %+v", code, ae)
	}
}

func TestAuditExportVerifiesAndDetectsTampering(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World())
	m := c.CreateMeeting(policy.Policy{BlockedCountries: []string{"CN"}})
	for _, from := range []string{"CN", "JP", "DE"} {
		if _, ae, code := c.Join(m.ID, from); code != 200 {
			t.Fatalf("join: %d %+v", code, ae)
		}
	}
	if _, err := c.Host(m.ID).SetPolicy(context.Background(), policy.Policy{BlockedCountries: []string{"CN", "RU"}}); err != nil {
		t.Fatal(err)
	}

	v, vkey := logKey(t, c)
	for path, tok := range map[string]string{"/api/audit/export?meeting=" + m.ID: m.HostToken, "/api/audit/export": c.OperatorToken()} {
		data := getWith(t, c.URL+path, tok)
		sum, err := audit.VerifyExport(bytes.NewReader(data), audit.VerifyOptions{Log: v})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if sum.Entries < 5 || sum.VerifierKey != vkey {
			t.Fatalf("%s: summary %+v", path, sum)
		}
		lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
		entry := lines[2]
		i := bytes.Index(entry, []byte(`"kind":"`)) + len(`"kind":"`)
		tampered := bytes.Clone(data)
		off := bytes.Index(data, entry) + i
		tampered[off] ^= 0x01
		if _, err := audit.VerifyExport(bytes.NewReader(tampered), audit.VerifyOptions{Log: v}); err == nil {
			t.Fatalf("%s: a changed byte verified", path)
		}
	}
}

func TestStateSurvivesControlRestart(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:3])
	m := c.CreateMeeting(policy.Policy{BlockedCountries: []string{"US"}})
	first, ae, code := c.Join(m.ID, "DE")
	if code != 200 {
		t.Fatalf("join: %d %+v", code, ae)
	}
	var before struct{ Entries []audit.Entry }
	c.Get("/api/audit?meeting="+m.ID, &before)

	c.RestartControl()
	for _, n := range testcluster.World()[:3] {
		c.StartNode(n)
	}
	c.WaitHealthy(3)

	var got testcluster.Created
	if code := c.Get("/api/meetings/"+m.ID, &got); code != 200 || len(got.Policy.BlockedCountries) != 1 {
		t.Fatalf("meeting after restart: %d %+v", code, got)
	}
	if _, err := c.Host(m.ID).SetPolicy(context.Background(), policy.Policy{BlockedCountries: []string{"US", "JP"}}); err != nil {
		t.Fatalf("host token after restart: %v", err)
	}
	if _, ae, code := c.Join(m.ID, "JP"); code != 200 {
		t.Fatalf("join after restart: %d %+v", code, ae)
	}
	// The restart stops the nodes first, and the control plane may see
	// their drain before it stops: then the first participant, who never
	// connected and has no other allowed node, is recorded gone — but its
	// record is still there, with why.
	var rv api.Routing
	c.Get("/api/meetings/"+m.ID+"/routing", &rv)
	rec, err := c.Store().Meeting(context.Background(), m.ID)
	if err != nil {
		t.Fatal(err)
	}
	var stored struct {
		Participants []struct {
			ID         string `json:"id"`
			LeftReason string `json:"left_reason"`
		} `json:"participants"`
	}
	if err := json.Unmarshal(rec.Value, &stored); err != nil {
		t.Fatal(err)
	}
	kept := false
	for _, p := range stored.Participants {
		kept = kept || p.ID == first.ParticipantID && (p.LeftReason == "" || p.LeftReason == api.ReasonDrainNoAllowedNode)
	}
	if !kept || len(rv.Participants) < 1 || len(rv.Participants) > 2 {
		t.Fatalf("participants after restart: %+v; stored %+v", rv.Participants, stored.Participants)
	}
	sum, err := audit.VerifyExport(bytes.NewReader(getWith(t, c.URL+"/api/audit/export", c.OperatorToken())), audit.VerifyOptions{Log: logVerifier(t, c)})
	if err != nil {
		t.Fatalf("audit after restart: %v", err)
	}
	if sum.Entries < len(before.Entries)+2 {
		t.Fatalf("audit entries %d, had %d before restart", sum.Entries, len(before.Entries))
	}
}

func TestNodeLossIsNoticedAndAudited(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:2])
	c.StopNode("de-fra")
	// A deregistered node disappears from heartbeats; it must turn
	// unhealthy within the heartbeat timeout plus one check.
	testcluster.WaitFor(t, 6*time.Second, "de-fra unhealthy", func() bool {
		var nodes []api.Node
		c.Get("/api/nodes", &nodes)
		for _, n := range nodes {
			if n.ID == "de-fra" {
				return !n.Healthy
			}
		}
		return false
	})
	// The node_down entry is appended right after the health change.
	testcluster.WaitFor(t, 5*time.Second, "a node_down entry for de-fra", func() bool {
		var a struct{ Entries []audit.Entry }
		c.Get("/api/audit", &a)
		for _, e := range a.Entries {
			if e.Kind == audit.KindNodeDown && e.Node == "de-fra" && e.NodeCountry == "DE" {
				return true
			}
		}
		return false
	})
	m := c.CreateMeeting(policy.Policy{})
	jr, ae, code := c.Join(m.ID, "DE")
	if code != 200 || jr.Node.ID == "de-fra" {
		t.Fatalf("join after node loss: %d %+v %+v", code, jr.Node, ae)
	}
}

func TestFloorCannotBeLoosened(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{BlockedCountries: []string{"RU"}}, testcluster.World())
	m := c.CreateMeeting(policy.Policy{AllowedCountries: []string{"RU", "DE"}})
	if !slices.Contains(m.EffectivePolicy.BlockedCountries, "RU") {
		t.Fatalf("effective policy lost the floor: %+v", m.EffectivePolicy)
	}
	for range 5 {
		jr, ae, code := c.Join(m.ID, "RU")
		if code != 200 || jr.Node.Country != "DE" {
			t.Fatalf("join from RU: %d %+v %+v", code, jr.Node, ae)
		}
	}
	var cfg struct{ Floor policy.Policy }
	c.Get("/api/config", &cfg)
	if !slices.Contains(cfg.Floor.BlockedCountries, "RU") {
		t.Fatalf("config floor %+v", cfg.Floor)
	}
}

func TestMetrics(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:2])
	m := c.CreateMeeting(policy.Policy{BlockedCountries: []string{"DE", "US"}})
	c.Join(m.ID, "DE")
	m2 := c.CreateMeeting(policy.Policy{})
	c.Join(m2.ID, "DE")
	resp, err := http.Get(c.URL + "/metrics")
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

func TestPolicyPreview(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{BlockedCountries: []string{"RU"}}, testcluster.World()[:3])
	var out struct {
		EffectivePolicy policy.Policy `json:"effective_policy"`
		AllowedNodes    []string      `json:"allowed_nodes"`
		Warnings        []string
	}
	if code := c.Do("POST", "/api/policy/preview", "", policy.Policy{AllowedCountries: []string{"EU"}}, &out); code != 200 {
		t.Fatalf("preview: %d", code)
	}
	if len(out.AllowedNodes) != 1 || out.AllowedNodes[0] != "de-fra" || !slices.Contains(out.EffectivePolicy.BlockedCountries, "RU") {
		t.Fatalf("preview %+v", out)
	}
	if code := c.Do("POST", "/api/policy/preview", "", policy.Policy{BlockedCountries: []string{"DE", "US", "JP"}}, &out); code != 200 || len(out.Warnings) == 0 || len(out.AllowedNodes) != 0 {
		t.Fatalf("preview of a policy that leaves nothing: %d %+v", code, out)
	}
	var ae testcluster.APIError
	if code := c.Do("POST", "/api/policy/preview", "", `{"blocked_countries":["ZZ"]}`, &ae); code != 400 || ae.Code != "unknown_country" {
		t.Fatalf("bad preview: %d %+v", code, ae)
	}
}

// getWith GETs url with a bearer token and returns the 200 answer's body.
func getWith(t *testing.T, url, tok string) []byte {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, data)
	}
	return data
}

func TestWebAppServed(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, nil)
	for _, path := range []string{"/", "/m/abc123"} {
		resp, err := http.Get(c.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "<html") {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
}
