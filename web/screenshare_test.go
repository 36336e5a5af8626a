package web_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/signal"
	"github.com/oakmeet/oakmeet/testcluster"
)

// screenBot is a Go participant that counts, while it runs, the frames
// it decrypts per publisher and source, and the screen tracks that ended.
type screenBot struct {
	ready  chan string
	mu     sync.Mutex
	frames map[string]int // publisher + "/" + source
	ended  map[string]int // publisher -> screen tracks whose media ended
}

func runScreenBot(t *testing.T, c *testcluster.Cluster, m api.CreatedMeeting) *screenBot {
	t.Helper()
	l, err := api.ParseLink(m.JoinURL)
	if err != nil {
		t.Fatalf("join link %q: %v", m.JoinURL, err)
	}
	sb := &screenBot{ready: make(chan string, 1), frames: map[string]int{}, ended: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-done
	})
	go func() {
		defer close(done)
		_, _ = bot.Run(ctx, bot.Config{
			Server: c.URL, Meeting: l.Meeting, Secret: l.Secret, HostFingerprint: l.HostFingerprint,
			Name: "Bot", Country: "DE", Linger: botLinger, LoopbackOnly: true, HTTPClient: c.HTTPClient(),
			Ready: func(id string) { sb.ready <- id },
			OnFrame: func(from, source string) {
				sb.mu.Lock()
				sb.frames[from+"/"+source]++
				sb.mu.Unlock()
			},
			OnTrackEnded: func(tr bot.TrackReport) {
				if tr.Source == signal.SourceScreen {
					sb.mu.Lock()
					sb.ended[tr.ParticipantID]++
					sb.mu.Unlock()
				}
			},
		})
	}()
	select {
	case <-sb.ready:
	case <-time.After(30 * time.Second):
		t.Fatal("bot did not join")
	}
	return sb
}

func (sb *screenBot) count(from, source string) int {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.frames[from+"/"+source]
}

func (sb *screenBot) endedScreens(from string) int {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.ended[from]
}

// screenFramesJS is the decoded frame count of the screen tile of
// participant pid on a page, -1 while there is none.
func screenFramesJS(pid string) string {
	return fmt.Sprintf(`((v) => v ? v.getVideoPlaybackQuality().totalVideoFrames : -1)(document.querySelector('[data-testid=screen-tile] video[data-screen=%s]'))`, jsString(pid))
}

// waitScreenAdvancing waits until b plays pid's shared screen with its
// decoded frames going up.
func (b *browser) waitScreenAdvancing(pid string, d time.Duration) {
	b.t.Helper()
	detail := `document.querySelectorAll('[data-testid=screen-tile]').length + ' screen tiles; ' + JSON.stringify(Object.fromEntries([...window.oakmeet.call.tracks].map(([k, v]) => [k, Object.keys(v)])))`
	b.waitJS(d, "the screen tile of "+pid+" playing", screenFramesJS(pid)+` >= 5`, detail)
	from := evalJS[int](b, screenFramesJS(pid))
	b.waitJS(d, "the screen tile's frames advancing", fmt.Sprintf(`%s >= %d`, screenFramesJS(pid), from+10), screenFramesJS(pid))
}

func (b *browser) clickShare() {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, chromedp.Click(chromedp.CSS(`[data-testid=share-screen]`))); err != nil {
		b.t.Fatalf("%s: click share-screen: %v", b.name, err)
	}
}

func (b *browser) waitNoScreenTiles(d time.Duration) {
	b.t.Helper()
	b.waitJS(d, "no screen tile", `document.querySelectorAll('[data-testid=screen-tile]').length === 0`,
		`document.querySelectorAll('[data-testid=screen-tile]').length + ' screen tiles'`)
}

// TestScreenShareSeenAndStopped: page A shares its screen; page B plays it
// in a screen tile naming the presenter, decrypted with no failures under
// the same security code, and a Go bot decrypts the screen's frames as a
// screen. A stops with the button: the tile goes on both pages and the
// bot's screen track ends. A shares again and the browser's own "stop
// sharing" (the track's ended event) stops it the same way.
func TestScreenShareSeenAndStopped(t *testing.T) {
	c, m := startMeeting(t)
	sb := runScreenBot(t, c, m)
	pages := openTabs(t, browserOpts{}, "a", "b")
	a, b := pages[0], pages[1]
	a.navigate(joinURL(c, m, "Ann", "DE"))
	b.navigate(joinURL(c, m, "Ben", "DE"))
	waitVideosAdvancing(2, 60*time.Second, a, b)
	code := a.waitCode(3, 30*time.Second)
	if got := b.waitCode(3, 30*time.Second); got != code {
		t.Fatalf("security codes differ: %q, %q", code, got)
	}
	aID := evalJS[string](a, `window.oakmeet.call.self.id`)

	for round, stop := range []string{"button", "browser"} {
		a.clickShare()
		a.waitJS(30*time.Second, "A's own screen tile", `!!document.querySelector('[data-testid=screen-tile][data-screen=self]') && !!window.oakmeet.call.local.screen`, `document.body.innerText`)
		b.waitScreenAdvancing(aID, 60*time.Second)
		if got := b.text(`[data-testid=screen-tile][data-screen=` + aID + `] [data-testid=presenter]`); got != "Ann is presenting" {
			t.Errorf("presenter label %q", got)
		}
		if n := evalJS[int](b, `document.querySelectorAll('video[data-participant]').length`); n != 3 {
			t.Errorf("B shows %d camera videos, want 3 (its own, A's and the bot's)", n)
		}
		from := sb.count(aID, signal.SourceScreen)
		testcluster.WaitFor(t, 60*time.Second, "the bot decrypting A's screen", func() bool {
			return sb.count(aID, signal.SourceScreen) >= from+20
		})
		if s := b.decryptStats(); s.Failures != 0 {
			t.Errorf("B: %d decryption failures:%s", s.Failures, s.Detail)
		}
		if got := b.securityCode(); got != code {
			t.Errorf("B's security code changed to %q while sharing", got)
		}

		ended := sb.endedScreens(aID)
		switch stop {
		case "button":
			a.clickShare()
		case "browser":
			evalJS[bool](a, `window.oakmeet.call.local.screen.dispatchEvent(new Event('ended'))`)
		}
		b.waitNoScreenTiles(30 * time.Second)
		a.waitNoScreenTiles(30 * time.Second)
		if evalJS[bool](a, `!!window.oakmeet.call.local.screen`) {
			t.Errorf("round %d: A still shares after stop by %s", round, stop)
		}
		testcluster.WaitFor(t, 30*time.Second, "the bot's screen track from A ending", func() bool {
			return sb.endedScreens(aID) > ended
		})
	}
	for _, p := range pages {
		p.checkConsole()
	}
}

// TestScreenShareSurvivesMove: the host shares its screen, then changes
// the policy so that its node is ruled out; it moves to another node and
// its share goes with it: the guest plays the new participant's screen
// tile, without the host sharing again.
func TestScreenShareSurvivesMove(t *testing.T) {
	needBrowser(t)
	c := testcluster.Start(t, policy.Policy{}, testcluster.World())
	pages := openTabs(t, browserOpts{}, "host", "guest")
	host, guest := pages[0], pages[1]
	m := createInBrowser(t, c, host, "Screen move", false)
	host.navigate(hostJoinURL(c, m, "Host", "DE"))
	guest.navigate(joinURL(c, m, "Guest", "DE"))
	for _, b := range []*browser{host, guest} {
		b.waitJS(30*time.Second, "placed on the German node", `document.querySelector('[data-testid=node-country]')?.textContent === 'DE'`, `document.body.innerText`)
	}
	waitVideosAdvancing(1, 60*time.Second, host, guest)
	before := evalJS[string](host, `window.oakmeet.call.self.id`)
	// The policy is edited first and applied once the share plays.
	edit, cancelEdit := context.WithTimeout(host.ctx, 60*time.Second)
	defer cancelEdit()
	if err := chromedp.Do(edit,
		chromedp.Click(chromedp.CSS(`[data-testid=tab-routing]`)),
		chromedp.SendKeys(chromedp.CSS(`.side [data-testid=block-input]`), "Germany"+kb.Enter),
	); err != nil {
		t.Fatalf("edit policy: %v", err)
	}
	host.clickShare()
	guest.waitScreenAdvancing(before, 60*time.Second)
	applied := false
	for try := 0; try < 3 && !applied; try++ {
		if err := chromedp.Do(edit, chromedp.Click(chromedp.CSS(`.side [data-testid=apply-policy]`))); err != nil {
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
	for _, b := range []*browser{host, guest} {
		b.waitJS(60*time.Second, "moved off the German node",
			`((c) => c !== '' && c !== 'DE')(document.querySelector('[data-testid=node-country]')?.textContent ?? '')`,
			`document.querySelector('[data-testid=node-country]')?.textContent + ' ' + document.body.innerText`)
	}
	after := evalJS[string](host, `window.oakmeet.call.self.id`)
	if after == before {
		t.Fatalf("participant id unchanged after the move: %s", after)
	}
	if !evalJS[bool](host, `!!window.oakmeet.call.local.screen && window.oakmeet.call.local.screen.readyState === 'live'`) {
		t.Fatal("the host's share ended with the move")
	}
	guest.waitScreenAdvancing(after, 60*time.Second)
	guest.waitJS(30*time.Second, "only the moved host's screen tile", `document.querySelectorAll('[data-testid=screen-tile]').length === 1`,
		`[...document.querySelectorAll('[data-testid=screen-tile]')].map((e) => e.dataset.screen).join(' ')`)
	if s := guest.decryptStats(); s.Failures != 0 {
		t.Errorf("guest: %d decryption failures:%s", s.Failures, s.Detail)
	}
	for _, p := range pages {
		p.checkConsole()
	}
}
