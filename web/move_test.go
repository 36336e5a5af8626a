package web_test

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// TestHostPolicyChangeMovesPage: the host, in the meeting, rules out the
// country of its own node with the policy editor; the control plane asks
// the page to move, the page joins again (replacing its old participant),
// switches to an allowed node once the new connection carries media, and
// its routing panel shows the new country. A guest on the same node moves
// too; afterwards the two play each other's video again under a new key.
func TestHostPolicyChangeMovesPage(t *testing.T) {
	needBrowser(t)
	c := testcluster.Start(t, policy.Policy{}, testcluster.World())
	pages := openTabs(t, browserOpts{}, "host", "guest")
	host, guest := pages[0], pages[1]
	// The host's page makes the meeting, and so holds its host key: the
	// policy change is a statement signed with it.
	m := createInBrowser(t, c, host, "Policy change", false)
	host.navigate(hostJoinURL(c, m, "Host", "DE"))
	guest.navigate(joinURL(c, m, "Guest", "DE"))
	for _, b := range []*browser{host, guest} {
		b.waitJS(20*time.Second, "placed on the German node", `document.querySelector('[data-testid=node-country]')?.textContent === 'DE'`, `document.body.innerText`)
	}
	waitVideosAdvancing(1, 30*time.Second, host, guest)
	codeBefore := host.waitCode(2, 20*time.Second)
	before := evalJS[string](host, `window.oakmeet.call.self.id`)

	if err := chromedp.Do(host.ctx,
		chromedp.Click(chromedp.CSS(`[data-testid=tab-routing]`)),
		chromedp.SendKeys(chromedp.CSS(`.side [data-testid=block-input]`), "Germany"+kb.Enter),
	); err != nil {
		t.Fatalf("edit policy: %v", err)
	}
	// The panel's lines above the button (the audit log's status among
	// them) may change height while the click is on its way; as a person
	// would, the host clicks again if the button said nothing.
	applied := false
	for try := 0; try < 3 && !applied; try++ {
		if err := chromedp.Do(host.ctx, chromedp.Click(chromedp.CSS(`.side [data-testid=apply-policy]`))); err != nil {
			t.Fatalf("apply policy: %v", err)
		}
		deadline := time.Now().Add(2 * time.Second)
		for !applied && time.Now().Before(deadline) {
			applied = evalJS[string](host, `document.querySelector('.side [data-testid=policy-status]')?.textContent ?? ''`) != ""
			if !applied {
				time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
			}
		}
	}
	if !applied {
		t.Fatal("the apply button did not take the click")
	}
	// The move message comes from the node; without it the control plane
	// disconnects the page, which is the failure this test is for.
	host.waitJS(30*time.Second, "a move or the end",
		`window.oakmeet.call.movesAsked > 0 || window.oakmeet.call.state === 'ended'`, `document.body.innerText`)
	if evalJS[int](host, `window.oakmeet.call.movesAsked ?? 0`) == 0 {
		t.Fatalf("the node sent no move message; the page was disconnected: %q",
			evalJS[string](host, `window.oakmeet.call.reason`))
	}
	for _, b := range []*browser{host, guest} {
		b.waitJS(30*time.Second, "moved off the German node",
			`((c) => c !== '' && c !== 'DE')(document.querySelector('[data-testid=node-country]')?.textContent ?? '')`,
			`document.querySelector('[data-testid=node-country]')?.textContent + ' ' + document.querySelector('[data-testid=status]')?.textContent + ' ' + document.querySelector('[data-testid=policy-status]')?.textContent + ' ' + document.body.innerText`)
	}
	after := evalJS[string](host, `window.oakmeet.call.self.id`)
	if after == before {
		t.Errorf("participant id unchanged after the move: %s", after)
	}
	country := host.text("[data-testid=node-country]")

	// The old participants leave as their connections close (make before
	// break), which the control plane hears of from the node: routing
	// shows the moved page, and then nobody on a German node.
	testcluster.WaitFor(t, 10*time.Second, "routing to show the moved page and nobody left on a German node", func() bool {
		r, err := c.API.Routing(context.Background(), m.ID)
		if err != nil {
			return false
		}
		moved, german := false, false
		for _, p := range r.Participants {
			moved = moved || p.ID == after && p.Node.Country == country
			german = german || p.Node.Country == "DE"
		}
		return moved && !german
	})
	if code := waitTogether(t, host, guest); code == codeBefore {
		t.Errorf("security code %q unchanged by the move", code)
	}
	for _, b := range []*browser{host, guest} {
		if s := b.decryptStats(); s.Failures != 0 {
			t.Errorf("%s: %d decryption failures:%s", b.name, s.Failures, s.Detail)
		}
		if st := evalJS[string](b, `window.oakmeet.call.state`); st != "connected" {
			t.Errorf("%s: state %q after the move", b.name, st)
		}
		b.checkConsole()
	}
}

// TestMoveMessageMakeBeforeBreak drives the client side of a move on its
// own: the page's session is handed a move message as the node would send
// it. The page joins again naming the participant it replaces (the control
// plane places it off the old node), connects to the new node, switches
// once the new connection carries media, and closes the old one.
func TestMoveMessageMakeBeforeBreak(t *testing.T) {
	c, m := startMeeting(t)
	page := openPage(t, "page", joinURL(c, m, "Mover", "DE"))
	page.waitJS(20*time.Second, "connected on the German node",
		`window.oakmeet?.call?.state === 'connected' && document.querySelector('[data-testid=node-country]')?.textContent === 'DE'`, `document.body.innerText`)
	page.waitCode(1, 20*time.Second)
	before := evalJS[string](page, `window.oakmeet.call.self.id`)
	evalJS[bool](page, `window.oakmeet.call.session.handle({v: 1, type: 'move', reason: 'policy_change'}), true`)
	page.waitJS(30*time.Second, "moved to another node",
		`window.oakmeet.call.state === 'connected' && window.oakmeet.call.self.id !== `+jsString(before)+` && document.querySelector('[data-testid=node-country]')?.textContent !== 'DE'`,
		`window.oakmeet.call.state + ' ' + document.querySelector('[data-testid=node-country]')?.textContent`)
	after := evalJS[string](page, `window.oakmeet.call.self.id`)
	var r api.Routing
	testcluster.WaitFor(t, 15*time.Second, "only the new participant left in the meeting", func() bool {
		var err error
		if r, err = c.API.Routing(context.Background(), m.ID); err != nil {
			return false
		}
		return len(r.Participants) == 1 && r.Participants[0].ID == after
	})
	page.waitCode(1, 20*time.Second)
	page.checkConsole()
}
