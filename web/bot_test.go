package web_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/signal"
	"github.com/oakmeet/oakmeet/testcluster"
)

// botFrames is how many frames of the page's audio and of its video the
// bot must decrypt.
const botFrames = 20

// botLinger is how long a bot goes on receiving once told to stop; frames
// between two processes on one machine are in flight for milliseconds.
const botLinger = 500 * time.Millisecond

// waitEncoded waits until the page has encrypted n more frames of its
// audio and n more of its video than it had when called.
func (b *browser) waitEncoded(n int, d time.Duration) {
	b.t.Helper()
	const encodedJS = `window.oakmeet.stats().then((s) => Object.fromEntries(['audio', 'video'].map((k) =>
		[k, s.filter((x) => x.operation === 'encode' && x.kind === k).reduce((a, x) => a + x.frames, 0)])))`
	from := evalJS[map[string]int](b, encodedJS)
	b.waitJS(d, fmt.Sprintf("%d more frames of audio and of video encrypted (from %v)", n, from),
		fmt.Sprintf(`(%s).then((f) => f.audio >= %d && f.video >= %d)`, encodedJS, from["audio"]+n, from["video"]+n),
		`(`+encodedJS+`).then(JSON.stringify)`)
}

// testBot is a Go participant (package bot) in a test's meeting.
type testBot struct {
	ready  <-chan string      // its participant id, once it has joined
	report <-chan *bot.Report // what it saw, once it has left
	// stop makes it leave: it stops publishing and reports after
	// botLinger more of receiving, for the frames still in flight.
	stop context.CancelFunc
	// frames counts what it has decrypted so far, by publisher and source.
	frames *frameCounts
}

// frameCounts is what a bot has decrypted so far, told by its OnFrame.
type frameCounts struct {
	mu sync.Mutex
	n  map[[2]string]int // participant id, source
}

func (f *frameCounts) add(pid, source string) {
	f.mu.Lock()
	f.n[[2]string{pid, source}]++
	f.mu.Unlock()
}

func (f *frameCounts) of(pid, source string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n[[2]string{pid, source}]
}

// waitDecrypted waits until the bot has decrypted at least n frames of
// each of pid's sources. What a page has encrypted says little about what
// one receiver got: a page's camera sends three simulcast layers, and the
// node forwards one of them.
func (b testBot) waitDecrypted(t *testing.T, pid string, n int, d time.Duration, sources ...string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		done := true
		for _, s := range sources {
			done = done && b.frames.of(pid, s) >= n
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			got := make([]string, len(sources))
			for i, s := range sources {
				got[i] = fmt.Sprintf("%s %d", s, b.frames.of(pid, s))
			}
			t.Fatalf("the bot decrypted %s frames from %s within %v, want %d of each", strings.Join(got, ", "), pid, d, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runBot starts a bot in the meeting with its join link; it stays until
// stop or the end of the test.
func runBot(t *testing.T, c *testcluster.Cluster, m api.CreatedMeeting, name, country string) testBot {
	return runBotWith(t, c, m, name, country, nil)
}

// runBotWith is runBot for a bot whose end is part of the test: ended, if
// set, gets the error it ended with (and no failure is reported for it).
func runBotWith(t *testing.T, c *testcluster.Cluster, m api.CreatedMeeting, name, country string, ended chan<- error) testBot {
	t.Helper()
	l, err := api.ParseLink(m.JoinURL)
	if err != nil {
		t.Fatalf("join link %q: %v", m.JoinURL, err)
	}
	out := make(chan *bot.Report, 1)
	in := make(chan string, 1)
	frames := &frameCounts{n: map[[2]string]int{}}
	// The bot leaves before the cluster stops (cleanups run last first).
	// What goes wrong as the test ends is no failure; after stop it is.
	ctx, cancel := context.WithCancel(context.Background())
	ending := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() {
		close(ending)
		cancel()
		<-done
	})
	go func() {
		defer close(done)
		rep, err := bot.Run(ctx, bot.Config{
			Server: c.URL, Meeting: l.Meeting, Secret: l.Secret, HostFingerprint: l.HostFingerprint,
			Name: name, Country: country, Linger: botLinger, LoopbackOnly: true, HTTPClient: c.HTTPClient(),
			Ready:   func(id string) { in <- id },
			OnFrame: frames.add,
		})
		switch {
		case ended != nil:
			ended <- err
		default:
			select {
			case <-ending:
			default:
				if err != nil {
					t.Errorf("bot %s: %v", name, err)
				}
			}
		}
		out <- rep
	}()
	return testBot{ready: in, report: out, stop: cancel, frames: frames}
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
	b := runBot(t, c, m, "Bot", "DE")
	page := openTabs(t, browserOpts{}, "page")[0] // while the bot joins
	select {
	case <-b.ready:
	case <-time.After(20 * time.Second):
		t.Fatal("bot did not join")
	}
	page.navigate(joinURL(c, m, "Ada", "DE"))
	page.waitJS(20*time.Second, "the page in the meeting", `window.oakmeet?.call?.self?.id`, `document.body.innerText`)
	pageID := evalJS[string](page, `window.oakmeet.call.self.id`)
	page.waitVideoAdvancing(1, 30*time.Second)
	code := page.waitCode(2, 20*time.Second)
	if s := page.decryptStats(); s.Video == 0 || s.Failures != 0 {
		t.Errorf("page decrypted %d video frames from the bot with %d failures", s.Video, s.Failures)
	}
	// From the code on, the page encrypts under keys the bot holds. Once it
	// has sent the bot as many frames of each kind as the bot must decrypt
	// (and the bot keeps receiving botLinger longer), the bot may leave.
	page.waitEncoded(botFrames, 20*time.Second)
	b.waitDecrypted(t, pageID, botFrames, 20*time.Second, signal.SourceMicrophone, signal.SourceCamera)
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

// TestHostAdmitsAndRemovesBot: a Go bot with the meeting's invite link
// waits in the browser host's lobby; the host admits it from the lobby
// list, the two share a security code, and the host removes it: the bot
// ends with "removed" and an error, and the page's code changes.
func TestHostAdmitsAndRemovesBot(t *testing.T) {
	needBrowser(t)
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:2])
	host := newBrowser(t, "host", browserOpts{})
	m := createInBrowser(t, c, host, "With a bot", true)
	host.navigate(hostJoinURL(c, m, "Host", "DE"))
	host.waitJS(30*time.Second, "the host in the meeting", `window.oakmeet?.call?.state === 'connected'`, `document.body.innerText`)

	ended := make(chan error, 1)
	b := runBotWith(t, c, m, "Robot", "DE", ended)
	host.click("the People tab", `[data-testid=tab-people]`)
	host.waitJS(20*time.Second, "the bot in the lobby list", lobbyEntrySel("Robot"), `document.querySelector('.side')?.innerText`)
	evalJS[bool](host, `(`+lobbyEntrySel("Robot")+`).querySelector('[data-testid=admit]').click(), true`)
	var botID string
	select {
	case botID = <-b.ready:
	case <-time.After(30 * time.Second):
		t.Fatal("the admitted bot did not join")
	}
	host.waitVideoAdvancing(1, 30*time.Second)
	code := host.waitCode(2, 20*time.Second)
	host.waitJS(10*time.Second, "the bot's signed name", fmt.Sprintf(`document.querySelector('[data-testid=roster] li[data-participant=%q]')?.textContent.includes('Robot')`, botID), `document.querySelector('[data-testid=roster]').innerText`)

	host.click("the bot's remove button", fmt.Sprintf(`[data-testid=roster] li[data-participant=%q] [data-testid=remove]`, botID))
	host.click("the confirmation", `[data-testid=confirm-remove]`)
	var err error
	select {
	case err = <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the removed bot did not end")
	}
	rep := <-b.report
	if !errors.Is(err, bot.ErrRemoved) || rep == nil || rep.Ended != "removed" {
		t.Errorf("the removed bot ended with %v, report %+v", err, rep)
	}
	host.waitJS(20*time.Second, "a code without the bot", fmt.Sprintf(`%s !== %s && %s === 1`, codeJS, jsString(code), rosterJS), codeJS)
	host.checkConsole()
}
