package web_test

import (
	"fmt"
	"testing"
	"time"
)

// anyScreenFramesJS is the frame count of pid's screen tile in either
// browser (Firefox counts painted frames only, see anyRemoteFramesJS), -1
// while there is none.
func anyScreenFramesJS(pid string) string {
	return fmt.Sprintf(`((v) => v ? Math.max(v.getVideoPlaybackQuality?.().totalVideoFrames ?? 0, v.mozPaintedFrames ?? 0, v.mozDecodedFrames ?? 0) : -1)(document.querySelector('[data-testid=screen-tile] video[data-screen=%s]'))`, jsString(pid))
}

// TestFirefoxSeesAChromiumScreenShare: a Chromium page shares its screen;
// a Firefox page in the meeting plays it (RTCRtpScriptTransform decrypting
// the share's frames) with no decryption failure, under the same security
// code, and loses the tile when the share stops.
func TestFirefoxSeesAChromiumScreenShare(t *testing.T) {
	needFirefox(t)
	c, m := startMeeting(t)
	chrome := openPage(t, "chromium", joinURL(c, m, "Chris", "DE"))
	fox := newFirefoxPage(t, "firefox", firefoxOpts{})
	fox.navigate(joinURL(c, m, "Fiona", "DE"))
	for _, p := range []jsPage{chrome, fox} {
		waitPlaying(p, 1, 60*time.Second)
	}
	code := codeFor(chrome, 2, 30*time.Second)
	if got := codeFor(fox, 2, 30*time.Second); got != code {
		t.Fatalf("security codes: chromium %q, firefox %q", code, got)
	}
	pid := evalJS[string](chrome, `window.oakmeet.call.self.id`)

	chrome.clickShare()
	chrome.waitJS(30*time.Second, "the share under way", `!!window.oakmeet.call.local.screen`, `document.body.innerText`)
	frames := anyScreenFramesJS(pid)
	fox.waitJS(60*time.Second, "the Chromium page's screen playing", frames+` >= 5`,
		`document.querySelectorAll('[data-testid=screen-tile]').length + ' screen tiles'`)
	var from int
	fox.evalInto(frames, &from)
	fox.waitJS(30*time.Second, "the screen's frames advancing", fmt.Sprintf(`%s >= %d`, frames, from+10), frames)
	if s := statsOf(fox); s.Failures != 0 {
		t.Errorf("firefox: %d decryption failures:%s", s.Failures, s.Detail)
	}
	if got := codeFor(fox, 2, 10*time.Second); got != code {
		t.Errorf("firefox's security code changed to %q during the share", got)
	}

	chrome.clickShare()
	fox.waitJS(30*time.Second, "no screen tile after the share stopped", `document.querySelectorAll('[data-testid=screen-tile]').length === 0`,
		`document.querySelectorAll('[data-testid=screen-tile]').length + ' screen tiles'`)
	chrome.checkConsole()
	fox.checkConsole()
}
