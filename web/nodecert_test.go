package web_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/nodecert"
	"github.com/oakmeet/oakmeet/web"
)

// nodecertPage loads the app's nodecert.js. The test calls window.nc.
const nodecertPage = `<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><script type="module">
import * as nc from '/js/nodecert.js';
import { b64, fromB64, utf8 } from '/js/e2ee/bytes.js';
window.nc = nc;
window.b64 = b64;
window.fromB64 = fromB64;
window.utf8 = utf8;
window.check = async (text, key, now) => {
	try { const c = await nc.verifyCert(text, fromB64(key), now); return 'ok ' + c.node + ' ' + c.country + ' ' + c.region + ' ' + c.serial + ' ' + b64(c.identityKey) + ' ' + c.notBefore + ' ' + c.notAfter; }
	catch (e) { return 'refused ' + (e.reason || e.message); }
};
window.ready = true;
</script>`

// TestNodeCertsMatchGo: certificates Go's nodecert issues verify in the
// page with the enrollment key, with the same fields; altered, under
// another key, self-signed, expired, not yet valid or malformed they are
// refused, each for its reason. A node's SDP signatures (nodecert.SignSDP)
// verify in the page with its certified identity key, over the same bytes,
// and fail for another participant, nonce, kind, SDP or key.
func TestNodeCertsMatchGo(t *testing.T) {
	b := newBrowser(t, "nodecert", browserOpts{})
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler(nil))
	mux.HandleFunc("/nodecert-test", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(nodecertPage))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	b.navigate(srv.URL + "/nodecert-test")
	b.waitJS(10*time.Second, "nodecert.js to load", `window.ready === true`, `document.body.textContent`)

	enrollPub, enroll, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, other, _ := ed25519.GenerateKey(rand.Reader)
	nodePub, nodeKey, _ := ed25519.GenerateKey(rand.Reader)
	std := base64.StdEncoding.EncodeToString
	now := time.Now().Truncate(time.Second)
	issue := func(key ed25519.PrivateKey, c nodecert.Cert) string {
		t.Helper()
		serial, err := nodecert.NewSerial()
		if err != nil {
			t.Fatal(err)
		}
		if c.Serial == "" {
			c.Serial = serial
		}
		out, err := nodecert.Issue(key, c)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	base := nodecert.Cert{NodeID: "de-fra-1", Country: "DE", Region: "eu-central-1", IdentityKey: nodePub, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)}
	good := issue(enroll, base)
	noRegion := base
	noRegion.NodeID, noRegion.Country, noRegion.Region = "us_1", "US", ""
	good2 := issue(enroll, noRegion)
	nowS := now.Unix()
	check := func(text string, key ed25519.PublicKey, at int64) string {
		return evalJS[string](b, `check(`+jsString(text)+`, `+jsString(std(key))+`, `+jsNum(at)+`)`)
	}

	for _, text := range []string{good, good2} {
		c, err := nodecert.Verify(enrollPub, []byte(text), now)
		if err != nil {
			t.Fatal(err)
		}
		want := strings.Join([]string{"ok", c.NodeID, c.Country, c.Region, c.Serial, std(c.IdentityKey), jsNum(c.NotBefore.Unix()), jsNum(c.NotAfter.Unix())}, " ")
		if got := check(text, enrollPub, nowS); got != want {
			t.Errorf("Go certificate in the page:\n got %s\nwant %s", got, want)
		}
	}

	expired := base
	expired.NotBefore, expired.NotAfter = now.Add(-48*time.Hour), now.Add(-time.Hour)
	future := base
	future.NotBefore, future.NotAfter = now.Add(time.Hour), now.Add(48*time.Hour)
	soon := base
	soon.NotBefore = now.Add(nodecert.MaxClockSkew / 2) // within the skew allowed
	payload := strings.Split(good, ".")[1]
	sig := strings.Split(good, ".")[2]
	flip := func(s string, i int) string {
		c := []byte(s)
		if c[i] == 'A' {
			c[i] = 'B'
		} else {
			c[i] = 'A'
		}
		return string(c)
	}
	refusals := []struct {
		name, text string
		key        ed25519.PublicKey
		at         int64
		reason     string
	}{
		{"another enrollment key", good, otherPub, nowS, "wrong_key"},
		{"self-signed (by another key, naming the expected one)", selfSigned(t, other, enrollPub, base), enrollPub, nowS, "bad_signature"},
		{"expired", issue(enroll, expired), enrollPub, nowS, "expired"},
		{"expired a second ago", good, enrollPub, base.NotAfter.Unix() + 1, "expired"},
		{"not yet valid", issue(enroll, future), enrollPub, nowS, "not_yet_valid"},
		{"signature altered", "oakmeet-node-cert-v1." + payload + "." + flip(sig, 5), enrollPub, nowS, "bad_signature"},
		{"payload altered", "oakmeet-node-cert-v1." + flip(payload, 20) + "." + sig, enrollPub, nowS, ""},
		{"other tag", "oakmeet-node-revocations-v1." + payload + "." + sig, enrollPub, nowS, "malformed"},
		{"trailing newline", good + "\n", enrollPub, nowS, "malformed"},
		{"padded base64", "oakmeet-node-cert-v1." + payload + "." + sig + "==", enrollPub, nowS, "malformed"},
		{"empty", "", enrollPub, nowS, "malformed"},
		{"no signature part", "oakmeet-node-cert-v1." + payload, enrollPub, nowS, "malformed"},
	}
	for _, payloadJSON := range []string{
		`{"country":"DE","enrollment_key":"` + nodecert.KeyID(enrollPub) + `","identity_key":"` + base64.RawURLEncoding.EncodeToString(nodePub) + `","node":"de-fra-1","not_after":` + jsNum(nowS+3600) + `,"not_before":` + jsNum(nowS-3600) + `,"region":"","serial":"00112233445566778899aabbccddeeff","extra":1}`,
		`{"country":"DE", "enrollment_key":"` + nodecert.KeyID(enrollPub) + `","identity_key":"` + base64.RawURLEncoding.EncodeToString(nodePub) + `","node":"de-fra-1","not_after":` + jsNum(nowS+3600) + `,"not_before":` + jsNum(nowS-3600) + `,"region":"","serial":"00112233445566778899aabbccddeeff"}`,
		`{"enrollment_key":"` + nodecert.KeyID(enrollPub) + `","country":"DE","identity_key":"` + base64.RawURLEncoding.EncodeToString(nodePub) + `","node":"de-fra-1","not_after":` + jsNum(nowS+3600) + `,"not_before":` + jsNum(nowS-3600) + `,"region":"","serial":"00112233445566778899aabbccddeeff"}`,
		`{"country":"de","enrollment_key":"` + nodecert.KeyID(enrollPub) + `","identity_key":"` + base64.RawURLEncoding.EncodeToString(nodePub) + `","node":"de-fra-1","not_after":` + jsNum(nowS+3600) + `,"not_before":` + jsNum(nowS-3600) + `,"region":"","serial":"00112233445566778899aabbccddeeff"}`,
		`{"country":"DE","enrollment_key":"` + nodecert.KeyID(enrollPub) + `","identity_key":"` + base64.RawURLEncoding.EncodeToString(nodePub) + `","node":"de-fra-1","not_after":` + jsNum(nowS-7200) + `,"not_before":` + jsNum(nowS-3600) + `,"region":"","serial":"00112233445566778899aabbccddeeff"}`,
		`{"country":"DE","enrollment_key":"` + nodecert.KeyID(enrollPub) + `","identity_key":"` + base64.RawURLEncoding.EncodeToString(nodePub) + `","node":"de-fra-1","not_after":` + jsNum(nowS+3600) + `,"not_before":` + jsNum(nowS-3600) + `,"region":"","serial":"0011"}`,
	} {
		text := signedEnvelope(enroll, payloadJSON)
		if _, err := nodecert.Parse([]byte(text)); err == nil {
			t.Fatalf("Go accepts the malformed payload %s", payloadJSON)
		}
		refusals = append(refusals, struct {
			name, text string
			key        ed25519.PublicKey
			at         int64
			reason     string
		}{"malformed payload " + payloadJSON, text, enrollPub, nowS, "malformed"})
	}
	for _, r := range refusals {
		_, goErr := nodecert.Verify(r.key, []byte(r.text), time.Unix(r.at, 0))
		if goErr == nil {
			t.Errorf("%s: Go accepts it", r.name)
		}
		got := check(r.text, r.key, r.at)
		if !strings.HasPrefix(got, "refused") || (r.reason != "" && got != "refused "+r.reason) {
			t.Errorf("%s: page says %q, want refused %s (Go: %v)", r.name, got, r.reason, goErr)
		}
	}
	if got := check(issue(enroll, soon), enrollPub, nowS); !strings.HasPrefix(got, "ok") {
		t.Errorf("a certificate valid from within the clock skew: %s", got)
	}
	if got := check(good, enrollPub, base.NotAfter.Unix()); !strings.HasPrefix(got, "ok") {
		t.Errorf("a certificate at its last second: %s", got)
	}

	// SDP signatures: the page verifies Go's over the same bytes.
	nonce := make([]byte, 32)
	_, _ = rand.Read(nonce)
	sdp := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\na=fingerprint:sha-256 AB:CD\r\nZoë\r\n"
	sdpSig := nodecert.SignSDP(nodeKey, "m-1", "p-1", nonce, "offer", sdp)
	if err := nodecert.VerifySDP(nodePub, sdpSig, "m-1", "p-1", nonce, "offer", sdp); err != nil {
		t.Fatal(err)
	}
	tbs := evalJS[string](b, `b64(nc.sdpTBS('m-1', 'p-1', fromB64(`+jsString(std(nonce))+`), 'offer', `+jsString(sdp)+`))`)
	if want := std(nodecert.SDPTBS("m-1", "p-1", nonce, "offer", sdp)); tbs != want {
		t.Errorf("SDP TBS:\n page %s\n   Go %s", tbs, want)
	}
	verifySDP := func(key ed25519.PublicKey, sig []byte, participant string, nonce []byte, kind, sdp string) bool {
		return evalJS[bool](b, `nc.verifySDP(fromB64(`+jsString(std(key))+`), fromB64(`+jsString(std(sig))+`), 'm-1', `+jsString(participant)+`, fromB64(`+jsString(std(nonce))+`), `+jsString(kind)+`, `+jsString(sdp)+`)`)
	}
	if !verifySDP(nodePub, sdpSig, "p-1", nonce, "offer", sdp) {
		t.Error("the page refuses Go's SDP signature")
	}
	otherNonce := append([]byte{}, nonce...)
	otherNonce[0] ^= 1
	badSig := append([]byte{}, sdpSig...)
	badSig[10] ^= 1
	for name, ok := range map[string]bool{
		"another participant": verifySDP(nodePub, sdpSig, "p-2", nonce, "offer", sdp),
		"another nonce":       verifySDP(nodePub, sdpSig, "p-1", otherNonce, "offer", sdp),
		"another kind":        verifySDP(nodePub, sdpSig, "p-1", nonce, "answer", sdp),
		"another SDP":         verifySDP(nodePub, sdpSig, "p-1", nonce, "offer", strings.Replace(sdp, "AB:CD", "AB:CE", 1)),
		"another key":         verifySDP(otherPub, sdpSig, "p-1", nonce, "offer", sdp),
		"altered signature":   verifySDP(nodePub, badSig, "p-1", nonce, "offer", sdp),
	} {
		if ok {
			t.Errorf("the page verifies an SDP signature for %s", name)
		}
	}
	b.checkConsole()
}

// selfSigned is a certificate for c naming the enrollment key claimed but
// signed with key: what a node that minted its own certificate presents.
func selfSigned(t *testing.T, key ed25519.PrivateKey, claimed ed25519.PublicKey, c nodecert.Cert) string {
	t.Helper()
	c.Serial = "0123456789abcdef0123456789abcdef"
	real, err := nodecert.Issue(key, c)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(string(real), ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	p := strings.Replace(string(payload), nodecert.KeyID(key.Public().(ed25519.PublicKey)), nodecert.KeyID(claimed), 1)
	return signedEnvelope(key, p)
}

// signedEnvelope wraps any payload in a certificate envelope signed by key.
func signedEnvelope(key ed25519.PrivateKey, payload string) string {
	msg := append([]byte("oakmeet-node-cert-v1\n"), payload...)
	sig := ed25519.Sign(key, msg)
	return "oakmeet-node-cert-v1." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// jsNum is an integer as JavaScript source.
func jsNum(n int64) string {
	return strconv.FormatInt(n, 10)
}
