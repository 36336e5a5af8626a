package web_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// Expressions the meeting tests poll in the page.
const (
	// remoteFramesJS is the decoded frame count of every remote video, by
	// participant id.
	remoteFramesJS = `JSON.stringify(Object.fromEntries([...document.querySelectorAll('video[data-participant]')]
		.filter((v) => v.dataset.participant !== 'self')
		.map((v) => [v.dataset.participant, v.getVideoPlaybackQuality().totalVideoFrames])))`
	codeJS   = `(document.querySelector('[data-testid=security-code]')?.textContent ?? '')`
	epochJS  = `(window.oakmeet?.call?.member?.epoch ?? 0)`
	rosterJS = `(window.oakmeet?.call?.member?.roster?.length ?? 0)`
	// decryptStatsJS sums the Worker's decode counters: frames passed and
	// frames dropped for anything but a missing key.
	decryptStatsJS = `window.oakmeet.stats().then((s) => JSON.stringify(s.filter((x) => x.operation === 'decode')
		.reduce((a, x) => ({frames: a.frames + x.frames, failures: a.failures + x.auth + x.malformed + x.replay + x.short + x.other,
			video: a.video + (x.kind === 'video' ? x.frames : 0),
			detail: a.detail + (x.auth + x.malformed + x.replay + x.short + x.other ? ' ' + JSON.stringify(x) : '')}),
			{frames: 0, failures: 0, video: 0, detail: ''})))`
)

var codeFormat = regexp.MustCompile(`^\d{5}( \d{5}){7}$`)

type decryptStats struct {
	Frames   int    `json:"frames"`
	Failures int    `json:"failures"`
	Video    int    `json:"video"`
	Detail   string `json:"detail"`
}

func (b *browser) decryptStats() decryptStats {
	var s decryptStats
	if err := json.Unmarshal([]byte(evalJS[string](b, decryptStatsJS)), &s); err != nil {
		b.t.Fatalf("%s: decrypt stats: %v", b.name, err)
	}
	return s
}

func (b *browser) remoteFrames() map[string]int {
	var m map[string]int
	if err := json.Unmarshal([]byte(evalJS[string](b, remoteFramesJS)), &m); err != nil {
		b.t.Fatalf("%s: frames: %v", b.name, err)
	}
	return m
}

// waitVideoAdvancing waits until the page plays n remote videos whose
// decoded frame counts keep going up: media arrives, decrypts and decodes.
func (b *browser) waitVideoAdvancing(n int, d time.Duration) {
	b.t.Helper()
	waitVideosAdvancing(n, d, b)
}

// waitVideosAdvancing is waitVideoAdvancing for several pages at once:
// each page's frame counts are taken once it plays n remote videos, and
// then each page must decode 10 more frames of every one, so the pages'
// frames advance together rather than one page after the other.
func waitVideosAdvancing(n int, d time.Duration, pages ...*browser) {
	pages[0].t.Helper()
	firsts := make([]map[string]int, len(pages))
	for i, b := range pages {
		cond := fmt.Sprintf(`Object.values(JSON.parse(%s)).filter((f) => f >= 5).length >= %d`, remoteFramesJS, n)
		b.waitJS(d, fmt.Sprintf("%d remote videos playing", n), cond, remoteFramesJS+` + ' ' + document.querySelector('[data-testid=status]')?.textContent`)
		firsts[i] = b.remoteFrames()
	}
	for i, b := range pages {
		cond := fmt.Sprintf(`((f) => %s.every(([id, n]) => (f[id] ?? 0) >= n + 10))(JSON.parse(%s))`, mustJSONEntries(firsts[i]), remoteFramesJS)
		b.waitJS(d, "remote video frames advancing", cond, remoteFramesJS)
	}
}

func mustJSONEntries(m map[string]int) string {
	type kv = [2]any
	var out []kv
	for k, v := range m {
		out = append(out, kv{k, v})
	}
	b, _ := json.Marshal(out)
	return string(b)
}

func (b *browser) securityCode() string { return evalJS[string](b, codeJS) }

// waitCode waits until the page shows a security code for a roster of n.
func (b *browser) waitCode(n int, d time.Duration) string {
	b.t.Helper()
	b.waitJS(d, fmt.Sprintf("a security code for %d participants", n),
		fmt.Sprintf(`/^\d{5}( \d{5}){7}$/.test(%s) && %s === %d`, codeJS, rosterJS, n), codeJS+` + ' roster ' + `+rosterJS)
	return b.securityCode()
}

// joinURL is the meeting's join link (its secret and host key fingerprint
// in the fragment) with a name to join under at once and a location hint.
func joinURL(c *testcluster.Cluster, m api.CreatedMeeting, name, country string) string {
	return withJoin(c, m.JoinURL, name, country)
}

// hostJoinURL is joinURL for the host's link.
func hostJoinURL(c *testcluster.Cluster, m api.CreatedMeeting, name, country string) string {
	return withJoin(c, m.HostURL, name, country)
}

// withJoin puts the query that joins at once between a link's path and its
// fragment, on the cluster's address.
func withJoin(c *testcluster.Cluster, link, name, country string) string {
	path, frag, _ := strings.Cut(strings.TrimPrefix(link, c.URL), "#")
	if i := strings.Index(path, "/m/"); i > 0 {
		path = path[i:] // a link naming the server otherwise than c.URL
	}
	return fmt.Sprintf("%s%s?name=%s&autojoin=1&country=%s#%s", c.URL, path, name, country, frag)
}

// startMeeting starts a cluster of testcluster.World()'s nodes under no
// deployment policy and creates a meeting with no policy of its own.
// Without Chromium it skips (or fails, in CI) before starting anything.
func startMeeting(t *testing.T) (*testcluster.Cluster, api.CreatedMeeting) {
	t.Helper()
	needBrowser(t)
	c := testcluster.Start(t, policy.Policy{}, testcluster.World())
	return c, c.CreateMeeting(policy.Policy{})
}

// openPage opens a page of the default size at url.
func openPage(t *testing.T, name, url string) *browser {
	t.Helper()
	return openPages(t, name, url)[0]
}

// openPages opens a page for each name and URL (given in turn): their
// tabs at once, then each URL in order.
func openPages(t *testing.T, nameURLs ...string) []*browser {
	t.Helper()
	var names []string
	for i := 0; i < len(nameURLs); i += 2 {
		names = append(names, nameURLs[i])
	}
	bs := openTabs(t, browserOpts{}, names...)
	for i, b := range bs {
		b.navigate(nameURLs[2*i+1])
	}
	return bs
}

// waitTogether waits until each page plays every other page's video and
// shows a security code for all of them, and returns the code; the test
// fails if two pages show different codes.
func waitTogether(t *testing.T, pages ...*browser) string {
	t.Helper()
	waitVideosAdvancing(len(pages)-1, 30*time.Second, pages...)
	code := pages[0].waitCode(len(pages), 20*time.Second)
	for _, b := range pages[1:] {
		if got := b.waitCode(len(pages), 20*time.Second); got != code {
			t.Errorf("security codes differ: %s %q, %s %q", pages[0].name, code, b.name, got)
		}
	}
	return code
}

// TestTwoPagesSeeEachOther: two browsers in one meeting each play the
// other's video, decrypted end to end, and show the same security code.
func TestTwoPagesSeeEachOther(t *testing.T) {
	c, m := startMeeting(t)
	pages := openPages(t, "ann", joinURL(c, m, "Ann", "DE"), "bob", joinURL(c, m, "Bob", "DE"))
	ann, bob := pages[0], pages[1]

	if code := waitTogether(t, ann, bob); !codeFormat.MatchString(code) {
		t.Errorf("malformed security code %q", code)
	}
	for _, b := range []*browser{ann, bob} {
		s := b.decryptStats()
		if s.Video == 0 || s.Failures != 0 {
			t.Errorf("%s: decrypted %d video frames with %d failures:%s", b.name, s.Video, s.Failures, s.Detail)
		}
		if got := b.text("[data-testid=node-country]"); got != "DE" {
			t.Errorf("%s: node-country %q, want DE", b.name, got)
		}
	}

	// Chat reaches the other page; the camera button stops the picture.
	if err := chromedp.Do(ann.ctx,
		chromedp.Click(chromedp.CSS(`[data-testid=tab-chat]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=chat-input]`), "Does your code match?"+kb.Enter),
		chromedp.Click(chromedp.CSS(`[data-testid=camera]`)),
	); err != nil {
		t.Fatal(err)
	}
	bob.waitJS(10*time.Second, "ann's chat message", `document.querySelector('[data-testid=chat-list]')?.textContent.includes('Does your code match?')`, `document.querySelector('[data-testid=chat-list]')?.textContent`)
	ann.waitJS(10*time.Second, "ann's own tile without video", `document.querySelector('.tile[data-participant=self]').classList.contains('no-video')`, `document.querySelector('.tile[data-participant=self]').className`)
	ann.checkConsole()
	bob.checkConsole()
}

// TestPagesOnTwoNodes: pages placed in Germany and the United States meet
// through a relay between the two nodes, decrypt each other, and each
// routing panel shows both nodes and the relay.
func TestPagesOnTwoNodes(t *testing.T) {
	c, m := startMeeting(t)
	pages := openPages(t, "ann", joinURL(c, m, "Ann", "DE"), "bob", joinURL(c, m, "Bob", "US"))
	ann, bob := pages[0], pages[1]
	waitTogether(t, ann, bob)
	for _, tc := range []struct {
		b          *browser
		mine, peer string
	}{{ann, "DE", "US"}, {bob, "US", "DE"}} {
		b := tc.b
		if got := b.text("[data-testid=node-country]"); got != tc.mine {
			t.Errorf("%s: node-country %q, want %s", b.name, got, tc.mine)
		}
		b.waitJS(10*time.Second, "both nodes and the relay in the routing panel",
			`((p) => [...p.querySelectorAll('[data-testid=participant-node-country]')].map((e) => e.textContent).sort().join() === 'DE,US' &&
				/DE ⇄ US|US ⇄ DE/.test(p.querySelector('[data-testid=relays]').textContent))(document.querySelector('[data-testid=routing-panel]'))`,
			`document.querySelector('[data-testid=routing-panel]').innerText`)
		if s := b.decryptStats(); s.Video == 0 || s.Failures != 0 {
			t.Errorf("%s: decrypted %d video frames with %d failures:%s", b.name, s.Video, s.Failures, s.Detail)
		}
		b.checkConsole()
	}
}

// TestRefusedJoinShowsReason: a join the policy cannot place is refused
// with a clear message, not sent anywhere else.
func TestRefusedJoinShowsReason(t *testing.T) {
	needBrowser(t)
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:2])
	// Only France allowed: no node there.
	m := c.CreateMeeting(policy.Policy{AllowedCountries: []string{"FR"}})
	b := openPage(t, "refused", joinURL(c, m, "Eve", "FR"))
	b.waitJS(20*time.Second, "the refusal", `document.querySelector('[data-testid=join-error]:not([hidden])')`, `document.body.innerText`)
	if code := evalJS[string](b, `document.querySelector('[data-testid=join-error]').dataset.code`); code != "no_node_in_allowed_regions" {
		t.Errorf("refusal code %q", code)
	}
	text := b.text("[data-testid=refusal]")
	if !regexp.MustCompile(`No media server is available in the countries this meeting’s routing policy allows`).MatchString(text) {
		t.Errorf("refusal text %q", text)
	}
	b.checkConsole(503)

	// A link with a wrong secret, and one without: the page says what to do.
	l, err := api.ParseLink(m.JoinURL)
	if err != nil {
		t.Fatal(err)
	}
	l.Secret = "not-the-secret"
	wrong := openPage(t, "wrong-secret", withJoin(c, l.String(), "Eve", "FR"))
	if got := wrong.waitRefusal("bad_meeting_secret", 20*time.Second); got != "This link is incomplete or wrong — ask the host for the whole link." {
		t.Errorf("wrong secret: %q", got)
	}
	none := openPage(t, "no-secret", fmt.Sprintf("%s/m/%s", c.URL, m.ID))
	if got := none.waitRefusal("no_secret", 20*time.Second); !strings.Contains(got, "ask the host for the whole link") {
		t.Errorf("no secret: %q", got)
	}
	wrong.checkConsole(403)
	none.checkConsole()
}
