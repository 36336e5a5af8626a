package web_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/adversary"
	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// The browser's own checks of where its media goes (issue 12), against a
// lying control plane: its store rewritten with its own NATS credentials,
// or its join answers edited by a front (package adversary).

// pageState is what a page shows, for a test that timed out on it: its
// call's state and refusals, any join error, and the start of its text.
const pageState = `JSON.stringify({state: window.oakmeet?.call?.state, refusals: window.oakmeet?.call?.refusals, ` +
	`error: document.querySelector('[data-testid=join-error]:not([hidden])')?.innerText, ` +
	`ended: document.querySelector('[data-testid=ended]')?.innerText, text: document.body.innerText.slice(0, 300)})`

// refusedJS is true once the page's call has refused node with code and a
// message naming mention.
func refusedJS(node, code, mention string) string {
	return fmt.Sprintf(`(window.oakmeet?.call?.refusals ?? []).some((r) => r.node === %s && r.code === %s && (r.message ?? '').includes(%s))`,
		jsString(node), jsString(code), jsString(mention))
}

// TestPageRefusesMisplacingControlPlane: the host blocked CN, RU and IN.
// With the control plane honest a page from China is placed in Germany
// and is in. With the meeting's stored policy rewritten behind the host's
// back, a page from China is placed on cn-pek: it refuses it before
// connecting (node_not_allowed_by_policy, naming CN), the refusal is
// audited and the page goes on to de-fra. Where the rewritten policy
// leaves only blocked nodes, the page refuses three in a row and says so,
// naming the code and the country; no blocked node ever sees a page
// connect. (Where the store still blocks RU and IN, the next nearest node
// the control plane offers is de-fra.)
func TestPageRefusesMisplacingControlPlane(t *testing.T) {
	needBrowser(t)
	ctx := context.Background()
	c := testcluster.Start(t, policy.Policy{}, nil)
	adversary.StartNode(t, c, adversary.NodeSpec{ID: "de-fra", Country: "DE", Region: "eu-central-1"})
	var blocked []*adversary.Node
	for _, n := range []adversary.NodeSpec{
		{ID: "cn-pek", Country: "CN", Region: "cn-north-1"},
		{ID: "ru-mow", Country: "RU", Region: "ru-central1"},
		{ID: "in-bom", Country: "IN", Region: "ap-south-1"},
	} {
		blocked = append(blocked, adversary.StartNode(t, c, n))
	}
	c.WaitHealthy(4)
	nc, err := c.NATS().ConnectControl("rewriter")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	st, err := adversary.OpenStore(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	hostBlocks := policy.Policy{BlockedCountries: []string{"CN", "IN", "RU"}}
	pages := openTabs(t, browserOpts{}, "honest", "misplaced", "cornered")
	honest, misplaced, cornered := pages[0], pages[1], pages[2]

	m := c.CreateMeeting(hostBlocks)
	honest.navigate(joinURL(c, m, "Honest", "CN"))
	honest.waitJS(30*time.Second, "the honest placement, in Germany",
		`window.oakmeet?.call?.state === 'connected' && document.querySelector('[data-testid=node-country]')?.textContent === 'DE'`, `document.body.innerText`)

	if err := st.RewritePolicy(ctx, m.ID, adversary.Unblock("CN")); err != nil {
		t.Fatal(err)
	}
	misplaced.navigate(joinURL(c, m, "Misplaced", "CN"))
	misplaced.waitJS(30*time.Second, "cn-pek refused, naming CN", refusedJS("cn-pek", api.CodeNodeNotAllowed, "CN"),
		pageState)
	misplaced.waitJS(30*time.Second, "in on de-fra after the refusal",
		`window.oakmeet?.call?.state === 'connected' && document.querySelector('[data-testid=node-country]')?.textContent === 'DE'`, `document.body.innerText`)
	e := adversary.WaitRefused(t, c, m.ID, "cn-pek", api.CodeNodeNotAllowed, 20*time.Second)
	if e.NodeCountry != "CN" || !strings.Contains(e.Reason, "CN") {
		t.Errorf("audit entry %+v", e)
	}

	// All three blocked nodes unblocked in the store, each nearer China
	// than Germany: the control plane offers only those.
	m2 := c.CreateMeeting(hostBlocks)
	if err := st.RewritePolicy(ctx, m2.ID, adversary.Unblock("CN", "IN", "RU")); err != nil {
		t.Fatal(err)
	}
	cornered.navigate(joinURL(c, m2, "Cornered", "CN"))
	shown := cornered.waitRefusal(api.CodeNodeNotAllowed, 60*time.Second)
	named := false
	for _, country := range []string{"CN", "RU", "IN"} {
		named = named || strings.Contains(shown, "is in "+country)
	}
	if page := cornered.text("[data-testid=join-error]"); !strings.Contains(page, api.CodeNodeNotAllowed) || !named {
		t.Errorf("the page shows %q (refusal %q): want the code and the refused node's country", page, shown)
	}
	// The third refusal ends the page's tries: no join carries it, so
	// the first two are audited.
	if n := len(adversary.RefusedEntries(t, c, m2.ID)); n < 2 {
		t.Errorf("%d refusals audited, want 2", n)
	}
	for _, n := range blocked {
		for _, e := range n.Log.Find(adversary.Match("participant connected")) {
			t.Errorf("blocked node %s: %s", n.ID, e)
		}
	}
}

// TestPageRefusesSelfSignedNodeCert: a front before the control plane
// hands the page a self-signed certificate for de-fra. The page refuses
// the node (node_cert_invalid), the refusal is audited, and the page goes
// on to fr-par, whose certificate is the real one.
func TestPageRefusesSelfSignedNodeCert(t *testing.T) {
	needBrowser(t)
	c := testcluster.Start(t, policy.Policy{}, []testcluster.NodeSpec{
		{ID: "de-fra", Country: "DE", Region: "eu-central-1"},
		{ID: "fr-par", Country: "FR", Region: "eu-west-3"},
	})
	f, err := adversary.StartFront(c.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.SetJoinEdit(adversary.OnNode("de-fra", func(jr *api.JoinResponse) {
		s, err := adversary.SelfSigned(jr.Node.Cert)
		if err != nil {
			t.Error(err)
			return
		}
		jr.Node.Cert = s
	}))
	b := newBrowser(t, "page", browserOpts{})
	m := c.CreateMeeting(policy.Policy{})
	b.navigate(f.URL + strings.TrimPrefix(joinURL(c, m, "Page", "DE"), c.URL))
	b.waitJS(30*time.Second, "de-fra refused", refusedJS("de-fra", api.CodeNodeCertInvalid, ""),
		pageState)
	b.waitJS(30*time.Second, "in on fr-par",
		`window.oakmeet?.call?.state === 'connected' && document.querySelector('[data-testid=node-country]')?.textContent === 'FR'`, `document.body.innerText`)
	adversary.WaitRefused(t, c, m.ID, "de-fra", api.CodeNodeCertInvalid, 20*time.Second)
	if len(f.Edited()) == 0 {
		t.Fatal("the front lied to nobody: the test tested nothing")
	}
}

// TestPageIgnoresPolicyNotSignedByTheHost: the stored policy is rewritten
// to allow CN and a front adds to every join answer a newer policy
// statement allowing everything, signed by a key that is not the host's.
// The page keeps to the host's own statement: it refuses cn-pek
// (node_not_allowed_by_policy, naming CN) and goes on to de-fra.
func TestPageIgnoresPolicyNotSignedByTheHost(t *testing.T) {
	needBrowser(t)
	ctx := context.Background()
	c := testcluster.Start(t, policy.Policy{}, []testcluster.NodeSpec{
		{ID: "de-fra", Country: "DE", Region: "eu-central-1"},
		{ID: "cn-pek", Country: "CN", Region: "cn-north-1"},
	})
	m := c.CreateMeeting(policy.Policy{BlockedCountries: []string{"CN"}})
	nc, err := c.NATS().ConnectControl("rewriter")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	st, err := adversary.OpenStore(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RewritePolicy(ctx, m.ID, adversary.Unblock("CN")); err != nil {
		t.Fatal(err)
	}
	_, forger, _ := ed25519.GenerateKey(nil)
	open, err := policy.Combine(policy.Policy{}, policy.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := adversary.StartFront(c.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.SetJoinEdit(func(_ string, jr *api.JoinResponse) {
		var seq uint64
		var enroll ed25519.PublicKey
		for _, s := range jr.Host.Statements {
			if s.Kind == hoststmt.KindPolicy {
				seq, enroll = s.Seq, s.EnrollmentKey
			}
		}
		s := hoststmt.NewPolicy(seq+1, open, enroll)
		if err := s.Sign(forger); err != nil {
			t.Error(err)
			return
		}
		jr.Host.Statements = append(jr.Host.Statements, s)
		jr.Host.PolicyHash = open.Hash()
	})
	b := newBrowser(t, "page", browserOpts{})
	b.navigate(f.URL + strings.TrimPrefix(joinURL(c, m, "Page", "CN"), c.URL))
	b.waitJS(30*time.Second, "cn-pek refused, naming CN", refusedJS("cn-pek", api.CodeNodeNotAllowed, "CN"), pageState)
	b.waitJS(30*time.Second, "in on de-fra",
		`window.oakmeet?.call?.state === 'connected' && document.querySelector('[data-testid=node-country]')?.textContent === 'DE'`, pageState)
	adversary.WaitRefused(t, c, m.ID, "cn-pek", api.CodeNodeNotAllowed, 20*time.Second)
	if len(f.Edited()) == 0 {
		t.Fatal("the front lied to nobody: the test tested nothing")
	}
}
