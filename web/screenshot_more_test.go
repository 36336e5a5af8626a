package web_test

import (
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// TestScreenshotsOfSharingAndRecovery writes, like TestScreenshots when
// OAKMEET_SCREENSHOTS names a directory, the screenshots of a screen
// share as another participant sees it, a twelve-person meeting (one page
// and eleven bots) in speaker view with pages, and a page reconnecting
// after its node died.
func TestScreenshotsOfSharingAndRecovery(t *testing.T) {
	save := screenshotSaver(t)

	t.Run("share", func(t *testing.T) {
		c, m := startMeeting(t)
		pages := openTabs(t, browserOpts{width: 1280, height: 800}, "ann", "ben")
		ann, ben := pages[0], pages[1]
		ann.navigate(joinURL(c, m, "Ann", "DE"))
		ben.navigate(joinURL(c, m, "Ben", "DE"))
		waitVideosAdvancing(1, 60*time.Second, ann, ben)
		ben.waitCode(2, 30*time.Second)
		annID := evalJS[string](ann, `window.oakmeet.call.self.id`)
		ann.clickShare()
		ben.waitScreenAdvancing(annID, 60*time.Second)
		ben.waitJS(10*time.Second, "the share large", `!!document.querySelector('.screen-tile.large')`, `document.querySelector('[data-testid=grid]').outerHTML.slice(0, 400)`)
		save(ben, "screen-share.png")
	})

	t.Run("twelve", func(t *testing.T) {
		c, m := startMeeting(t)
		for _, name := range []string{"Ada", "Brian", "Chen", "Dara", "Emil", "Farah", "Goran", "Hana", "Ines", "Jonas", "Kofi"} {
			runBot(t, c, m, name, "DE")
		}
		page := newBrowser(t, "lea", browserOpts{width: 1280, height: 800})
		page.navigate(joinURL(c, m, "Lea", "DE"))
		page.waitJS(90*time.Second, "eleven others", `(window.oakmeet?.call?.participants?.size ?? 0) === 11`, `document.body.innerText`)
		page.waitJS(60*time.Second, "the speaker view with pages", `document.querySelector('[data-testid=grid]')?.dataset.mode === 'speaker' && !document.querySelector('[data-testid=page-label]')?.closest('[hidden]')`, `document.querySelector('[data-testid=grid]')?.dataset.mode`)
		// Only the tiles shown play; the others are paused.
		page.waitJS(60*time.Second, "the shown tiles playing", `[...document.querySelectorAll('.tile[data-visible=true] video[data-participant]')].filter((v) => v.dataset.participant !== 'self' && v.getVideoPlaybackQuality().totalVideoFrames >= 5).length >= 7`, remoteFramesJS)
		page.waitCode(12, 60*time.Second)
		save(page, "meeting-twelve.png")
	})

	t.Run("reconnecting", func(t *testing.T) {
		needBrowser(t)
		c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:2])
		m := c.CreateMeeting(policy.Policy{})
		pages := openTabs(t, browserOpts{width: 1280, height: 800}, "ann", "bob")
		ann, bob := pages[0], pages[1]
		// A long first wait, so that the countdown is there to see.
		ann.addScript(`window.oakmeetTuning = {backoff: {baseMs: 9000, capMs: 9000, jitter: 0}};`)
		ann.navigate(joinURL(c, m, "Ann", "DE"))
		bob.navigate(joinURL(c, m, "Bob", "DE"))
		waitTogether(t, ann, bob)
		c.StopNode("de-fra")
		ann.waitJS(30*time.Second, "reconnecting", `document.querySelector('[data-testid=status]')?.dataset.state === 'reconnecting' && /Reconnecting… [0-9]/.test(document.querySelector('[data-testid=status]').textContent)`, `document.querySelector('[data-testid=status]')?.outerHTML`)
		save(ann, "reconnecting.png")
	})
}
