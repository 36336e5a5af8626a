package web_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// checksJS is the routing panel's "checked by your browser" list as
// "status country" per person, sorted.
const checksJS = `[...document.querySelectorAll('[data-testid=verified-nodes] li')].map((li) => li.dataset.status + ' ' + (li.querySelector('[data-testid=verified-country]')?.textContent ?? '')).sort().join(', ')`

// TestRoutingPanelShowsVerifiedNodes: with an honest control plane, each
// page's routing panel marks every participant's node, its own included,
// "verified by your browser": the certificate each page signed in its e2ee
// node message verifies with the enrollment key of the host-signed policy
// and the policy allows its country. A participant whose signed node
// message names a node in a country the host's policy blocks is flagged in
// red, naming the country; one naming a certificate that does not verify
// is shown as invalid. A Go bot's node message verifies in the page too.
func TestRoutingPanelShowsVerifiedNodes(t *testing.T) {
	needBrowser(t)
	c := testcluster.Start(t, policy.Policy{}, testcluster.World())
	m := c.CreateMeeting(policy.Policy{BlockedCountries: []string{"CN"}})
	pages := openPages(t, "ann", joinURL(c, m, "Ann", "DE"), "bob", joinURL(c, m, "Bob", "US"))
	ann, bob := pages[0], pages[1]
	waitTogether(t, ann, bob)
	for _, b := range pages {
		b.click("the routing tab", `[data-testid=tab-routing]`)
	}
	ann.waitJS(20*time.Second, "both nodes verified on Ann's page", checksJS+` === 'verified DE, verified US'`, checksJS)
	bob.waitJS(20*time.Second, "both nodes verified on Bob's page", checksJS+` === 'verified DE, verified US'`, checksJS)
	// A Go bot's signed node message verifies in the page as a page's does.
	<-runBot(t, c, m, "Bot", "JP").ready
	ann.waitJS(30*time.Second, "the bot's node verified on Ann's page", checksJS+` === 'verified DE, verified JP, verified US'`, checksJS)
	for _, b := range pages {
		b.waitJS(10*time.Second, "its own node verified", `((e) => e?.dataset.status === 'verified' && e.textContent.includes('verified by your browser'))(document.querySelector('[data-testid=my-node-check]'))`, `document.querySelector('[data-testid=routing-panel]').innerText`)
		if got := b.text(`[data-testid=verified-nodes] li.me`); !strings.Contains(got, "verified by your browser") {
			t.Errorf("%s: own entry %q", b.name, got)
		}
	}

	// Bob's page signs a node message naming a node in China, certified by
	// the deployment: Ann's page flags it.
	bobID := evalJS[string](bob, `window.oakmeet.call.self.id`)
	_, cnCert := c.Enroll("cn-sha", "CN", "", time.Hour)
	sendNode := func(cert string) {
		evalJS[bool](bob, `(async () => { const call = window.oakmeet.call; await call.member.setNodeCert(`+jsString(cert)+`);
			call.send(call.session, call.member.withNode([call.member.announce()])); return true; })()`)
	}
	sendNode(cnCert)
	bobEntry := fmt.Sprintf(`document.querySelector('[data-testid=verified-nodes] li[data-participant=%q]')`, bobID)
	ann.waitJS(20*time.Second, "Bob's node flagged as not allowed",
		`((li) => li?.dataset.status === 'not_allowed' && li.querySelector('.mark-not_allowed')?.textContent.includes('China (CN)'))(`+bobEntry+`)`,
		checksJS+` + ' ' + document.querySelector('[data-testid=verified-nodes]').innerText`)
	// In red.
	if color := evalJS[string](ann, `getComputedStyle(`+bobEntry+`.querySelector('.mark-not_allowed')).color`); color != "rgb(255, 180, 171)" {
		t.Errorf("not-allowed mark in %s, want the red of the stylesheet", color)
	}
	// Apart from what the server reports: it still says the United States.
	if got := ann.text(fmt.Sprintf(`[data-testid=routes] li[data-participant=%q] [data-testid=participant-node-country]`, bobID)); got != "US" {
		t.Errorf("the server's report of Bob's node %q, want US", got)
	}

	sendNode("oakmeet-node-cert-v1.e30.AAAA")
	ann.waitJS(20*time.Second, "Bob's certificate shown invalid",
		`((li) => li?.dataset.status === 'invalid' && li.textContent.includes('certificate invalid'))(`+bobEntry+`)`, checksJS)
	for _, b := range pages {
		b.checkConsole()
	}
}

// hostPolicyJS signs, in the host's page (which holds the meeting's host
// key), a policy statement for the policy given as JSON and hands it to the
// page's call alone, as if the host had changed the policy and the control
// plane had not followed: the page must act on the host's word by itself.
func hostPolicyJS(meeting, policyJSON string) string {
	return `(async () => {
		const hs = await import('/js/hoststmt.js');
		const hc = await import('/js/hostcontrol.js');
		const { api } = await import('/js/api.js');
		const policy = ` + policyJSON + `;
		const key = await hs.loadHostKey(` + jsString(meeting) + `);
		const st = await hc.signPolicy(key, await api.preview(policy), policy, window.oakmeet.call.host.policy.enrollmentKey);
		await window.oakmeet.call.host.receive(st);
		return window.oakmeet.call.host.policy.seq === st.seq;
	})()`
}

// TestPageRefusesNodeTheHostPolicyRulesOut: a page checks its node against
// the host-signed policy by itself. Given a newer host-signed policy that
// blocks its node's country (which the control plane never applied), it
// moves off by itself, telling the control plane why (audited as
// node_refused); placed there again, it refuses the node before
// connecting and asks for another; when every node it is given is ruled
// out it gives up after three refusals, with a page naming the code and
// the node.
func TestPageRefusesNodeTheHostPolicyRulesOut(t *testing.T) {
	needBrowser(t)
	c := testcluster.Start(t, policy.Policy{}, testcluster.World())
	host := newBrowser(t, "host", browserOpts{})
	m := createInBrowser(t, c, host, "Refusals", false)
	host.navigate(hostJoinURL(c, m, "Host", "DE"))
	host.waitJS(30*time.Second, "connected on the German node",
		`window.oakmeet?.call?.state === 'connected' && document.querySelector('[data-testid=node-country]')?.textContent === 'DE'`, `document.body.innerText`)
	first := evalJS[string](host, `window.oakmeet.call.self.id`)
	german := evalJS[string](host, `window.oakmeet.call.self.node.id`)

	// The host's newer policy blocks Germany: the page moves by itself.
	if !evalJS[bool](host, hostPolicyJS(m.ID, `{ blocked_countries: ['DE'] }`)) {
		t.Fatal("the page did not take the host's statement")
	}
	host.waitJS(30*time.Second, "moved off the German node by itself",
		`((c) => c.state === 'connected' && c.self.id !== `+jsString(first)+` && c.self.node.country !== 'DE')(window.oakmeet.call)`,
		`window.oakmeet.call.state + ' ' + JSON.stringify(window.oakmeet.call.refusals)`)
	refusals := func() []api.NodeRefusal {
		var out []api.NodeRefusal
		n := evalJS[int](host, `window.oakmeet.call.refusals.length`)
		for i := range n {
			out = append(out, api.NodeRefusal{Code: evalJS[string](host, fmt.Sprintf(`window.oakmeet.call.refusals[%d].code + ' ' + window.oakmeet.call.refusals[%d].node`, i, i))})
		}
		return out
	}
	if r := refusals(); len(r) != 1 || r[0].Code != api.CodeNodeNotAllowed+" "+german {
		t.Fatalf("refusals %v, want one of %s", r, german)
	}
	waitRefusalAudited := func(participant string) {
		t.Helper()
		testcluster.WaitFor(t, 10*time.Second, "the refusal of "+participant+" audited", func() bool {
			a, err := c.API.Audit(context.Background(), m.ID)
			if err != nil {
				return false
			}
			for _, e := range a.Entries {
				if e.Kind == audit.KindNodeRefused && e.Participant == participant && e.Node == german && e.NodeCountry == "DE" &&
					strings.HasPrefix(e.Reason, api.CodeNodeNotAllowed+":") && strings.Contains(e.Reason, german) {
					return true
				}
			}
			return false
		})
	}
	waitRefusalAudited(first)

	// Asked to move, the control plane (whose policy still allows Germany)
	// places the page on the German node again: the page refuses it before
	// connecting and is placed elsewhere.
	second := evalJS[string](host, `window.oakmeet.call.self.id`)
	evalJS[bool](host, `window.oakmeet.call.session.handle({v: 1, type: 'move', reason: 'policy_change'}), true`)
	host.waitJS(30*time.Second, "moved again",
		`((c) => c.state === 'connected' && c.self.id !== `+jsString(second)+`)(window.oakmeet.call)`, `window.oakmeet.call.state`)
	if got := host.text("[data-testid=node-country]"); got == "DE" {
		t.Errorf("the page is on a German node after the host blocked Germany")
	}
	r := refusals()
	for _, x := range r {
		if x.Code != api.CodeNodeNotAllowed+" "+german {
			t.Errorf("refusal %q, want only %s refused", x.Code, german)
		}
	}
	if len(r) == 2 {
		// The refused participant never reached its node: the control
		// plane audits the refusal and the node never saw it.
		refused := evalJS[string](host, `window.oakmeet.call.rejoinSecrets && [...window.oakmeet.call.rejoinSecrets.keys()].at(-2)`)
		waitRefusalAudited(refused)
	} else if len(r) != 1 {
		t.Errorf("%d refusals", len(r))
	}

	// A host policy allowing only France, where no node runs: every node
	// is refused, and after three the page says so, naming code and node.
	if !evalJS[bool](host, hostPolicyJS(m.ID, `{ allowed_countries: ['FR'] }`)) {
		t.Fatal("the page did not take the host's second statement")
	}
	host.waitJS(40*time.Second, "the page giving up",
		`((e) => e?.dataset.code === 'node_not_allowed_by_policy')(document.querySelector('[data-testid=ended]'))`,
		`((c) => c.state + ' ' + JSON.stringify(c.refusals.map((r) => r.node)) + ' timer ' + String(c.selfMoveTimer) + ' rules ' + JSON.stringify(c.host.policy.rules) + ' on ' + c.session?.nodeCert?.country + ' moving ' + !!c.tracker.moving + ' mph ' + c.member.policyHash.slice(0,8) + ' hph ' + c.host.policyHash.slice(0,8) + ' sph ' + c.session.policyHash?.slice(0,8))(window.oakmeet.call)`)
	got := host.text("[data-testid=refusal-code]")
	if !strings.HasPrefix(got, "node_not_allowed_by_policy · media server ") {
		t.Errorf("refusal line %q", got)
	}
	if reason := host.text("[data-testid=ended-reason]"); !strings.Contains(reason, "which the host's") {
		t.Errorf("ended reason %q does not say why", reason)
	}
	host.checkConsole()
}

// tamperSigs is a page script that sits between the page and the node as
// a machine relaying the signaling would: it alters the node's signature
// on every offer and answer, so the node cannot prove it holds its
// certified key.
const tamperSigs = `(() => {
	const Native = window.WebSocket;
	window.WebSocket = class extends Native {
		set onmessage(fn) {
			super.onmessage = (ev) => {
				let data = ev.data;
				try {
					const m = JSON.parse(data);
					if ((m.type === 'answer' || m.type === 'offer') && m.sig) {
						const b = atob(m.sig);
						m.sig = btoa(String.fromCharCode(b.charCodeAt(0) ^ 1) + b.slice(1));
						data = JSON.stringify(m);
					}
				} catch {}
				fn.call(this, new MessageEvent('message', { data }));
			};
		}
		get onmessage() { return super.onmessage; }
	};
})();`

// TestPageRefusesNodeThatCannotProveItsKey: the node's SDP signatures
// reach the page altered; the page never sets such a description, refuses
// the node (node_proof_invalid, reported and audited), and after three
// such nodes says so, naming the code and the node.
func TestPageRefusesNodeThatCannotProveItsKey(t *testing.T) {
	c, m := startMeeting(t)
	b := newBrowser(t, "tampered", browserOpts{})
	if _, err := chromedp.Call(b.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: tamperSigs}); err != nil {
		t.Fatal(err)
	}
	b.navigate(joinURL(c, m, "Mallory", "DE"))
	b.waitJS(40*time.Second, "the page giving up",
		`((e) => e?.dataset.code === 'node_proof_invalid')(document.querySelector('[data-testid=ended]'))`, `document.body.innerText`)
	if got := b.text("[data-testid=refusal-code]"); !strings.HasPrefix(got, "node_proof_invalid · media server ") {
		t.Errorf("refusal line %q", got)
	}
	if n := evalJS[int](b, `window.oakmeet.call.refusals.filter((r) => r.code === 'node_proof_invalid').length`); n != 3 {
		t.Errorf("%d proof refusals, want 3", n)
	}
	// No publish connection ever got the node's answer.
	if n := evalJS[int](b, `window.oakmeet.call.refusals.length`); n != 3 {
		t.Errorf("%d refusals", n)
	}
	testcluster.WaitFor(t, 10*time.Second, "the refusals audited", func() bool {
		a, err := c.API.Audit(context.Background(), m.ID)
		if err != nil {
			return false
		}
		n := 0
		for _, e := range a.Entries {
			if e.Kind == audit.KindNodeRefused && strings.HasPrefix(e.Reason, api.CodeNodeProofInvalid+":") {
				n++
			}
		}
		// The third refusal ends the call: it is not reported in a join.
		return n >= 2
	})
	b.checkConsole()
}

// tamperCert is a page script that alters the node certificate in every
// join answer the page gets, as a server handing out a certificate the
// enrollment authority did not sign would, and counts the WebSockets the
// page opens.
const tamperCert = `(() => {
	window.__sockets = 0;
	const Native = window.WebSocket;
	window.WebSocket = class extends Native {
		constructor(...args) { super(...args); window.__sockets++; }
	};
	const native = window.fetch;
	window.fetch = async (...args) => {
		const resp = await native(...args);
		if (!String(args[0]).endsWith('/join') || !resp.ok) return resp;
		const body = await resp.json();
		if (body.node?.cert) {
			const parts = body.node.cert.split('.');
			parts[2] = (parts[2][0] === 'A' ? 'B' : 'A') + parts[2].slice(1);
			body.node.cert = parts.join('.');
		}
		return new Response(JSON.stringify(body), { status: resp.status, headers: resp.headers });
	};
})();`

// TestPageRefusesNodeWithoutAValidCertificate: the join answers carry
// node certificates whose signature is not the enrollment key's; the page
// never connects to those nodes (node_cert_invalid) and after three says
// so on the join page, naming the code and the node.
func TestPageRefusesNodeWithoutAValidCertificate(t *testing.T) {
	c, m := startMeeting(t)
	b := newBrowser(t, "badcert", browserOpts{})
	if _, err := chromedp.Call(b.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: tamperCert}); err != nil {
		t.Fatal(err)
	}
	b.navigate(joinURL(c, m, "Mallory", "DE"))
	b.waitJS(40*time.Second, "the join refused",
		`((e) => e && !e.hidden && e.dataset.code === 'node_cert_invalid' && e.dataset.node !== '')(document.querySelector('[data-testid=join-error]'))`, `document.body.innerText`)
	if got := b.text("[data-testid=refusal-code]"); !strings.HasPrefix(got, "node_cert_invalid · media server ") {
		t.Errorf("refusal line %q", got)
	}
	if n := evalJS[int](b, `window.__sockets`); n != 0 {
		t.Errorf("the page opened %d connections to nodes it refused", n)
	}
	// The refusals the page reported in its next joins are audited.
	testcluster.WaitFor(t, 10*time.Second, "the refusals audited", func() bool {
		a, err := c.API.Audit(context.Background(), m.ID)
		if err != nil {
			return false
		}
		n := 0
		for _, e := range a.Entries {
			if e.Kind == audit.KindNodeRefused && strings.HasPrefix(e.Reason, api.CodeNodeCertInvalid+":") {
				n++
			}
		}
		return n == 2
	})
	b.checkConsole()
}
