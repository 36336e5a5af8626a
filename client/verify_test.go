package client_test

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/nodecert"
	"github.com/oakmeet/oakmeet/policy"
)

// pki is a deployment's enrollment key and a meeting's host key, as a
// client meets them: certificates from the one, a policy statement signed
// by the other.
type pki struct {
	enroll ed25519.PrivateKey
	host   ed25519.PrivateKey
	now    time.Time
}

func newPKI(t *testing.T) pki {
	t.Helper()
	_, enroll, _ := ed25519.GenerateKey(nil)
	host, err := hoststmt.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return pki{enroll: enroll, host: host, now: time.Now()}
}

// policy is the host's signed policy statement for p, naming the
// deployment's enrollment key.
func (k pki) policy(t *testing.T, seq uint64, p policy.Policy) *hoststmt.Statement {
	t.Helper()
	eff, err := policy.Combine(policy.Policy{}, p)
	if err != nil {
		t.Fatal(err)
	}
	st := hoststmt.NewPolicy(seq, eff, k.enroll.Public().(ed25519.PublicKey))
	if err := st.Sign(k.host); err != nil {
		t.Fatal(err)
	}
	return &st
}

// cert issues a certificate with signer for a node, valid from nb to na
// around k.now.
func (k pki) cert(t *testing.T, signer ed25519.PrivateKey, id, country, region string, nb, na time.Duration) string {
	t.Helper()
	_, identity, _ := ed25519.GenerateKey(nil)
	serial, _ := nodecert.NewSerial()
	c, err := nodecert.Issue(signer, nodecert.Cert{Serial: serial, NodeID: id, Country: country, Region: region,
		IdentityKey: identity.Public().(ed25519.PublicKey), NotBefore: k.now.Add(nb), NotAfter: k.now.Add(na)})
	if err != nil {
		t.Fatal(err)
	}
	return string(c)
}

func TestCheckNode(t *testing.T) {
	k := newPKI(t)
	_, stranger, _ := ed25519.GenerateKey(nil)
	open := k.policy(t, 1, policy.Policy{})
	noDE := k.policy(t, 2, policy.Policy{BlockedCountries: []string{"DE"}})
	noRegion := k.policy(t, 3, policy.Policy{BlockedRegions: []string{"eu-central-1"}})
	good := k.cert(t, k.enroll, "de-fra", "DE", "eu-central-1", -time.Minute, time.Hour)
	de := client.NodeInfo{ID: "de-fra", Country: "DE", Region: "eu-central-1", Cert: good}
	with := func(n client.NodeInfo, f func(*client.NodeInfo)) client.NodeInfo { f(&n); return n }

	vn, err := client.CheckNode(de, open, k.now)
	if err != nil {
		t.Fatalf("an enrolled node the policy allows: %v", err)
	}
	if vn.Cert.NodeID != "de-fra" || vn.Cert.Country != "DE" || len(vn.Cert.IdentityKey) != ed25519.PublicKeySize || vn.Text != good {
		t.Fatalf("verified %+v", vn)
	}

	for _, tc := range []struct {
		name   string
		node   client.NodeInfo
		policy *hoststmt.Statement
		code   string
		says   string // in the message
	}{
		{"no policy", de, nil, api.CodeNoHostPolicy, "de-fra"},
		{"no certificate", with(de, func(n *client.NodeInfo) { n.Cert = "" }), open, api.CodeNodeCertInvalid, "no certificate"},
		{"garbage certificate", with(de, func(n *client.NodeInfo) { n.Cert = "not a certificate" }), open, api.CodeNodeCertInvalid, "de-fra"},
		{"signed by another key", with(de, func(n *client.NodeInfo) {
			n.Cert = k.cert(t, stranger, "de-fra", "DE", "eu-central-1", -time.Minute, time.Hour)
		}), open, api.CodeNodeCertInvalid, "enrollment key"},
		{"expired", with(de, func(n *client.NodeInfo) {
			n.Cert = k.cert(t, k.enroll, "de-fra", "DE", "eu-central-1", -2*time.Hour, -time.Hour)
		}), open, api.CodeNodeCertInvalid, "expired"},
		{"not yet valid", with(de, func(n *client.NodeInfo) {
			n.Cert = k.cert(t, k.enroll, "de-fra", "DE", "eu-central-1", time.Hour, 2*time.Hour)
		}), open, api.CodeNodeCertInvalid, "not yet valid"},
		{"another node's certificate", with(de, func(n *client.NodeInfo) {
			n.Cert = k.cert(t, k.enroll, "de-ber", "DE", "eu-central-1", -time.Minute, time.Hour)
		}), open, api.CodeNodeCertInvalid, "de-ber"},
		{"the answer names another country", with(de, func(n *client.NodeInfo) { n.Country = "FR" }), open, api.CodeNodeCertInvalid, "country"},
		{"the answer names another region", with(de, func(n *client.NodeInfo) { n.Region = "" }), open, api.CodeNodeCertInvalid, "region"},
		{"blocked country", de, noDE, api.CodeNodeNotAllowed, "Germany (DE)"},
		{"blocked region", de, noRegion, api.CodeNodeNotAllowed, "eu-central-1"},
		// The checks run in order: a certificate nobody vouches for is
		// not believed about its country.
		{"blocked, and signed by another key", with(de, func(n *client.NodeInfo) {
			n.Cert = k.cert(t, stranger, "de-fra", "DE", "eu-central-1", -time.Minute, time.Hour)
		}), noDE, api.CodeNodeCertInvalid, "enrollment key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.CheckNode(tc.node, tc.policy, k.now)
			r, ok := client.AsRefusal(err)
			if !ok || r.Code != tc.code || r.Node != "de-fra" || !strings.Contains(r.Message, tc.says) {
				t.Fatalf("got %v, want %s naming de-fra and %q", err, tc.code, tc.says)
			}
			if !errors.Is(err, &client.RefusalError{Code: tc.code}) {
				t.Fatalf("errors.Is does not match the code %s", tc.code)
			}
			if tc.code == api.CodeNodeNotAllowed && r.Country != "DE" {
				t.Fatalf("refusal names country %q", r.Country)
			}
		})
	}
}

// A HostView gives its newest verified policy, or says why it has none.
func TestHostViewPolicy(t *testing.T) {
	k := newPKI(t)
	pub := k.host.Public().(ed25519.PublicKey)
	p1, p2 := k.policy(t, 1, policy.Policy{}), k.policy(t, 2, policy.Policy{BlockedCountries: []string{"DE"}})

	v := client.NewHostView(hoststmt.Fingerprint(pub))
	if _, err := v.Policy(); err == nil {
		t.Fatal("a policy before any join")
	}
	if _, err := v.Join(api.HostState{Key: pub, Statements: []hoststmt.Statement{*p1}}); err != nil {
		t.Fatal(err)
	}
	got, err := v.Policy()
	if err != nil || got.Seq != 1 || !v.Key().Equal(pub) {
		t.Fatalf("policy %+v, %v", got, err)
	}
	b, _ := p2.MarshalJSON()
	if _, err := v.Statement(b); err != nil {
		t.Fatal(err)
	}
	if got, _ := v.Policy(); got.Seq != 2 {
		t.Fatalf("newest policy seq %d", got.Seq)
	}

	// The control plane's own key, or none named in the link: no policy.
	_, other, _ := ed25519.GenerateKey(nil)
	v = client.NewHostView(hoststmt.Fingerprint(pub))
	_, _ = v.Join(api.HostState{Key: other.Public().(ed25519.PublicKey), Statements: []hoststmt.Statement{*p1}})
	if _, err := v.Policy(); err == nil || v.Key() != nil {
		t.Fatal("a policy under a key the link does not name")
	}
	v = client.NewHostView("")
	_, _ = v.Join(api.HostState{Key: pub, Statements: []hoststmt.Statement{*p1}})
	if _, err := v.Policy(); err == nil || !strings.Contains(err.Error(), "#h=") {
		t.Fatalf("no fingerprint: %v", err)
	}
}

// Another member's node, as its signed node message names it, is judged
// against this client's own host-signed policy.
func TestNodeStatusOf(t *testing.T) {
	k := newPKI(t)
	_, stranger, _ := ed25519.GenerateKey(nil)
	noDE := k.policy(t, 2, policy.Policy{BlockedCountries: []string{"DE"}})
	de := k.cert(t, k.enroll, "de-fra", "DE", "eu-central-1", -time.Minute, time.Hour)
	us := k.cert(t, k.enroll, "us-iad", "US", "us-east-1", -time.Minute, time.Hour)
	for _, tc := range []struct {
		name, cert string
		policy     *hoststmt.Statement
		want, node string
	}{
		{"allowed", us, noDE, client.NodeVerified, "us-iad"},
		{"blocked", de, noDE, client.NodeNotAllowed, "de-fra"},
		{"another key", k.cert(t, stranger, "us-iad", "US", "us-east-1", -time.Minute, time.Hour), noDE, client.NodeInvalid, ""},
		{"expired", k.cert(t, k.enroll, "us-iad", "US", "us-east-1", -2*time.Hour, -time.Hour), noDE, client.NodeInvalid, ""},
		{"garbage", "x", noDE, client.NodeInvalid, ""},
		{"no policy", us, nil, client.NodeInvalid, ""},
		{"no node message", "", noDE, client.NodeUnknown, ""},
	} {
		got := client.NodeStatusOf(tc.cert, tc.policy, k.now)
		if got.Status != tc.want || got.Cert.NodeID != tc.node || (tc.want != client.NodeVerified && tc.want != client.NodeUnknown && got.Reason == "") {
			t.Errorf("%s: %+v, want %s on %q", tc.name, got, tc.want, tc.node)
		}
	}
}
