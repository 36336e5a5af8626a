package web_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/geo"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/nodecert"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/web"
)

// hostcontrolPage loads the app's hostcontrol.js, hoststmt.js and geodata.js.
const hostcontrolPage = `<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><script type="module">
import * as hc from '/js/hostcontrol.js';
import * as hs from '/js/hoststmt.js';
import * as gd from '/js/geodata.js';
import { b64, fromB64 } from '/js/e2ee/bytes.js';
window.hc = hc;
window.hs = hs;
window.gd = gd;
window.b64 = b64;
window.fromB64 = fromB64;
window.ready = true;
</script>`

// hostcontrolServer serves the app and hostcontrolPage; preview, if not
// nil, answers POST /api/policy/preview, and every PUT of a meeting's
// policy is counted in puts.
func hostcontrolServer(t *testing.T, preview func() any, puts *atomic.Int32) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler(nil))
	mux.HandleFunc("/hostcontrol-test", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(hostcontrolPage))
	})
	mux.HandleFunc("POST /api/policy/preview", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(preview())
	})
	mux.HandleFunc("PUT /api/meetings/{id}/policy", func(w http.ResponseWriter, r *http.Request) {
		puts.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{"id": r.PathValue("id")})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func b64std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// TestGeoDataMatchesGoCatalogue: geodata.js, the groups and regions the
// host's rules check uses, equals package geo's catalogue, so it cannot
// drift from what the control plane compiles policies with.
func TestGeoDataMatchesGoCatalogue(t *testing.T) {
	b := newBrowser(t, "geodata", browserOpts{})
	srv := hostcontrolServer(t, nil, new(atomic.Int32))
	b.navigate(srv.URL + "/hostcontrol-test")
	b.waitJS(10*time.Second, "modules to load", `window.ready === true`, `document.body.textContent`)

	groups := map[string][]string{}
	for _, n := range geo.GroupNames() {
		g, _ := geo.Group(n)
		groups[n] = g
	}
	regions := map[string]string{}
	for _, r := range geo.Regions() {
		regions[r.ID] = r.Country
	}
	want, _ := json.Marshal(map[string]any{"groups": groups, "regions": regions})
	var gotV, wantV any
	got := evalJS[string](b, `JSON.stringify({ groups: gd.GROUPS, regions: gd.REGION_COUNTRY })`)
	_ = json.Unmarshal([]byte(got), &gotV)
	_ = json.Unmarshal(want, &wantV)
	if g, w := mustJSON(t, gotV), mustJSON(t, wantV); g != w {
		t.Errorf("geodata.js differs from package geo:\n got %s\nwant %s", g, w)
	}
	b.checkConsole()
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v) // map keys sorted: a canonical form
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestHostRulesCheckUsesOnlyShippedGeoData: the host's check of the rules
// it is asked to sign expands groups and maps regions with geodata.js, not
// with anything the server hands it, and every region the host blocked
// must be blocked by the rules or lie in a country they do not allow.
func TestHostRulesCheckUsesOnlyShippedGeoData(t *testing.T) {
	b := newBrowser(t, "rulescheck", browserOpts{})
	srv := hostcontrolServer(t, nil, new(atomic.Int32))
	b.navigate(srv.URL + "/hostcontrol-test")
	b.waitJS(10*time.Second, "modules to load", `window.ready === true`, `document.body.textContent`)

	// A server's geo that says the EU is only FR and eu-central-1 is in
	// FR: passed along, it must make no difference.
	lyingGeo := `{ groups: { EU: ['FR'] }, regions: [{ id: 'eu-central-1', country: 'FR' }] }`
	cases := []struct {
		name, rules, policy string
		ok                  bool
	}{
		{"blocked group member allowed", `{allowed_countries:['DE','US'],blocked_regions:[]}`, `{blocked_countries:['EU']}`, false},
		{"blocked group ruled out", `{allowed_countries:['US'],blocked_regions:[]}`, `{blocked_countries:['EU']}`, true},
		{"allow-list group", `{allowed_countries:['DE','FR'],blocked_regions:[]}`, `{allowed_countries:['EU']}`, true},
		{"outside allow-list group", `{allowed_countries:['DE','GB'],blocked_regions:[]}`, `{allowed_countries:['EU']}`, false},
		{"blocked region allowed", `{allowed_countries:['DE','FR'],blocked_regions:[]}`, `{blocked_regions:['eu-central-1']}`, false},
		{"blocked region in rules", `{allowed_countries:['DE','FR'],blocked_regions:['eu-central-1']}`, `{blocked_regions:['eu-central-1']}`, true},
		{"blocked region's country not allowed", `{allowed_countries:['FR'],blocked_regions:[]}`, `{blocked_regions:['EU-Central-1']}`, true},
		{"unknown blocked region not in rules", `{allowed_countries:['FR'],blocked_regions:[]}`, `{blocked_regions:['mars-1']}`, false},
	}
	for _, c := range cases {
		got := evalJS[string](b, `(() => { try { hc.rulesWithin(`+c.rules+`, `+c.policy+`, `+lyingGeo+`); return 'ok'; } catch (e) { return e.message; } })()`)
		if (got == "ok") != c.ok {
			t.Errorf("%s: rulesWithin(%s, %s) = %q, want ok=%v", c.name, c.rules, c.policy, got, c.ok)
		}
	}
	b.checkConsole()
}

// TestHostPinsEnrollmentKey: the host's first policy statement fixes the
// meeting's enrollment key. A member's HostView refuses a newer policy
// statement (validly signed by the host key) naming another enrollment
// key; the host's page refuses to sign a preview naming another key (the
// error names both key ids) and signs one naming the pinned key; a host
// page holding no policy statement of its own key signs nothing.
func TestHostPinsEnrollmentKey(t *testing.T) {
	enrollA := ed25519.NewKeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey)
	seedB := make([]byte, 32)
	seedB[0] = 1
	enrollB := ed25519.NewKeyFromSeed(seedB).Public().(ed25519.PublicKey)
	eff, err := policy.Combine(policy.Policy{}, policy.Policy{AllowedCountries: []string{"DE", "FR"}})
	if err != nil {
		t.Fatal(err)
	}
	var previewKey atomic.Value
	previewKey.Store(enrollB)
	preview := func() any {
		return map[string]any{"policy_hash": eff.Hash(), "rules": eff.Rules(), "enrollment_key": b64std(previewKey.Load().(ed25519.PublicKey)), "allowed_nodes": []string{}}
	}
	var puts atomic.Int32
	b := newBrowser(t, "pinning", browserOpts{})
	srv := hostcontrolServer(t, preview, &puts)
	b.navigate(srv.URL + "/hostcontrol-test")
	b.waitJS(10*time.Second, "modules to load", `window.ready === true`, `document.body.textContent`)

	// A member's view: Go signs the statements with the host key.
	host, err := hoststmt.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	hostPub := host.Public().(ed25519.PublicKey)
	wire := func(seq uint64, ek ed25519.PublicKey) string {
		s := hoststmt.NewPolicy(seq, eff, ek)
		if err := s.Sign(host); err != nil {
			t.Fatal(err)
		}
		w, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		return string(w)
	}
	evalJS[bool](b, `(async () => { window.view = new hc.HostView(`+jsString(hoststmt.Fingerprint(hostPub))+`);
		await view.adopt({ key: `+jsString(b64std(hostPub))+`, statements: [JSON.parse(`+jsString(wire(1, enrollA))+`)] }); return true; })()`)
	state := func() string {
		return evalJS[string](b, `view.policy ? view.policy.seq + ' ' + b64(view.policy.enrollmentKey) : 'none'`)
	}
	if got, want := state(), "1 "+b64std(enrollA); got != want {
		t.Fatalf("after the first statement the view holds %q, want %q", got, want)
	}
	evalJS[any](b, `view.receive(JSON.parse(`+jsString(wire(2, enrollB))+`)).then(() => null)`)
	if got, want := state(), "1 "+b64std(enrollA); got != want {
		t.Errorf("a newer statement with another enrollment key was accepted: view holds %q, want %q", got, want)
	}
	evalJS[any](b, `view.receive(JSON.parse(`+jsString(wire(3, enrollA))+`)).then(() => null)`)
	if got, want := state(), "3 "+b64std(enrollA); got != want {
		t.Errorf("a newer statement with the pinned key: view holds %q, want %q", got, want)
	}

	// The host's page: its key in the browser, its first statement (the
	// create's) naming enrollA.
	evalJS[bool](b, `(async () => {
		window.hkey = await hs.HostKey.generate();
		window.hview = new hc.HostView(await hs.fingerprint(hkey.publicKey));
		await hview.adopt({ key: b64(hkey.publicKey), statements: [] });
		window.actions = new hc.HostActions({ meeting: 'm-1', token: 'tok', key: hkey, view: hview });
		return true; })()`)
	setPolicy := `actions.setPolicy({ allowed_countries: ['DE', 'FR'] }).then(() => 'signed', (e) => e.message)`
	if got := evalJS[string](b, setPolicy); !strings.Contains(got, "not signed") || puts.Load() != 0 {
		t.Errorf("a host page with no statement of its own signed a policy (%q, %d PUTs)", got, puts.Load())
	}
	evalJS[bool](b, `(async () => { await hview.receive(await hkey.sign({ kind: hs.KIND_POLICY, policyHash: `+jsString(eff.Hash())+`,
		rules: { allowed_countries: ['DE', 'FR'], blocked_regions: [] }, enrollmentKey: fromB64(`+jsString(b64std(enrollA))+`) })); return true; })()`)
	got := evalJS[string](b, setPolicy)
	if !strings.Contains(got, nodecert.KeyID(enrollA)) || !strings.Contains(got, nodecert.KeyID(enrollB)) || puts.Load() != 0 {
		t.Errorf("a preview naming another enrollment key: %q (%d PUTs), want a refusal naming %s and %s",
			got, puts.Load(), nodecert.KeyID(enrollA), nodecert.KeyID(enrollB))
	}
	previewKey.Store(enrollA)
	if got := evalJS[string](b, setPolicy); got != "signed" || puts.Load() != 1 {
		t.Errorf("a preview naming the pinned key: %q (%d PUTs), want signed", got, puts.Load())
	}
	b.checkConsole()
}
