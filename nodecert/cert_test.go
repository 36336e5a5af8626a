package nodecert

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/geo"
)

func TestIssueVerifyRoundTrip(t *testing.T) {
	for _, region := range []string{"eu-central-1", ""} {
		c := testCert()
		c.Region = region
		data := mustIssue(t, enrollKey, c)
		got, err := Verify(pubOf(enrollKey), data, t0.Add(time.Hour))
		if err != nil {
			t.Fatalf("region %q: %v", region, err)
		}
		if want := withKID(c, enrollKey); !reflect.DeepEqual(got, want) {
			t.Fatalf("region %q: got %+v\nwant %+v", region, got, want)
		}
		parsed, err := Parse(data)
		if err != nil || !reflect.DeepEqual(parsed, got) {
			t.Fatalf("Parse = %+v, %v; Verify gave %+v", parsed, err, got)
		}
	}
}

func TestIssueNormalisesPlaceAndTime(t *testing.T) {
	c := testCert()
	c.Country, c.Region = " de", "EU-Central-1"
	c.NotBefore = t0.Add(999 * time.Millisecond)
	c.NotAfter = c.NotAfter.Add(999 * time.Millisecond)
	got, err := Parse(mustIssue(t, enrollKey, c))
	if err != nil {
		t.Fatal(err)
	}
	if got.Country != "DE" || got.Region != "eu-central-1" {
		t.Errorf("place %q %q, want DE eu-central-1", got.Country, got.Region)
	}
	if !got.NotBefore.Equal(t0) || !got.NotAfter.Equal(testCert().NotAfter) {
		t.Errorf("times %v %v not rounded down to the second", got.NotBefore, got.NotAfter)
	}
}

// TestEveryCatalogueRegion holds the claim of the package doc that every
// string in a payload needs no JSON escape, for every region there is.
func TestEveryCatalogueRegion(t *testing.T) {
	for _, r := range geo.Regions() {
		c := testCert()
		c.Country, c.Region = r.Country, r.ID
		data := mustIssue(t, enrollKey, c)
		got, err := Verify(pubOf(enrollKey), data, t0)
		if err != nil || got.Region != r.ID || got.Country != r.Country {
			t.Fatalf("region %s: %+v, %v", r.ID, got, err)
		}
		payload := mustDecodeStd(t, strings.Split(string(data), ".")[1])
		if bytes.ContainsAny(payload, "\\ \n") {
			t.Fatalf("region %s: payload has escapes or whitespace: %s", r.ID, payload)
		}
	}
}

func TestIssueRejects(t *testing.T) {
	edit := func(f func(*Cert)) Cert { c := testCert(); f(&c); return c }
	cases := []struct {
		name string
		key  ed25519.PrivateKey
		cert Cert
	}{
		{"short private key", enrollKey[:32], testCert()},
		{"empty node id", enrollKey, edit(func(c *Cert) { c.NodeID = "" })},
		{"node id with a dot", enrollKey, edit(func(c *Cert) { c.NodeID = "de.fra" })},
		{"node id too long", enrollKey, edit(func(c *Cert) { c.NodeID = strings.Repeat("n", 65) })},
		{"unknown country", enrollKey, edit(func(c *Cert) { c.Country = "XX" })},
		{"no country", enrollKey, edit(func(c *Cert) { c.Country, c.Region = "", "" })},
		{"region of another country", enrollKey, edit(func(c *Cert) { c.Country = "FR" })},
		{"unknown region", enrollKey, edit(func(c *Cert) { c.Region = "mars-north-1" })},
		{"short identity key", enrollKey, edit(func(c *Cert) { c.IdentityKey = c.IdentityKey[:31] })},
		{"no identity key", enrollKey, edit(func(c *Cert) { c.IdentityKey = nil })},
		{"no serial", enrollKey, edit(func(c *Cert) { c.Serial = "" })},
		{"upper-case serial", enrollKey, edit(func(c *Cert) { c.Serial = strings.ToUpper(c.Serial) })},
		{"short serial", enrollKey, edit(func(c *Cert) { c.Serial = c.Serial[:30] })},
		{"no not-before", enrollKey, edit(func(c *Cert) { c.NotBefore = time.Time{} })},
		{"no not-after", enrollKey, edit(func(c *Cert) { c.NotAfter = time.Time{} })},
		{"not-after before not-before", enrollKey, edit(func(c *Cert) { c.NotAfter = c.NotBefore.Add(-time.Second) })},
		{"after year 9999", enrollKey, edit(func(c *Cert) { c.NotAfter = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) })},
		{"another key's id", enrollKey, edit(func(c *Cert) { c.EnrollmentKeyID = KeyID(pubOf(otherKey)) })},
	}
	for _, tc := range cases {
		if data, err := Issue(tc.key, tc.cert); err == nil {
			t.Errorf("%s: issued %s", tc.name, data)
		}
	}
	// The same key's own id is accepted.
	if _, err := Issue(enrollKey, withKID(testCert(), enrollKey)); err != nil {
		t.Errorf("own key id: %v", err)
	}
}

// TestParseMalformed covers content the enrollment key signed but that is
// not a certificate: each is refused by Parse and by Verify as malformed,
// signature notwithstanding.
func TestParseMalformed(t *testing.T) {
	good := mustJSON(t, toWire(withKID(testCert(), enrollKey)))
	replace := func(old, new string) []byte {
		if !strings.Contains(good, old) {
			t.Fatalf("payload %s has no %s", good, old)
		}
		return sealRaw(enrollKey, certTag, []byte(strings.Replace(good, old, new, 1)))
	}
	field := func(k string, v any) []byte {
		m := certJSON(t)
		m[k] = v
		return sealRaw(enrollKey, certTag, []byte(mustJSON(t, m)))
	}
	without := func(k string) []byte {
		m := certJSON(t)
		delete(m, k)
		return sealRaw(enrollKey, certTag, []byte(mustJSON(t, m)))
	}
	issued := string(mustIssue(t, enrollKey, testCert()))
	parts := strings.Split(issued, ".")
	stdAlphabet := strings.NewReplacer("-", "+", "_", "/")
	if stdAlphabet.Replace(parts[2]) == parts[2] {
		t.Fatal("signature has no base64url-only character; pick another test certificate")
	}
	cases := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"other tag", []byte(strings.Replace(issued, certTag, "oakmeet-node-cert-v2", 1))},
		{"revocation tag", sealRaw(enrollKey, revocationsTag, []byte(good))},
		{"no signature part", []byte(parts[0] + "." + parts[1])},
		{"extra part", []byte(issued + ".AAAA")},
		{"padded base64", []byte(parts[0] + "." + parts[1] + "==." + parts[2])},
		{"standard base64 alphabet", []byte(parts[0] + "." + stdAlphabet.Replace(parts[1]) + "." + stdAlphabet.Replace(parts[2]))},
		{"line break in payload", []byte(parts[0] + "." + parts[1][:10] + "\n" + parts[1][10:] + "." + parts[2])},
		{"line break in signature", []byte(parts[0] + "." + parts[1] + "." + parts[2][:10] + "\r\n" + parts[2][10:])},
		{"trailing newline", []byte(issued + "\n")},
		{"short signature", []byte(parts[0] + "." + parts[1] + "." + parts[2][:84])},
		{"too long", []byte(issued + strings.Repeat("A", maxCertLen))},
		{"whitespace", replace(`,"node"`, `, "node"`)},
		{"keys out of order", sealRaw(enrollKey, certTag, []byte(strings.Replace(strings.Replace(good, `"country":"DE",`, "", 1), `"serial"`, `"country":"DE","serial"`, 1)))},
		{"duplicate key", replace(`"node":"de-fra-1"`, `"node":"evil","node":"de-fra-1"`)},
		{"key in other case", replace(`"node"`, `"Node"`)},
		{"escaped string", replace(`"DE"`, `"\u0044E"`)},
		{"number as float", replace(`"not_before":1767225600`, `"not_before":1767225600.0`)},
		{"number with exponent", replace(`"not_before":1767225600`, `"not_before":17672256e2`)},
		{"trailing data", sealRaw(enrollKey, certTag, []byte(good+" {}"))},
		{"array", sealRaw(enrollKey, certTag, []byte("["+good+"]"))},
		{"null", sealRaw(enrollKey, certTag, []byte("null"))},
		{"unknown key", field("zone", "a")},
		{"missing region", without("region")},
		{"missing serial", without("serial")},
		{"null node", field("node", nil)},
		{"bad node id", field("node", "de fra")},
		{"lower-case country", field("country", "de")},
		{"unknown country", field("country", "XX")},
		{"region of another country", field("region", "eu-west-3")},
		{"region in upper case", field("region", "EU-CENTRAL-1")},
		{"unknown region", field("region", "mars-1")},
		{"identity key not base64url", field("identity_key", "!!!!")},
		{"identity key 31 bytes", field("identity_key", b64.EncodeToString(make([]byte, 31)))},
		{"serial not hex", field("serial", strings.Repeat("g", 32))},
		{"enrollment key id short", field("enrollment_key", "abcd")},
		{"not-before zero", field("not_before", 0)},
		{"not-after past year 9999", field("not_after", int64(maxUnix)+1)},
		{"not-after before not-before", field("not_after", t0.Unix()-1)},
		{"time as string", field("not_before", "2026-01-01T00:00:00Z")},
	}
	for _, tc := range cases {
		if c, err := Parse(tc.data); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Parse = %+v, %v; want ErrMalformed", tc.name, c, err)
		}
		if c, err := Verify(pubOf(enrollKey), tc.data, t0); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Verify = %+v, %v; want ErrMalformed", tc.name, c, err)
		}
	}
}

func TestVerifyErrors(t *testing.T) {
	data := mustIssue(t, enrollKey, testCert())
	// Signed by another key but naming the enrollment key: only the
	// signature can tell.
	forged := sealRaw(otherKey, certTag, []byte(mustJSON(t, toWire(withKID(testCert(), enrollKey)))))
	cases := []struct {
		name string
		pub  ed25519.PublicKey
		data []byte
		now  time.Time
		want error
	}{
		{"another authority's certificate", pubOf(enrollKey), mustIssue(t, otherKey, testCert()), t0, ErrWrongKey},
		{"checked against another key", pubOf(otherKey), data, t0, ErrWrongKey},
		{"signed by another key", pubOf(enrollKey), forged, t0, ErrBadSignature},
		{"not yet valid", pubOf(enrollKey), data, t0.Add(-MaxClockSkew - time.Second), ErrNotYetValid},
		{"expired", pubOf(enrollKey), data, testCert().NotAfter.Add(time.Second), ErrExpired},
		{"malformed", pubOf(enrollKey), data[:len(data)-1], t0, ErrMalformed},
	}
	for _, tc := range cases {
		c, err := Verify(tc.pub, tc.data, tc.now)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %+v, %v; want %v", tc.name, c, err, tc.want)
		}
		if err != nil && !reflect.DeepEqual(c, Cert{}) {
			t.Errorf("%s: returned %+v with the error", tc.name, c)
		}
	}
	if _, err := Verify(pubOf(enrollKey)[:31], data, t0); err == nil {
		t.Error("short public key accepted")
	}
}

// TestTamperEveryByte flips each bit of every byte, drops every byte and
// cuts the text at every length: none of it may verify.
func TestTamperEveryByte(t *testing.T) {
	data := mustIssue(t, enrollKey, testCert())
	pub, now := pubOf(enrollKey), t0.Add(time.Hour)
	if _, err := Verify(pub, data, now); err != nil {
		t.Fatal(err)
	}
	for i := range data {
		for bit := range 8 {
			bad := bytes.Clone(data)
			bad[i] ^= 1 << bit
			if c, err := Verify(pub, bad, now); err == nil {
				t.Fatalf("byte %d bit %d flipped: verified %+v", i, bit, c)
			}
		}
		dropped := append(bytes.Clone(data[:i]), data[i+1:]...)
		if _, err := Verify(pub, dropped, now); err == nil {
			t.Fatalf("byte %d dropped: verified", i)
		}
		if _, err := Verify(pub, data[:i], now); err == nil {
			t.Fatalf("cut at %d: verified", i)
		}
	}
}

func TestValidityBoundaries(t *testing.T) {
	c := testCert()
	data := mustIssue(t, enrollKey, c)
	cases := []struct {
		now  time.Time
		want State
	}{
		{c.NotBefore.Add(-MaxClockSkew - time.Nanosecond), NotYetValid},
		{c.NotBefore.Add(-MaxClockSkew), Valid},
		{c.NotBefore, Valid},
		{c.NotAfter, Valid},
		{c.NotAfter.Add(time.Nanosecond), Expired},
	}
	for _, tc := range cases {
		_, err := Verify(pubOf(enrollKey), data, tc.now)
		if !errors.Is(err, tc.want.Err()) || (tc.want == Valid) != (err == nil) {
			t.Errorf("Verify at %v: %v, want %v", tc.now, err, tc.want)
		}
		if got := Status(withKID(c, enrollKey), Revocations{}, tc.now); got != tc.want {
			t.Errorf("Status at %v: %v, want %v", tc.now, got, tc.want)
		}
	}
}

func TestMatches(t *testing.T) {
	c := withKID(testCert(), enrollKey)
	key := []byte(c.IdentityKey)
	cases := []struct {
		name                string
		id, country, region string
		key                 []byte
		field               string
	}{
		{"all equal", "de-fra-1", "DE", "eu-central-1", key, ""},
		{"other id", "de-fra-2", "DE", "eu-central-1", key, "node"},
		{"id in other case", "DE-FRA-1", "DE", "eu-central-1", key, "node"},
		{"other country", "de-fra-1", "FR", "eu-central-1", key, "country"},
		{"country in lower case", "de-fra-1", "de", "eu-central-1", key, "country"},
		{"other region", "de-fra-1", "DE", "europe-west4", key, "region"},
		{"no region", "de-fra-1", "DE", "", key, "region"},
		{"other key", "de-fra-1", "DE", "eu-central-1", pubOf(otherKey), "identity_key"},
		{"no key", "de-fra-1", "DE", "eu-central-1", nil, "identity_key"},
		{"first difference named", "x", "FR", "", nil, "node"},
		{"then country", "de-fra-1", "FR", "", nil, "country"},
	}
	for _, tc := range cases {
		err := Matches(c, tc.id, tc.country, tc.region, tc.key)
		var m *MismatchError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.field != "" && (!errors.As(err, &m) || m.Field != tc.field):
			t.Errorf("%s: %v; want a mismatch of %s", tc.name, err, tc.field)
		}
	}
}

// TestFormatAsDocumented checks a certificate with nothing but the standard
// library, as the package doc tells a browser to, and pins the exact text so
// that a change of format cannot go unnoticed.
func TestFormatAsDocumented(t *testing.T) {
	data := string(mustIssue(t, enrollKey, testCert()))
	parts := strings.Split(data, ".")
	if len(parts) != 3 || parts[0] != "oakmeet-node-cert-v1" {
		t.Fatalf("parts %q", parts)
	}
	payload, sig := mustDecodeStd(t, parts[1]), mustDecodeStd(t, parts[2])
	msg := append([]byte("oakmeet-node-cert-v1\n"), payload...)
	if !ed25519.Verify(pubOf(enrollKey), msg, sig) {
		t.Fatal("signature does not verify over tag, line feed, payload")
	}
	wantPayload := `{"country":"DE","enrollment_key":"` + KeyID(pubOf(enrollKey)) + `",` +
		`"identity_key":"` + base64.RawURLEncoding.EncodeToString(pubOf(nodeKey)) + `",` +
		`"node":"de-fra-1","not_after":1775001600,"not_before":1767225600,` +
		`"region":"eu-central-1","serial":"0123456789abcdef0123456789abcdef"}`
	if string(payload) != wantPayload {
		t.Errorf("payload\n%s\nwant\n%s", payload, wantPayload)
	}
	if data != golden {
		t.Errorf("certificate text\n%s\nwant\n%s", data, golden)
	}
}

func TestKeyID(t *testing.T) {
	id := KeyID(pubOf(enrollKey))
	if !validHex(id, 16) || id == KeyID(pubOf(otherKey)) {
		t.Fatalf("key ids %s, %s", id, KeyID(pubOf(otherKey)))
	}
}

func TestNewSerial(t *testing.T) {
	a, err := NewSerial()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSerial()
	if !validHex(a, serialBytes) || a == b {
		t.Fatalf("serials %q, %q", a, b)
	}
	c := testCert()
	c.Serial = a
	if _, err := Issue(enrollKey, c); err != nil {
		t.Fatal(err)
	}
}

func mustDecodeStd(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const golden = "oakmeet-node-cert-v1.eyJjb3VudHJ5IjoiREUiLCJlbnJvbGxtZW50X2tleSI6IjZkM2ZiYmI3ODhjZTc0NDRhMzY0YTZmOWVlMWYyZDEwIiwiaWRlbnRpdHlfa2V5IjoiNHl3WXRETWpMQXV0VUtQNmhXWnpvOXEySkNLckx2a0VZdGdYRjIyVmlTTSIsIm5vZGUiOiJkZS1mcmEtMSIsIm5vdF9hZnRlciI6MTc3NTAwMTYwMCwibm90X2JlZm9yZSI6MTc2NzIyNTYwMCwicmVnaW9uIjoiZXUtY2VudHJhbC0xIiwic2VyaWFsIjoiMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYifQ.Y5fiUl88Snt7y4RsOoPvpTsZi-AZ0md2IXrfk9aUPFoYODq7swsF8HPLdutqyd1b6EyNHlDX_x4S07RaArVPBw"

// An SDP signature holds for exactly the SDP, session and key it was made
// for.
func TestSDPProof(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	otherPub, _, _ := ed25519.GenerateKey(nil)
	nonce := []byte("0123456789abcdef0123456789abcdef")
	sig := SignSDP(priv, "m1", "p1", nonce, "answer", "v=0\r\na=fingerprint:sha-256 AA\r\n")
	if err := VerifySDP(pub, sig, "m1", "p1", nonce, "answer", "v=0\r\na=fingerprint:sha-256 AA\r\n"); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"other key":         VerifySDP(otherPub, sig, "m1", "p1", nonce, "answer", "v=0\r\na=fingerprint:sha-256 AA\r\n"),
		"other fingerprint": VerifySDP(pub, sig, "m1", "p1", nonce, "answer", "v=0\r\na=fingerprint:sha-256 AB\r\n"),
		"other participant": VerifySDP(pub, sig, "m1", "p2", nonce, "answer", "v=0\r\na=fingerprint:sha-256 AA\r\n"),
		"other meeting":     VerifySDP(pub, sig, "m2", "p1", nonce, "answer", "v=0\r\na=fingerprint:sha-256 AA\r\n"),
		"other nonce":       VerifySDP(pub, sig, "m1", "p1", []byte("x"), "answer", "v=0\r\na=fingerprint:sha-256 AA\r\n"),
		"offer for answer":  VerifySDP(pub, sig, "m1", "p1", nonce, "offer", "v=0\r\na=fingerprint:sha-256 AA\r\n"),
		"no signature":      VerifySDP(pub, nil, "m1", "p1", nonce, "answer", "v=0\r\na=fingerprint:sha-256 AA\r\n"),
		"no key":            VerifySDP(nil, sig, "m1", "p1", nonce, "answer", "v=0\r\na=fingerprint:sha-256 AA\r\n"),
	} {
		if !errors.Is(err, ErrSDPProof) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
