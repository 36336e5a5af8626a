package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The browser tests drive real headless Chromium with a fake camera and
// microphone. Without Chromium they skip, unless OAKMEET_REQUIRE_BROWSER=1
// (CI) makes that a failure. OAKMEET_CHROMIUM names another binary.

func chromiumPath() string {
	if p := os.Getenv("OAKMEET_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

func needBrowser(t *testing.T) string {
	t.Helper()
	p := chromiumPath()
	if p == "" {
		if os.Getenv("OAKMEET_REQUIRE_BROWSER") == "1" {
			t.Fatal("Chromium not found and OAKMEET_REQUIRE_BROWSER=1: install the chromium package or set OAKMEET_CHROMIUM")
		}
		t.Skip("Chromium not found (install the chromium package or set OAKMEET_CHROMIUM); skipping browser test")
	}
	return p
}

// browser is one Chromium process with its own profile and one tab.
type browser struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

type browserOpts struct {
	width, height int
}

func newBrowser(t *testing.T, name string, o browserOpts) *browser {
	t.Helper()
	path := needBrowser(t)
	if o.width == 0 {
		o.width, o.height = 1280, 800
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(o.width, o.height),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("hide-scrollbars", true),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		acancel()
	})
	b := &browser{t: t, name: name, ctx: ctx}
	messages := chromedp.Console(ctx)
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
	return b
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

// waitJS polls a boolean expression until it is true or d passes; what
// names the condition, and detail (an expression) says what the page showed
// when it timed out.
func (b *browser) waitJS(d time.Duration, what, cond, detail string) {
	b.t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool]("!!("+cond+")", chromedp.EvalAwaitPromise))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			got := ""
			if detail != "" {
				got, _ = chromedp.Run(b.ctx, chromedp.Evaluate[string]("String("+detail+")"))
			}
			b.t.Fatalf("%s: timed out after %s waiting for %s (eval err %v); page shows: %s\nconsole:\n%s", b.name, d, what, err, got, b.consoleText())
		}
		time.Sleep(150 * time.Millisecond) // polling interval, not synchronisation
	}
}

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

func (b *browser) screenshot() []byte {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("%s: screenshot: %v", b.name, err)
	}
	return png
}
