package web_test

import (
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// sentJS resolves to the RTP payload bytes a session's publish connection
// has sent, all kinds together (-1 once it is closed).
const sentJS = `(async (s) => {
	if (!s?.pub || s.pub.connectionState === 'closed') return -1;
	let n = 0;
	(await s.pub.getStats()).forEach((r) => { if (r.type === 'outbound-rtp') n += r.bytesSent; });
	return n;
})`

// TestPageStopsSendingToANodeThePolicyRulesOut: given a newer host-signed
// policy that rules out its node (one the control plane never applied, so
// no move message comes), the page stops sending media to that node at
// once: from then until its self-move begins (SELF_MOVE_MS later) and
// after, not one more RTP payload byte leaves on the old publish
// connection; the new session on an allowed node sends.
func TestPageStopsSendingToANodeThePolicyRulesOut(t *testing.T) {
	needBrowser(t)
	c := testcluster.Start(t, policy.Policy{}, testcluster.World())
	host := newBrowser(t, "stopsend", browserOpts{})
	m := createInBrowser(t, c, host, "Stop sending", false)
	host.navigate(hostJoinURL(c, m, "Host", "DE"))
	host.waitJS(30*time.Second, "connected on the German node",
		`window.oakmeet?.call?.state === 'connected' && document.querySelector('[data-testid=node-country]')?.textContent === 'DE'`, `document.body.innerText`)
	host.waitJS(20*time.Second, "media sent to the German node",
		`(async () => { window.__old = window.oakmeet.call.session; return (await (`+sentJS+`)(window.__old)) > 2000; })()`,
		`(`+sentJS+`)(window.__old)`)

	if !evalJS[bool](host, hostPolicyJS(m.ID, `{ blocked_countries: ['DE'] }`)) {
		t.Fatal("the page did not take the host's statement")
	}
	// The senders have no track as soon as the statement is taken. What
	// was already encoded may still be on its way out, so the count is
	// settled once two reads 50 ms apart agree (the pacer has drained);
	// from then on it is read every 50 ms, through the self-move
	// (SELF_MOVE_MS later), until the old connection is closed: no read
	// may differ from the settled count. A closed connection sends
	// nothing, whenever during the move it closes.
	got := evalJS[[]float64](host, `(async () => {
		const old = window.__old;
		if (!old.sendingStopped) return [-2];
		await old.stopped;
		const sleep = () => new Promise((r) => setTimeout(r, 50));
		let prev = await (`+sentJS+`)(old), settled = -3, moveSeen = 0;
		const more = [];
		for (let i = 0; i < 600; i++) {
			await sleep();
			const now = await (`+sentJS+`)(old);
			if (now < 0) break;
			if (window.oakmeet.call.tracker.moving) moveSeen = 1;
			if (settled < 0) {
				if (now === prev) settled = now;
				prev = now;
				continue;
			}
			if (now !== settled) more.push(now);
		}
		return [settled, moveSeen, ...more];
	})()`)
	if len(got) < 2 || got[0] < 0 {
		t.Fatalf("the old session did not stop sending when the statement was taken, or never settled: %v", got)
	}
	if len(got) > 2 {
		t.Errorf("RTP bytes on the ruled-out node's connection: settled at %v after stopping, then %v (self-move seen while open: %v); want no more", got[0], got[2:], got[1] == 1)
	}
	host.waitJS(30*time.Second, "sending on an allowed node",
		`(async () => { const c = window.oakmeet.call; return c.state === 'connected' && c.session !== window.__old && c.self.node.country !== 'DE' && (await (`+sentJS+`)(c.session)) > 2000; })()`,
		`window.oakmeet.call.state + ' ' + window.oakmeet.call.self.node?.country`)
	host.checkConsole()
}
