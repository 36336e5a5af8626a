package web_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// recoveryTuning shortens the media connect deadline and keeps the
// back-off short but long enough (a first wait of about a second) for the
// banner's countdown to be seen; it is in place before the app loads.
const recoveryTuning = `window.oakmeetTuning = {mediaConnectMs: 10000, backoff: {baseMs: 1000, capMs: 2000, maxAttempts: 20}};`

// statusLogJS records every state and text the status banner shows, so a
// short-lived "reconnecting" is not missed between two polls.
const statusLogJS = `(() => {
	window.__statusLog = [];
	const el = document.querySelector('[data-testid=status]');
	const note = () => window.__statusLog.push({state: el.dataset.state ?? '', hidden: el.hidden, text: el.textContent,
		attempt: Number(el.querySelector('[data-testid=status-attempt]')?.dataset.attempt ?? 0)});
	new MutationObserver(note).observe(el, {subtree: true, childList: true, attributes: true, characterData: true});
	return true;
})()`

type statusEntry struct {
	State   string `json:"state"`
	Hidden  bool   `json:"hidden"`
	Text    string `json:"text"`
	Attempt int    `json:"attempt"`
}

func (b *browser) statusLog() []statusEntry {
	var log []statusEntry
	if err := json.Unmarshal([]byte(evalJS[string](b, `JSON.stringify(window.__statusLog)`)), &log); err != nil {
		b.t.Fatalf("%s: status log: %v", b.name, err)
	}
	return log
}

func (b *browser) addScript(src string) {
	b.t.Helper()
	if _, err := chromedp.Call(b.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: src}); err != nil {
		b.t.Fatalf("%s: add script: %v", b.name, err)
	}
}

// TestJSUnitRecovery runs the unit tests of the retry policy and the
// failure messages (testdata/jsunit/recovery.js) in Chromium.
func TestJSUnitRecovery(t *testing.T) {
	b := newBrowser(t, "recovery-unit", browserOpts{})
	srv := jsunitServer(t)
	b.navigate(srv.URL + "/test/recovery.html")
	b.waitJS(30*time.Second, "unit tests to run", `window.__unit`, `document.body.textContent`)
	var results []struct {
		Name  string `json:"name"`
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(evalJS[string](b, `window.__unit`)), &results); err != nil {
		t.Fatal(err)
	}
	if len(results) < 5 {
		t.Errorf("only %d recovery tests ran", len(results))
	}
	for _, r := range results {
		if !r.OK {
			t.Errorf("FAIL %s: %s", r.Name, r.Error)
		}
	}
	b.checkConsole()
}

// TestNodeKilledPageReconnects: two pages on the German node; the node
// is killed. The page says it is reconnecting, with a countdown and the
// reason, joins again through the control plane (placed on the other
// node) without a reload, and plays the other page's video again under
// one security code.
func TestNodeKilledPageReconnects(t *testing.T) {
	needBrowser(t)
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:2])
	m := c.CreateMeeting(policy.Policy{})
	pages := openTabs(t, browserOpts{}, "ann", "bob")
	ann, bob := pages[0], pages[1]
	for _, b := range pages {
		b.addScript(recoveryTuning)
	}
	ann.navigate(joinURL(c, m, "Ann", "DE"))
	bob.navigate(joinURL(c, m, "Bob", "DE"))
	for _, b := range pages {
		b.waitJS(30*time.Second, "placed on the German node", `window.oakmeet?.call?.self?.node?.id === 'de-fra'`, `document.body.innerText`)
	}
	waitTogether(t, ann, bob)
	for _, b := range pages {
		evalJS[bool](b, `window.oakmeet.marker = 'before the node died', true`)
		evalJS[bool](b, statusLogJS)
	}

	c.StopNode("de-fra")

	for _, b := range pages {
		b.waitJS(60*time.Second, "connected again on the other node",
			`window.oakmeet.call.state === 'connected' && window.oakmeet.call.self.node?.id === 'us-iad'`,
			`window.oakmeet.call.state + ' ' + document.querySelector('[data-testid=status]')?.textContent`)
		if got := evalJS[string](b, `window.oakmeet.marker ?? ''`); got != "before the node died" {
			t.Errorf("%s: the page was reloaded (marker %q)", b.name, got)
		}
		sawCountdown := false
		for _, e := range b.statusLog() {
			if e.State == "reconnecting" && !e.Hidden && strings.Contains(e.Text, "Reconnecting…") &&
				strings.Contains(e.Text, "Lost the connection to the media server") && e.Attempt >= 1 {
				sawCountdown = true
			}
		}
		if !sawCountdown {
			t.Errorf("%s: the banner never said it was reconnecting and why: %+v", b.name, b.statusLog())
		}
		if st := evalJS[string](b, `document.querySelector('[data-testid=status]').dataset.state`); st != "connected" {
			t.Errorf("%s: banner data-state %q after reconnecting", b.name, st)
		}
	}
	waitTogether(t, ann, bob)
	for _, b := range pages {
		if s := b.decryptStats(); s.Failures != 0 {
			t.Errorf("%s: %d decryption failures:%s", b.name, s.Failures, s.Detail)
		}
		b.checkConsole()
	}
}

// TestPanelAndMapLoadErrors: a routing refresh that fails shows its
// reason in the panel and clears on the next refresh that works; a map
// that cannot be downloaded says so.
func TestPanelAndMapLoadErrors(t *testing.T) {
	c, m := startMeeting(t)
	b := newBrowser(t, "panel", browserOpts{})
	// The page's own fetch fails for the routing and the map while
	// window.__failLoads is set, as a network error would.
	b.addScript(`window.__failLoads = true;
		const realFetch = window.fetch.bind(window);
		window.fetch = (input, init) => {
			const url = String(input?.url ?? input);
			if (window.__failLoads && (/\/routing$/.test(url) || /\/world\.json$/.test(url))) return Promise.reject(new TypeError('Failed to fetch'));
			return realFetch(input, init);
		};`)
	b.navigate(joinURL(c, m, "Pat", "DE"))
	b.waitJS(30*time.Second, "connected", `window.oakmeet?.call?.state === 'connected'`, `document.body.innerText`)
	if err := chromedp.Do(b.ctx, chromedp.Click(chromedp.CSS(`[data-testid=tab-routing]`))); err != nil {
		t.Fatal(err)
	}
	b.waitJS(30*time.Second, "the routing error line",
		`((e) => e && !e.hidden && e.textContent.includes('Could not load where this meeting runs: The server cannot be reached'))(document.querySelector('.side [data-testid=panel-error]'))`,
		`document.querySelector('[data-testid=routing-panel]').innerText`)
	b.waitJS(30*time.Second, "the map error",
		`document.querySelector('.side [data-testid=map-error]')?.textContent === 'Map could not be loaded: Failed to fetch'`,
		`document.querySelector('[data-testid=routing-panel]').innerText`)
	evalJS[bool](b, `window.__failLoads = false, true`)
	b.waitJS(30*time.Second, "the error cleared by the next refresh",
		`document.querySelector('.side [data-testid=panel-error]').hidden && document.querySelector('[data-testid=policy-text]').textContent !== ''`,
		`document.querySelector('[data-testid=routing-panel]').innerText`)
	b.checkConsole()
}

// TestFailedOffersTryAgain: when every attempt of the budget fails (here
// the control plane cannot be reached), the page stops at 'failed' with
// the reason and a "Try again" button, which connects once it can.
func TestFailedOffersTryAgain(t *testing.T) {
	c, m := startMeeting(t)
	b := newBrowser(t, "try-again", browserOpts{})
	b.addScript(`window.oakmeetTuning = {mediaConnectMs: 10000, backoff: {baseMs: 100, capMs: 200, maxAttempts: 3}};
		window.__failJoins = false;
		const realFetch = window.fetch.bind(window);
		window.fetch = (input, init) => {
			const url = String(input?.url ?? input);
			if (window.__failJoins && /\/join$/.test(url)) return Promise.reject(new TypeError('Failed to fetch'));
			return realFetch(input, init);
		};`)
	b.navigate(joinURL(c, m, "Tia", "DE"))
	b.waitJS(30*time.Second, "connected", `window.oakmeet?.call?.state === 'connected'`, `document.body.innerText`)
	evalJS[bool](b, `window.__failJoins = true, window.oakmeet.call.session.emit('state', {state: 'failed'}), true`)
	b.waitJS(30*time.Second, "the failed state with a Try again button",
		`((s) => s.dataset.state === 'failed' && !s.hidden && s.querySelector('[data-testid=retry]') &&
			s.querySelector('[data-testid=status-reason]')?.textContent.startsWith('Could not reach the meeting service'))(document.querySelector('[data-testid=status]'))`,
		`document.querySelector('[data-testid=status]').outerHTML`)
	if n := evalJS[int](b, `window.oakmeet.call.backoff.attempt`); n != 3 {
		t.Errorf("%d attempts before giving up, want 3", n)
	}
	evalJS[bool](b, `window.__failJoins = false, true`)
	if err := chromedp.Do(b.ctx, chromedp.Click(chromedp.CSS(`[data-testid=retry]`))); err != nil {
		t.Fatal(err)
	}
	b.waitJS(30*time.Second, "connected again", `window.oakmeet.call.state === 'connected' && document.querySelector('[data-testid=status]').dataset.state === 'connected'`,
		`window.oakmeet.call.state + ' ' + document.querySelector('[data-testid=status]').textContent`)
	b.waitCode(1, 30*time.Second)
	b.checkConsole()
}

// setOffline tells the page its network went away (navigator.onLine is
// false, with the offline event) or came back.
func (b *browser) setOffline(offline bool) {
	b.t.Helper()
	if _, err := chromedp.Call(b.ctx, network.Enable, network.EnableParams{}); err != nil {
		b.t.Fatalf("%s: network enable: %v", b.name, err)
	}
	if _, err := chromedp.Call(b.ctx, network.OverrideNetworkState, network.OverrideNetworkStateParams{
		Offline: offline, DownloadThroughput: -1, UploadThroughput: -1,
	}); err != nil {
		b.t.Fatalf("%s: network state: %v", b.name, err)
	}
}

// TestOfflineOnlineRecovers: a page that goes offline says so and waits;
// back online it joins again at once and plays the other page's video.
func TestOfflineOnlineRecovers(t *testing.T) {
	c, m := startMeeting(t)
	pages := openTabs(t, browserOpts{}, "ola", "ned")
	ola, ned := pages[0], pages[1]
	for _, b := range pages {
		b.addScript(recoveryTuning)
	}
	ola.navigate(joinURL(c, m, "Ola", "DE"))
	ned.navigate(joinURL(c, m, "Ned", "DE"))
	waitTogether(t, ola, ned)
	before := evalJS[string](ola, `window.oakmeet.call.self.id`)
	ola.setOffline(true)
	ola.waitJS(30*time.Second, "the page to say it is offline",
		`((s) => s.dataset.state === 'reconnecting' && s.textContent.includes('Reconnecting…') && s.querySelector('[data-testid=status-reason]')?.textContent === 'You are offline')(document.querySelector('[data-testid=status]'))`,
		`document.querySelector('[data-testid=status]').outerHTML`)
	if n := evalJS[int](ola, `window.oakmeet.call.backoff.attempt`); n > 1 {
		t.Errorf("%d attempts spent while offline", n)
	}
	ola.setOffline(false)
	ola.waitJS(30*time.Second, "connected again as a new participant",
		`window.oakmeet.call.state === 'connected' && window.oakmeet.call.self.id !== `+jsString(before),
		`window.oakmeet.call.state + ' ' + document.querySelector('[data-testid=status]').textContent`)
	waitTogether(t, ola, ned)
	for _, b := range pages {
		if s := b.decryptStats(); s.Failures != 0 {
			t.Errorf("%s: %d decryption failures:%s", b.name, s.Failures, s.Detail)
		}
	}
	ola.checkConsole()
	ned.checkConsole()
}

// TestMediaConnectDeadline: a session whose media connection never comes
// up (it stays "connecting", as when the network drops every packet) no
// longer leaves the page at "Connecting to the media server…": after
// MEDIA_CONNECT_MS the page says so and joins again.
func TestMediaConnectDeadline(t *testing.T) {
	c, m := startMeeting(t)
	b := newBrowser(t, "stall", browserOpts{})
	b.addScript(`window.oakmeetTuning = {mediaConnectMs: 3000, backoff: {baseMs: 1000, capMs: 2000}};
		window.__stall = true;
		const real = Object.getOwnPropertyDescriptor(RTCPeerConnection.prototype, 'connectionState');
		Object.defineProperty(RTCPeerConnection.prototype, 'connectionState', {
			configurable: true,
			get() { return window.__stall ? 'connecting' : real.get.call(this); },
		});`)
	b.navigate(joinURL(c, m, "Sam", "DE"))
	b.waitJS(30*time.Second, "the page to give up on the stalled connection",
		`((s) => s?.dataset.state === 'reconnecting' && s.querySelector('[data-testid=status-reason]')?.textContent === 'The media connection did not come up in time (network check failed)')(document.querySelector('[data-testid=status]'))`,
		`document.querySelector('[data-testid=status]')?.outerHTML`)
	evalJS[bool](b, `window.__stall = false, true`)
	b.waitJS(30*time.Second, "connected on the next attempt",
		`window.oakmeet.call.state === 'connected' && document.querySelector('[data-testid=status]').dataset.state === 'connected'`,
		`window.oakmeet.call.state + ' ' + document.querySelector('[data-testid=status]').textContent`)
	b.waitCode(1, 30*time.Second)
	b.checkConsole()
}
