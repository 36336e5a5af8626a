package web_test

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/control"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// TestMoveAnswered429AsksAgain: the page's move meets a 429 (its
// address's join bucket is empty, as in a mass move from behind one
// address); it asks again after the Retry-After and moves, rather than
// ending the call.
func TestMoveAnswered429AsksAgain(t *testing.T) {
	needBrowser(t)
	// One join every 2 s from an address.
	c := testcluster.Start(t, policy.Policy{}, testcluster.World(),
		testcluster.WithLimits(control.Limits{Join: control.Rate{PerMinute: 30, Burst: 1}}))
	m := c.CreateMeeting(policy.Policy{})
	page := openPage(t, "page", joinURL(c, m, "Mover", "DE"))
	page.waitJS(20*time.Second, "connected on the German node",
		`window.oakmeet?.call?.state === 'connected' && document.querySelector('[data-testid=node-country]')?.textContent === 'DE'`, `document.body.innerText`)
	before := evalJS[string](page, `window.oakmeet.call.self.id`)
	// Empty the bucket the page's joins count against (it answers
	// before reading the body), then ask the page to move.
	joinPath := c.URL + api.MeetingPath(m.ID, "join")
	testcluster.WaitFor(t, 10*time.Second, "the join bucket empty", func() bool {
		resp, err := http.Post(joinPath, "application/json", bytes.NewReader(nil))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusTooManyRequests
	})
	evalJS[bool](page, `window.oakmeet.call.session.handle({v: 1, type: 'move', reason: 'policy_change'}), true`)
	page.waitJS(30*time.Second, "moved to another node",
		`window.oakmeet.call.state === 'connected' && window.oakmeet.call.self.id !== `+jsString(before)+` && document.querySelector('[data-testid=node-country]')?.textContent !== 'DE'`,
		`window.oakmeet.call.state + ' ' + window.oakmeet.call.reason + ' ' + document.querySelector('[data-testid=node-country]')?.textContent`)
	if n := evalJS[int](page, `window.oakmeet.call.rateLimitedAsks ?? 0`); n < 1 {
		t.Fatalf("the move met no 429 (%d): the bucket was not empty", n)
	}
	page.checkConsole(http.StatusTooManyRequests)
}
