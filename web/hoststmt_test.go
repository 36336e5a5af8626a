package web_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/web"
)

// hoststmtPage loads the app's hoststmt.js. The test calls window.hs.
const hoststmtPage = `<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><script type="module">
import * as hs from '/js/hoststmt.js';
import { b64, fromB64 } from '/js/e2ee/bytes.js';
window.hs = hs;
window.b64 = b64;
window.fromB64 = fromB64;
window.ready = true;
</script>`

// TestHostStatementsMatchGo: the browser's host statements and Go's
// package hoststmt are one format. The page verifies statements Go signed,
// of every kind, and refuses them altered or malformed as Go does; Go
// verifies and re-encodes identically statements the page signed with a
// non-extractable key kept in IndexedDB; both compute the same fingerprint.
func TestHostStatementsMatchGo(t *testing.T) {
	b := newBrowser(t, "hoststmt", browserOpts{})
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler(nil))
	mux.HandleFunc("/hoststmt-test", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(hoststmtPage))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	b.navigate(srv.URL + "/hoststmt-test")
	b.waitJS(10*time.Second, "hoststmt.js to load", `window.ready === true`, `document.body.textContent`)

	key, err := hoststmt.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	identity := make([]byte, 32)
	for i := range identity {
		identity[i] = byte(i * 7)
	}
	enrollment := make([]byte, 32)
	for i := range enrollment {
		enrollment[i] = byte(200 - i)
	}
	euOnly, err := policy.Combine(policy.Policy{}, policy.Policy{AllowedCountries: []string{"DE", "FR"}, BlockedRegions: []string{"eu-west-3"}})
	if err != nil {
		t.Fatal(err)
	}
	anywhere, err := policy.Combine(policy.Policy{}, policy.Policy{BlockedCountries: []string{"CN", "RU"}})
	if err != nil {
		t.Fatal(err)
	}
	goSigned := []hoststmt.Statement{
		hoststmt.NewPolicy(1764620000000, euOnly, enrollment),
		{Kind: hoststmt.KindSettings, Seq: 2, Locked: true},
		{Kind: hoststmt.KindSettings, Seq: 3, Lobby: true},
		{Kind: hoststmt.KindSettings, Seq: 4},
		{Kind: hoststmt.KindAdmit, Seq: 5, Ticket: "t-1", Name: "Zoë Ørsted 李"},
		{Kind: hoststmt.KindDeny, Seq: 6, Ticket: "t-2", Name: ""},
		{Kind: hoststmt.KindRemove, Seq: 7, Participant: "p-9", Identity: identity},
		{Kind: hoststmt.KindRemove, Seq: 8, Participant: "p-10"},
		hoststmt.NewPolicy(9, anywhere, enrollment),
	}
	var wires []string
	for i := range goSigned {
		if err := goSigned[i].Sign(key); err != nil {
			t.Fatal(err)
		}
		w, err := json.Marshal(goSigned[i])
		if err != nil {
			t.Fatal(err)
		}
		wires = append(wires, string(w))
	}
	pubJS := "fromB64(" + jsString(base64.StdEncoding.EncodeToString(pub)) + ")"

	// Every Go statement verifies in the page, and its TBS is Go's.
	for i, w := range wires {
		got := evalJS[string](b, `(async () => { const s = hs.parse(`+jsString(w)+`);
			return (await hs.verify(s, `+pubJS+`)) + ' ' + b64(hs.tbs(s)) + ' ' + JSON.stringify(hs.toWire(s)); })()`)
		want := "true " + base64.StdEncoding.EncodeToString(goSigned[i].TBS()) + " " + w
		if got != want {
			t.Errorf("Go statement %s in the page:\n got %s\nwant %s", w, got, want)
		}
	}
	// Altered, they do not verify: another seq, another value, another key.
	other, _ := hoststmt.GenerateKey()
	otherJS := "fromB64(" + jsString(base64.StdEncoding.EncodeToString(other.Public().(ed25519.PublicKey))) + ")"
	for _, alter := range []string{`s.seq += 1`, `s.locked = !s.locked`, `s.policyHash = 'sha256:x'`, `s.participant = 'p-other'`, `s.name = 'Eve'`,
		`s.enrollmentKey && (s.enrollmentKey[0] ^= 1)`,
		`s.rules && s.rules.allowed_countries.push('ZZ')`,
		`s.rules && (s.rules.blocked_regions = [])`,
		`s.rules && (s.rules.allowed_countries = s.rules.allowed_countries.filter((c) => c !== 'DE'))`} {
		for i, w := range wires {
			js := `(async () => { const s = hs.parse(` + jsString(w) + `); const before = JSON.stringify(hs.toWire(s)); ` + alter +
				`; if (JSON.stringify(hs.toWire(s)) === before) return 'unchanged'; return String(await hs.verify(s, ` + pubJS + `)); })()`
			if got := evalJS[string](b, js); got != "unchanged" && got != "false" {
				t.Errorf("statement %d altered by %q verifies in the page: %s", i, alter, got)
			}
		}
	}
	for _, w := range wires {
		if evalJS[bool](b, `hs.verify(hs.parse(`+jsString(w)+`), `+otherJS+`)`) {
			t.Errorf("statement %s verifies under another key", w)
		}
	}

	// Malformed wire forms: Go and the page both refuse them.
	base := wires[1] // a settings statement
	malformed := []string{
		strings.Replace(base, `"v":1`, `"v":2`, 1),
		strings.Replace(base, `"locked":true,`, ``, 1),
		strings.Replace(base, `"lobby":false`, `"lobby":false,"ticket":"x"`, 1),
		strings.Replace(base, `"lobby":false`, `"lobby":false,"extra":1`, 1),
		strings.Replace(base, `"kind":"settings"`, `"kind":"other"`, 1),
		strings.Replace(base, `"seq":2`, `"seq":0`, 1),
		strings.Replace(base, `"locked":true`, `"locked":1`, 1),
		strings.Replace(wires[6], `"identity":"`, `"identity":"AAAA`, 1),
		strings.Replace(wires[0], `"sig":"`, `"sig":"A`, 1),
		strings.Replace(wires[0], `"policy_hash":"`+euOnly.Hash()+`"`, `"policy_hash":""`, 1),
		strings.Replace(wires[0], `"allowed_countries":["DE","FR"],`, ``, 1),
		strings.Replace(wires[0], `"blocked_regions":["eu-west-3"],`, ``, 1),
		strings.Replace(wires[0], `"allowed_countries":["DE","FR"]`, `"allowed_countries":["FR","DE"]`, 1),
		strings.Replace(wires[0], `"allowed_countries":["DE","FR"]`, `"allowed_countries":["DE","DE","FR"]`, 1),
		strings.Replace(wires[0], `"allowed_countries":["DE","FR"]`, `"allowed_countries":["de","FR"]`, 1),
		strings.Replace(wires[0], `"allowed_countries":["DE","FR"]`, `"allowed_countries":"DE"`, 1),
		strings.Replace(wires[0], `"enrollment_key":"`, `"enrollment_key":"AAAA`, 1),
		strings.Replace(wires[0], `"enrollment_key":"`+base64.StdEncoding.EncodeToString(enrollment)+`"`, `"enrollment_key":"AAAA"`, 1),
		`{"v":1,"kind":"remove","seq":3,"participant":"p","sig":"` + base64.StdEncoding.EncodeToString(make([]byte, 64)) + `"}`,
		`[1]`,
	}
	for _, w := range malformed {
		if _, err := hoststmt.Parse([]byte(w)); err == nil {
			t.Errorf("Go accepts malformed %s", w)
		}
		if got := evalJS[string](b, `(() => { try { hs.parse(`+jsString(w)+`); return 'accepted'; } catch (e) { return 'refused'; } })()`); got != "refused" {
			t.Errorf("the page accepts malformed %s", w)
		}
	}

	// Rules that do not hash to the signed policy_hash: Go refuses them at
	// parse, the page at verify (its hash is asynchronous); the signature
	// alone would pass, since the rules are bound only through the hash.
	swapped := strings.Replace(wires[0], `"allowed_countries":["DE","FR"]`, `"allowed_countries":["DE","FR","IT"]`, 1)
	if _, err := hoststmt.Parse([]byte(swapped)); err == nil {
		t.Error("Go accepts rules that are not the signed hash's")
	}
	if got := evalJS[string](b, `(async () => { try { return String(await hs.verify(hs.parse(`+jsString(swapped)+`), `+pubJS+`)); } catch (e) { return 'refused'; } })()`); got == "true" {
		t.Error("the page verifies rules that are not the signed hash's")
	}
	// The page's rules check is Go's policy rule, and its hash is Go's.
	for _, c := range []struct{ country, region string }{{"DE", ""}, {"DE", "eu-central-1"}, {"FR", "eu-west-3"}, {"FR", "EU-WEST-3"}, {"FR", "eu-west-1"}, {"US", ""}, {"CN", ""}} {
		for i, eff := range []policy.Effective{euOnly, anywhere} {
			js := `(() => { const s = hs.parse(` + jsString(wires[map[int]int{0: 0, 1: 8}[i]]) + `); return hs.allows(s.rules, ` + jsString(c.country) + `, ` + jsString(c.region) + `); })()`
			if got, want := evalJS[bool](b, js), eff.Allows(c.country, strings.ToLower(c.region)); got != want {
				t.Errorf("policy %d allows %s/%s: page %v, Go %v", i, c.country, c.region, got, want)
			}
		}
	}
	if got := evalJS[string](b, `hs.rulesHash(hs.parse(`+jsString(wires[8])+`).rules)`); got != anywhere.Hash() {
		t.Errorf("rules hash: page %s, Go %s", got, anywhere.Hash())
	}

	// The fingerprint is Go's.
	if got, want := evalJS[string](b, `hs.fingerprint(`+pubJS+`)`), hoststmt.Fingerprint(pub); got != want {
		t.Errorf("fingerprint %q, Go %q", got, want)
	}
	fp := jsString(hoststmt.Fingerprint(pub))
	if !evalJS[bool](b, `hs.checkKey(`+pubJS+`, `+fp+`)`) || evalJS[bool](b, `hs.checkKey(`+otherJS+`, `+fp+`)`) {
		t.Error("checkKey does not tell the host key from another")
	}

	// The page makes a key, keeps it in IndexedDB, loads it back and signs
	// with it; the private key cannot be read.
	var fromJS struct {
		Public      string   `json:"public"`
		Fingerprint string   `json:"fingerprint"`
		Extractable bool     `json:"extractable"`
		Statements  []string `json:"statements"`
	}
	raw := evalJS[string](b, `(async () => {
		const made = await hs.HostKey.generate();
		await hs.saveHostKey('m-test', made);
		const k = await hs.loadHostKey('m-test');
		if (!k || b64(k.publicKey) !== b64(made.publicKey)) throw new Error('key not kept');
		if (await hs.loadHostKey('m-other')) throw new Error('a key for another meeting');
		let extractable = true;
		try { await crypto.subtle.exportKey('pkcs8', k.privateKey); } catch { extractable = false; }
		const id = new Uint8Array(32).map((_, i) => 255 - i);
		const sts = [
			await k.sign({ kind: 'policy', policyHash: `+jsString(euOnly.Hash())+`, rules: { allowed_countries: ['DE', 'FR'], blocked_regions: ['eu-west-3'] }, enrollmentKey: new Uint8Array(32).fill(9) }),
			await k.sign({ kind: 'settings', locked: true, lobby: true }),
			await k.sign({ kind: 'settings', locked: false, lobby: false }),
			await k.sign({ kind: 'admit', ticket: 'tk', name: 'Zoë 李' }),
			await k.sign({ kind: 'deny', ticket: 'tk2', name: 'Mallory' }),
			await k.sign({ kind: 'remove', participant: 'p-1', identity: id }),
			await k.sign({ kind: 'remove', participant: 'p-2' }),
		];
		return JSON.stringify({ public: b64(k.publicKey), fingerprint: await k.fingerprint(), extractable,
			statements: sts.map((s) => JSON.stringify(s)) });
	})()`)
	if err := json.Unmarshal([]byte(raw), &fromJS); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	if fromJS.Extractable {
		t.Error("the host's private key can be exported from the page")
	}
	jsPub, err := base64.StdEncoding.DecodeString(fromJS.Public)
	if err != nil || len(jsPub) != ed25519.PublicKeySize {
		t.Fatalf("public key %q", fromJS.Public)
	}
	if fromJS.Fingerprint != hoststmt.Fingerprint(jsPub) {
		t.Errorf("page fingerprint %q, Go %q", fromJS.Fingerprint, hoststmt.Fingerprint(jsPub))
	}
	if len(fromJS.Statements) != 7 {
		t.Fatalf("%d statements from the page", len(fromJS.Statements))
	}
	var lastSeq uint64
	for _, w := range fromJS.Statements {
		s, err := hoststmt.Parse([]byte(w))
		if err != nil {
			t.Errorf("Go cannot parse the page's %s: %v", w, err)
			continue
		}
		if err := s.Verify(jsPub); err != nil {
			t.Errorf("the page's %s does not verify in Go: %v", w, err)
		}
		if again, _ := json.Marshal(s); string(again) != w {
			t.Errorf("wire forms differ:\n page %s\n   Go %s", w, again)
		}
		if s.Seq <= lastSeq || s.Seq < uint64(time.Now().Add(-time.Hour).UnixMilli()) {
			t.Errorf("seq %d after %d: not the host's clock, strictly growing", s.Seq, lastSeq)
		}
		lastSeq = s.Seq
	}
	b.checkConsole()
}
