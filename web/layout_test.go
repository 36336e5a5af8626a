package web_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// flowingVideoJS lists the remote video tracks whose received bytes grow
// over one second: what the page really pulls.
const flowingVideoJS = `(async () => {
  const pc = window.oakmeet.call.session.sub;
  const sample = async () => { const m = {}; (await pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') m[r.trackIdentifier] = r.bytesReceived; }); return m; };
  const a = await sample();
  await new Promise((r) => setTimeout(r, 1000));
  const b = await sample();
  return JSON.stringify(Object.keys(b).filter((id) => b[id] > (a[id] ?? 0)));
})()`

// TestTwelvePeopleSubscribeOnlyVisible: in a meeting of twelve, a page of
// phone size shows the speaker and a page of three (of four pages); it
// pauses every other camera, pulls at most those four, and plays the next
// page's after page-next.
func TestTwelvePeopleSubscribeOnlyVisible(t *testing.T) {
	c, m := startMeeting(t)
	ann := newBrowser(t, "ann", browserOpts{width: 390, height: 800})
	ann.navigate(joinURL(c, m, "Ann", "DE"))
	for i := range 11 {
		runBot(t, c, m, fmt.Sprintf("Bot %d", i+1), "DE")
	}
	const k = 4 // large + a page of 3
	counts := `(() => { const v = Object.values(window.oakmeet.subscriptions()); return {n: v.length, on: v.filter((l) => l !== 'off').length}; })()`
	ann.waitJS(60*time.Second, "eleven tracks, all but four paused",
		`(() => { const c = `+counts+`; return c.n === 11 && c.on <= `+fmt.Sprint(k)+` && c.on >= 1; })()`,
		`JSON.stringify(window.oakmeet.subscriptions())`)
	ann.waitJS(60*time.Second, "at most four videos flowing",
		flowingVideoJS+`.then((j) => { const n = JSON.parse(j).length; return n >= 1 && n <= `+fmt.Sprint(k)+`; })`, flowingVideoJS)
	// The title counts everyone, not the tiles a page shows.
	ann.waitJS(10*time.Second, "the title counting twelve people", `document.querySelector('.meeting-title .count')?.textContent === '12 people'`,
		`document.querySelector('.meeting-title .count')?.textContent`)
	before := evalJS[string](ann, `JSON.stringify(window.oakmeet.subscriptions())`)
	var subs map[string]string
	if err := json.Unmarshal([]byte(before), &subs); err != nil {
		t.Fatal(err)
	}
	if got := ann.text("[data-testid=page-label]"); got != "1 / 4" {
		t.Errorf("page label %q, want 1 / 4", got)
	}
	ann.click("page-next", "[data-testid=page-next]")
	var off []string
	for id, l := range subs {
		if l == "off" {
			off = append(off, id)
		}
	}
	offJSON, _ := json.Marshal(off)
	ann.waitJS(60*time.Second, "a camera paused before plays after page-next",
		flowingVideoJS+`.then((j) => { const f = JSON.parse(j); return f.length <= `+fmt.Sprint(k)+` && f.some((id) => `+string(offJSON)+`.includes(id)); })`,
		flowingVideoJS+`.then((j) => j + ' ' + JSON.stringify(window.oakmeet.subscriptions()))`)
	if got := ann.text("[data-testid=page-label]"); got != "2 / 4" {
		t.Errorf("page label %q, want 2 / 4", got)
	}
}
