package web_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/signal"
	"github.com/oakmeet/oakmeet/testcluster"
)

// jsPage is what the meeting checks below need of a page, in Chromium
// (browser, over CDP) or Firefox (firefoxPage, over BiDi).
type jsPage interface {
	waitJS(d time.Duration, what, cond, detail string)
	// evalInto evaluates an expression (awaiting a promise) and decodes
	// its JSON value into out; it fails the test if it cannot.
	evalInto(js string, out any)
	label() string
	test() *testing.T
}

func (b *browser) evalInto(js string, out any) {
	b.t.Helper()
	s := evalJS[string](b, `(async () => JSON.stringify(await (`+js+`)))()`)
	if err := json.Unmarshal([]byte(s), out); err != nil {
		b.t.Fatalf("%s: decode %q: %v", b.name, s, err)
	}
}

func (b *browser) label() string     { return b.name }
func (b *browser) test() *testing.T  { return b.t }
func (p *firefoxPage) label() string { return p.name }
func (p *firefoxPage) test() *testing.T {
	return p.t
}

func (p *firefoxPage) evalInto(js string, out any) {
	p.t.Helper()
	if err := p.eval(js, out); err != nil {
		p.t.Fatalf("%s: evaluate %q: %v", p.name, js, err)
	}
}

const (
	// anyRemoteFramesJS is remoteFramesJS for either browser: Firefox
	// leaves getVideoPlaybackQuality at 0 for a MediaStream, and (ESR 140)
	// mozDecodedFrames too for a remote track; mozPaintedFrames counts.
	anyRemoteFramesJS = `Object.fromEntries([...document.querySelectorAll('video[data-participant]')]
		.filter((v) => v.dataset.participant !== 'self')
		.map((v) => [v.dataset.participant, Math.max(v.getVideoPlaybackQuality?.().totalVideoFrames ?? 0, v.mozPaintedFrames ?? 0, v.mozDecodedFrames ?? 0)]))`
	// kindStatsJS sums the Worker's counters by operation and kind, and
	// its failures: frames dropped for anything but a missing key.
	kindStatsJS = `window.oakmeet.stats().then((s) => s.reduce((a, x) => {
		const k = x.operation + '_' + x.kind;
		a[k] = (a[k] ?? 0) + x.frames;
		const f = x.auth + x.malformed + x.replay + x.short + x.other;
		if (x.operation === 'decode' && f) { a.failures = (a.failures ?? 0) + f; a.detail = (a.detail ?? '') + ' ' + JSON.stringify(x); }
		return a;
	}, {}))`
)

// connStatesJS is the call's state and its connections', for a failure.
const connStatesJS = `JSON.stringify(((c) => [c?.state, c?.session?.pub?.connectionState, c?.session?.sub?.connectionState, c?.session?.sub?.signalingState,
	[...(c?.session?.tracks?.values() ?? [])].map((t) => t.participant + ':' + t.kind)])(window.oakmeet?.call))`

type kindStats struct {
	DecodeAudio int    `json:"decode_audio"`
	DecodeVideo int    `json:"decode_video"`
	EncodeAudio int    `json:"encode_audio"`
	EncodeVideo int    `json:"encode_video"`
	Failures    int    `json:"failures"`
	Detail      string `json:"detail"`
}

func statsOf(p jsPage) kindStats {
	var s kindStats
	p.evalInto(kindStatsJS, &s)
	return s
}

// waitPlaying waits until p decodes n remote videos with frame counts that
// keep going up.
func waitPlaying(p jsPage, n int, d time.Duration) {
	p.test().Helper()
	p.waitJS(d, fmt.Sprintf("%d remote videos playing", n),
		fmt.Sprintf(`Object.values(%s).filter((f) => f >= 5).length >= %d`, anyRemoteFramesJS, n),
		`JSON.stringify(`+anyRemoteFramesJS+`) + ' ' + document.querySelector('[data-testid=status]')?.textContent + ' ' + `+connStatesJS)
	var first map[string]int
	p.evalInto(anyRemoteFramesJS, &first)
	p.waitJS(d, "remote video frames advancing",
		fmt.Sprintf(`((f) => %s.every(([id, n]) => (f[id] ?? 0) >= n + 10))(%s)`, mustJSONEntries(first), anyRemoteFramesJS),
		`JSON.stringify(`+anyRemoteFramesJS+`)`)
}

// codeFor waits until p shows a security code for a roster of n.
func codeFor(p jsPage, n int, d time.Duration) string {
	p.test().Helper()
	p.waitJS(d, fmt.Sprintf("a security code for %d participants", n),
		fmt.Sprintf(`/^\d{5}( \d{5}){7}$/.test(%s) && %s === %d`, codeJS, rosterJS, n), codeJS+` + ' roster ' + `+rosterJS)
	var code string
	p.evalInto(codeJS, &code)
	return code
}

// waitDecoded waits until p has decrypted at least one frame of remote
// audio and of remote video.
func waitDecoded(p jsPage, d time.Duration) {
	p.test().Helper()
	p.waitJS(d, "remote audio and video decrypted",
		`(`+kindStatsJS+`).then((s) => s.decode_audio > 0 && s.decode_video > 0)`, `(`+kindStatsJS+`).then(JSON.stringify)`)
}

// TestChromiumAndFirefoxSeeAndHearEachOther: a Chromium page (encoded
// streams or RTCRtpScriptTransform) and a Firefox page
// (RTCRtpScriptTransform) in one meeting each decrypt and play the other's
// video, decrypt its audio, show the same security code, and count no
// decryption failure.
func TestChromiumAndFirefoxSeeAndHearEachOther(t *testing.T) {
	needFirefox(t)
	c, m := startMeeting(t)
	chrome := openPage(t, "chromium", joinURL(c, m, "Chris", "DE"))
	fox := newFirefoxPage(t, "firefox", firefoxOpts{})
	fox.navigate(joinURL(c, m, "Fiona", "DE"))

	pages := []jsPage{chrome, fox}
	// Whichever page a failure names, the other's side of it is there too.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, p := range pages {
			var states string
			var stats map[string]any
			p.evalInto(connStatesJS, &states)
			t.Logf("%s at the failure: %s", p.label(), states)
			p.evalInto(kindStatsJS, &stats)
			t.Logf("%s at the failure: %v", p.label(), stats)
		}
	})
	for _, p := range pages {
		waitPlaying(p, 1, 60*time.Second)
	}
	codes := make([]string, len(pages))
	for i, p := range pages {
		codes[i] = codeFor(p, 2, 30*time.Second)
		waitDecoded(p, 30*time.Second)
	}
	if codes[0] != codes[1] || !codeFormat.MatchString(codes[0]) {
		t.Errorf("security codes: chromium %q, firefox %q", codes[0], codes[1])
	}
	for _, p := range pages {
		s := statsOf(p)
		t.Logf("%s: decrypted %d audio and %d video frames, encrypted %d and %d", p.label(), s.DecodeAudio, s.DecodeVideo, s.EncodeAudio, s.EncodeVideo)
		if s.Failures != 0 {
			t.Errorf("%s: %d decryption failures:%s", p.label(), s.Failures, s.Detail)
		}
	}
	chrome.checkConsole()
	fox.checkConsole()
	// A Worker replaced on the way is no failure, but worth seeing.
	for _, l := range strings.Split(fox.consoleText(), "\n") {
		if strings.Contains(l, "media encryption Worker") {
			t.Logf("firefox console: %s", strings.TrimSpace(l))
		}
	}
}

// TestFirefoxPageAndBotDecryptEachOther is TestPageAndBotDecryptEachOther
// with the page in Firefox: the Go bot decrypts Firefox's audio and video
// (RTCRtpScriptTransform's frames) and the page the bot's.
func TestFirefoxPageAndBotDecryptEachOther(t *testing.T) {
	needFirefox(t)
	c := testcluster.Start(t, policy.Policy{}, testcluster.World())
	m := c.CreateMeeting(policy.Policy{})
	b := runBot(t, c, m, "Bot", "DE")
	page := newFirefoxPage(t, "firefox", firefoxOpts{})
	select {
	case <-b.ready:
	case <-time.After(30 * time.Second):
		t.Fatal("bot did not join")
	}
	page.navigate(joinURL(c, m, "Ada", "DE"))
	page.waitJS(30*time.Second, "the page in the meeting", `window.oakmeet?.call?.self?.id`, `document.body.innerText`)
	if missing := evalFirefox[[]string](page, `import('/js/support.js').then((m) => m.missingForE2EE())`); len(missing) != 0 {
		t.Errorf("Firefox lacks for E2EE: %q", missing)
	}
	pageID := evalFirefox[string](page, `window.oakmeet.call.self.id`)
	waitPlaying(page, 1, 60*time.Second)
	page.waitJS(30*time.Second, "the call connected", `window.oakmeet.call.state === 'connected' && document.querySelector('[data-testid=status]').hidden`,
		`window.oakmeet.call.state + ' ' + [window.oakmeet.call.session.pub?.connectionState, window.oakmeet.call.session.sub?.connectionState] + ' ' + document.querySelector('[data-testid=status]').textContent`)
	code := codeFor(page, 2, 30*time.Second)
	if s := statsOf(page); s.DecodeVideo == 0 || s.Failures != 0 {
		t.Errorf("page decrypted %d video frames from the bot with %d failures:%s", s.DecodeVideo, s.Failures, s.Detail)
	}
	// From the code on, the page encrypts under keys the bot holds.
	from := statsOf(page)
	page.waitJS(30*time.Second, fmt.Sprintf("%d more frames of audio and of video encrypted", botFrames),
		fmt.Sprintf(`(%s).then((s) => s.encode_audio >= %d && s.encode_video >= %d)`, kindStatsJS, from.EncodeAudio+botFrames, from.EncodeVideo+botFrames),
		`(`+kindStatsJS+`).then(JSON.stringify)`)
	b.waitDecrypted(t, pageID, botFrames, 30*time.Second, signal.SourceMicrophone, signal.SourceCamera)
	b.stop()

	var rep *bot.Report
	select {
	case rep = <-b.report:
	case <-time.After(40 * time.Second):
		t.Fatal("bot did not finish")
	}
	if rep == nil {
		t.Fatal("no bot report")
	}
	if rep.SecurityCode != code {
		t.Errorf("bot security code %q, page %q", rep.SecurityCode, code)
	}
	kinds := map[string]bot.TrackReport{}
	for _, tr := range rep.Tracks {
		if tr.ParticipantID == pageID {
			kinds[tr.Kind] = tr
		}
	}
	for _, kind := range []string{"audio", "video"} {
		tr, ok := kinds[kind]
		switch {
		case !ok:
			t.Errorf("bot received no %s track from the page (tracks: %+v)", kind, rep.Tracks)
		case tr.Frames < botFrames || tr.DecryptFailures > 0:
			t.Errorf("bot decrypted %d %s frames from the page with %d failures (%d without a key yet)", tr.Frames, kind, tr.DecryptFailures, tr.NoKey)
		}
	}
	page.checkConsole()
}

// hideEncodedFrames removes both ways to reach encoded media frames
// before the app loads, as in a browser that has neither.
const hideEncodedFrames = `() => {
	delete window.RTCRtpScriptTransform;
	if (window.RTCRtpSender) delete RTCRtpSender.prototype.createEncodedStreams;
}`

// TestBrowserWithoutEncodedFramesIsTold: a browser with no access to
// encoded frames cannot encrypt media; the join page says what it lacks
// and does not join, even from a link that asks to join at once.
func TestBrowserWithoutEncodedFramesIsTold(t *testing.T) {
	needFirefox(t)
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	m := c.CreateMeeting(policy.Policy{})
	page := newFirefoxPage(t, "no-transform", firefoxOpts{preload: hideEncodedFrames})
	page.navigate(joinURL(c, m, "Ada", "DE"))
	page.waitJS(30*time.Second, "the unsupported-browser message", `document.querySelector('[data-testid=browser-unsupported]')`, `document.body.innerText`)
	text := evalFirefox[string](page, `document.querySelector('[data-testid=browser-unsupported]').textContent`)
	if !strings.HasPrefix(text, "This browser cannot join with end-to-end encryption: it lacks ") || !strings.Contains(text, "RTCRtpScriptTransform") {
		t.Errorf("message %q", text)
	}
	if !evalFirefox[bool](page, `document.querySelector('[data-testid=join]').disabled`) {
		t.Error("the join button is enabled")
	}
	// The preview opens the camera before an autojoin would start: once it
	// plays, the page has passed the point where it would have joined.
	page.waitJS(30*time.Second, "the camera preview", `document.querySelector('.preview-video')?.srcObject?.getVideoTracks().length > 0`, `document.body.innerText`)
	if evalFirefox[bool](page, `!!window.oakmeet?.call`) {
		t.Error("the page joined")
	}
	// What a user sees of it: the page as the window shows it.
	img, err := png.Decode(bytes.NewReader(page.screenshot()))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if w := img.Bounds().Dx(); w != defaultWidth {
		t.Errorf("screenshot %d px wide, want %d", w, defaultWidth)
	}
	page.checkConsole()
}

// failFirstWorkers makes the page's first media Worker one that evaluates
// but never answers, and its second one whose module does not load, as a
// module fetch that hangs or fails under load would.
const failFirstWorkers = `() => {
	window.oakmeetTuning = { workerReadyMs: 3000 };
	const W = window.Worker;
	const urls = ['/js/e2ee/sframe.js', '/js/e2ee/absent.js'];
	let n = 0;
	window.Worker = class extends W {
		constructor(url, opts) {
			if (opts?.name === 'oakmeet-sframe' && n < urls.length) url = urls[n++];
			super(url, opts);
		}
	};
}`

// TestFirefoxReplacesAWorkerThatDoesNotStart: a media Worker that does not
// answer in time, and one whose module fails to load, are replaced before
// any transform is attached; the page then plays a bot's video and
// encrypts its own audio and video. Without the replacement no frame gets
// through at all.
func TestFirefoxReplacesAWorkerThatDoesNotStart(t *testing.T) {
	needFirefox(t)
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	m := c.CreateMeeting(policy.Policy{})
	b := runBot(t, c, m, "Bot", "DE")
	page := newFirefoxPage(t, "firefox", firefoxOpts{preload: failFirstWorkers})
	select {
	case <-b.ready:
	case <-time.After(30 * time.Second):
		t.Fatal("bot did not join")
	}
	page.navigate(joinURL(c, m, "Ada", "DE"))
	waitPlaying(page, 1, 60*time.Second)
	waitDecoded(page, 30*time.Second)
	page.waitJS(30*time.Second, "own audio and video encrypted",
		`(`+kindStatsJS+`).then((s) => s.encode_audio > 0 && s.encode_video > 0)`, `(`+kindStatsJS+`).then(JSON.stringify)`)
	console := page.consoleText()
	for _, want := range []string{"no answer within 3000 ms); starting attempt 2", "starting attempt 3"} {
		if !strings.Contains(console, want) {
			t.Errorf("console lacks %q:\n%s", want, console)
		}
	}
	b.stop()
}
