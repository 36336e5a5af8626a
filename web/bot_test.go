package web_test

import (
	"context"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/testcluster"
)

// runBot starts a Go participant (package bot) in the meeting and returns
// a channel with its report when it has left.
func runBot(t *testing.T, c *testcluster.Cluster, meeting, name, country string, d time.Duration) (ready <-chan string, report <-chan *bot.Report) {
	t.Helper()
	out := make(chan *bot.Report, 1)
	in := make(chan string, 1)
	// The bot leaves before the cluster stops (cleanups run last first).
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-done
	})
	go func() {
		defer close(done)
		rep, err := bot.Run(ctx, bot.Config{
			Server: c.URL, Meeting: meeting, Name: name, Country: country,
			Duration: d, Linger: time.Second, LoopbackOnly: true,
			Ready: func(id string) { in <- id },
		})
		if err != nil && ctx.Err() == nil {
			t.Errorf("bot %s: %v", name, err)
		}
		out <- rep
	}()
	return in, out
}

// TestPageAndBotDecryptEachOther: the JavaScript and Go implementations of
// docs/E2EE.md in one meeting. The page plays the bot's video with no
// decryption failures; the bot decrypts the page's audio and video with
// none either; both show the same security code.
//
// The bot joins first and leads: its own epochs key everything the page
// sends. (A joiner never holds the key of the epoch before its join, so
// frames of that epoch still in flight are "no key" drops; the bot's report
// counts them apart from failures.)
func TestPageAndBotDecryptEachOther(t *testing.T) {
	c, m := startMeeting(t)
	ready, reports := runBot(t, c, m.ID, "Bot", "DE", 15*time.Second)
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatal("bot did not join")
	}
	page := openPage(t, "page", joinURL(c, m.ID, "Ada", "DE"))
	page.waitJS(20*time.Second, "the page in the meeting", `window.oakmeet?.call?.self?.id`, `document.body.innerText`)
	pageID := evalJS[string](page, `window.oakmeet.call.self.id`)
	page.waitVideoAdvancing(1, 30*time.Second)
	code := page.waitCode(2, 20*time.Second)
	if s := page.decryptStats(); s.Video == 0 || s.Failures != 0 {
		t.Errorf("page decrypted %d video frames from the bot with %d failures", s.Video, s.Failures)
	}

	var rep *bot.Report
	select {
	case rep = <-reports:
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
		case tr.Frames < 20 || tr.DecryptFailures > 0:
			t.Errorf("bot decrypted %d %s frames from the page with %d failures (%d without a key yet)", tr.Frames, kind, tr.DecryptFailures, tr.NoKey)
		}
	}
	page.checkConsole()
}
