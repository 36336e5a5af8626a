package web_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/oakmeet/oakmeet/httpserve/httpservetest"
)

// The browser tests drive real headless Chromium with a fake camera and
// microphone. Without Chromium they skip, unless OAKMEET_REQUIRE_BROWSER=1
// (CI) makes that a failure. OAKMEET_CHROMIUM names another binary.
//
// The tests share one Chromium process, started by the first test that
// needs it: a start costs about half a second, and the tests open a dozen
// pages. Each page gets a browser context of its own (what Chromium calls
// an incognito profile), so pages share no storage, identity keys or
// permissions, as if each ran in a browser of its own.

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
	// The test goes on to start a cluster or a server: the browser starts
	// meanwhile.
	sharedChromium.startSoon(p)
	return p
}

// defaultWidth and defaultHeight are the size of a page's window unless a
// test asks for another.
const defaultWidth, defaultHeight = 1280, 800

// chromium is the test binary's one browser process.
type chromium struct {
	once sync.Once
	ctx  context.Context // the browser's first tab; pages are opened beside it
	err  error
	stop func()
	// frameWidth and frameHeight are how much of the first window is not
	// page: a browser of its own would have given a page that much less
	// than its window size.
	frameWidth, frameHeight int
	// tlsKey is the one server key whose certificates the browser accepts
	// from any issuer (--ignore-certificate-errors-spki-list): tests serve
	// HTTPS with certificates their own CA issues for it.
	tlsKey *ecdsa.PrivateKey
}

// sharedChromium is package-level because the tests of the package share
// it: TestMain stops it when they are done. It is set once (by once) and
// used concurrently only through chromedp, which is safe for that.
var sharedChromium chromium

func TestMain(m *testing.M) {
	code := m.Run()
	sharedChromium.close()
	sharedFirefox.close()
	os.Exit(code)
}

// startSoon starts the browser in the background unless it has started.
func (c *chromium) startSoon(path string) {
	go c.start(path)
}

// start starts the browser unless it has started; it returns once the
// browser is up, or has failed to start.
func (c *chromium) start(path string) {
	c.once.Do(func() { c.err = c.launch(path) })
}

// browserContext returns the shared browser, starting it on first use.
func (c *chromium) browserContext(t *testing.T) context.Context {
	t.Helper()
	path := needBrowser(t)
	c.start(path)
	if c.err != nil {
		t.Fatalf("start Chromium %s: %v", path, c.err)
	}
	return c.ctx
}

// close stops the browser, once a start under way has ended.
func (c *chromium) close() {
	c.once.Do(func() {})
	if c.stop != nil {
		c.stop()
	}
}

// launch starts the process and measures its window frame.
func (c *chromium) launch(path string) error {
	dir, err := os.MkdirTemp("", "oakmeet-chromium-")
	if err != nil {
		return err
	}
	tlsKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	spki, err := httpservetest.SPKIHash(&tlsKey.PublicKey)
	if err != nil {
		return err
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("ignore-certificate-errors-spki-list", spki),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(dir),
		chromedp.WindowSize(defaultWidth, defaultHeight),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		// getDisplayMedia picks the whole (fake) screen without a picker.
		chromedp.Flag("auto-select-desktop-capture-source", "Entire screen"),
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
	stop := func() {
		cancel()
		acancel()
		_ = os.RemoveAll(dir)
	}
	// The first run starts the process; pages are new tabs of it.
	frame, err := chromedp.Run(ctx, chromedp.Evaluate[[2]int](`[outerWidth - innerWidth, outerHeight - innerHeight]`))
	if err != nil {
		stop()
		return fmt.Errorf("start: %w", err)
	}
	c.ctx, c.stop, c.frameWidth, c.frameHeight, c.tlsKey = ctx, stop, frame[0], frame[1], tlsKey
	return nil
}
