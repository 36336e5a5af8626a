package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
)

// browser is one page: a tab, in a browser context of its own, of the
// shared Chromium.
type browser struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

// browserOpts are a page's window: zero is the default size.
type browserOpts struct {
	width, height int
}

func newBrowser(t *testing.T, name string, o browserOpts) *browser {
	t.Helper()
	return openTabs(t, o, name)[0]
}

// openTabs opens a page for each name, all at once: opening one takes a
// good part of a second on a busy machine.
func openTabs(t *testing.T, o browserOpts, names ...string) []*browser {
	t.Helper()
	root := sharedChromium.browserContext(t)
	if o.width == 0 {
		o.width, o.height = defaultWidth, defaultHeight
	}
	bs := make([]*browser, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		ctx, cancel := chromedp.NewContext(root, chromedp.WithNewBrowserContext())
		// Closing the tab disposes of its browser context.
		t.Cleanup(cancel)
		bs[i] = &browser{t: t, name: name, ctx: ctx}
		t.Cleanup(bs[i].logConsoleOnFailure)
		wg.Go(func() { errs[i] = bs[i].open(o) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: open a tab: %v", names[i], err)
		}
	}
	return bs
}

// open opens the tab, gives it the page area a browser started with the
// window size of o would have, and starts collecting its console messages.
func (b *browser) open(o browserOpts) error {
	if err := chromedp.Do(b.ctx); err != nil {
		return err
	}
	// A new window's frame is not the first window's: size what the page
	// sees, not the frame.
	w, err := chromedp.CallBrowser(b.ctx, cdpbrowser.GetWindowForTarget, cdpbrowser.GetWindowForTargetParams{TargetID: chromedp.FromContext(b.ctx).Target.TargetID})
	if err != nil {
		return err
	}
	if _, err := chromedp.CallBrowser(b.ctx, cdpbrowser.SetContentsSize, cdpbrowser.SetContentsSizeParams{
		WindowID: w.WindowID, Width: int64(o.width - sharedChromium.frameWidth), Height: int64(o.height - sharedChromium.frameHeight),
	}); err != nil {
		return fmt.Errorf("size the page to %dx%d: %w", o.width, o.height, err)
	}
	messages := chromedp.Console(b.ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	return nil
}

func (b *browser) navigate(url string) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, chromedp.Navigate(url)); err != nil {
		b.t.Fatalf("%s: navigate %s: %v", b.name, url, err)
	}
}

// evalJS evaluates an expression (awaiting a promise) and decodes its value.
func evalJS[T any](b *browser, js string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("%s: evaluate %q: %v", b.name, js, err)
	}
	return v
}

// waitJS waits until a boolean expression is true or d passes; what
// names the condition, and detail (an expression) says what the page showed
// when it timed out. Either may be a promise.
//
// The page polls the expression itself (pollJS), so a change is seen within
// a few milliseconds rather than a round trip to the test later, in slices
// of at most a second: an evaluation that a navigation ends is started again.
func (b *browser) waitJS(d time.Duration, what, cond, detail string) {
	b.t.Helper()
	deadline := time.Now().Add(d)
	for {
		slice := min(time.Until(deadline), time.Second)
		failed, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](fmt.Sprintf(pollJS, cond, slice.Milliseconds()), chromedp.EvalAwaitPromise))
		if err == nil && failed == "" {
			return
		}
		if time.Now().After(deadline) {
			got := ""
			if detail != "" {
				got, _ = chromedp.Run(b.ctx, chromedp.Evaluate[string]("(async () => String(await ("+detail+")))()", chromedp.EvalAwaitPromise))
			}
			if err == nil {
				err = errors.New(failed)
			}
			b.t.Fatalf("%s: timed out after %s waiting for %s (%v); page shows: %s\nconsole:\n%s", b.name, d, what, err, got, b.consoleText())
		}
		if err != nil {
			// No page to evaluate in yet (a navigation is under way): ask
			// again shortly rather than at once.
			time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
		}
	}
}

// pollJS is a promise that resolves to "" as soon as the expression %[1]s
// (or the promise it gives) is true, checking every 10 ms, or after %[2]d
// ms to what the last check gave: "false" or the exception it threw.
const pollJS = `new Promise((resolve) => {
	const end = performance.now() + %[2]d;
	const check = async () => {
		let last;
		try {
			if (await (%[1]s)) return resolve('');
			last = 'false';
		} catch (e) {
			last = 'exception: ' + e;
		}
		if (performance.now() >= end) return resolve(last);
		setTimeout(check, 10);
	};
	check();
})`

func (b *browser) text(selector string) string {
	return evalJS[string](b, fmt.Sprintf(`(document.querySelector(%s)?.textContent ?? '').trim()`, jsString(selector)))
}

// jsString is s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func (b *browser) consoleText() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var s strings.Builder
	for _, m := range b.console {
		fmt.Fprintf(&s, "  %s %s\n", m.Type, m.Text)
	}
	return s.String()
}

// checkConsole fails the test on any console error or uncaught exception.
// Refused HTTP requests (a 503 join) are logged by Chromium itself as
// network errors; allowStatus lists the statuses that are expected.
func (b *browser) checkConsole(allowStatus ...int) {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.console {
		if m.Type != chromedp.ConsoleError && m.Type != chromedp.ConsoleException {
			continue
		}
		allowed := false
		for _, s := range allowStatus {
			if m.Source == "network" && strings.Contains(m.Text, fmt.Sprintf("status of %d", s)) {
				allowed = true
			}
		}
		if !allowed {
			b.t.Errorf("%s: console %s: %s (%s:%d)", b.name, m.Type, m.Text, m.URL, m.Line)
		}
	}
}

// logConsoleOnFailure writes the page's console to the test log when the
// test failed: what the page said is most of what explains a failure.
func (b *browser) logConsoleOnFailure() {
	if !b.t.Failed() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.console {
		b.t.Logf("%s console %s: %s", b.name, m.Type, m.Text)
	}
}

func (b *browser) screenshot() []byte {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("%s: screenshot: %v", b.name, err)
	}
	return png
}
