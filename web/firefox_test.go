package web_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The Firefox tests drive a real headless Firefox (ESR) over WebDriver
// BiDi (bidi_test.go). Like Chromium, one process serves the whole test
// binary, and each page gets a user context of its own (Firefox's
// containers), so pages share no storage or identity keys. Without
// firefox-esr they skip, unless OAKMEET_REQUIRE_BROWSER=1 makes that a
// failure; OAKMEET_FIREFOX names another binary.

func firefoxPath() string {
	if p := os.Getenv("OAKMEET_FIREFOX"); p != "" {
		return p
	}
	for _, name := range []string{"firefox-esr", "firefox"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

func needFirefox(t *testing.T) string {
	t.Helper()
	p := firefoxPath()
	if p == "" {
		if os.Getenv("OAKMEET_REQUIRE_BROWSER") == "1" {
			t.Fatal("Firefox not found and OAKMEET_REQUIRE_BROWSER=1: install the firefox-esr package or set OAKMEET_FIREFOX")
		}
		t.Skip("Firefox not found (install the firefox-esr package or set OAKMEET_FIREFOX); skipping Firefox test")
	}
	go sharedFirefox.start(p)
	return p
}

// firefoxPrefs go into the profile's user.js: a fake camera and
// microphone with no permission prompt, host candidates on loopback (the
// test nodes listen on 127.0.0.1), playback without a user gesture, and no
// throttling of a page nobody looks at.
const firefoxPrefs = `user_pref("media.navigator.streams.fake", true);
user_pref("media.navigator.permission.disabled", true);
user_pref("media.peerconnection.ice.loopback", true);
user_pref("media.peerconnection.ice.obfuscate_host_addresses", false);
user_pref("media.autoplay.default", 0);
user_pref("media.autoplay.blocking_policy", 0);
user_pref("media.suspend-background-video.enabled", false);
user_pref("dom.timeout.enable_budget_timer_throttling", false);
user_pref("dom.min_background_timeout_value", 4);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);
user_pref("app.update.disabledForTesting", true);
`

// firefox is the test binary's one Firefox process and its BiDi session.
type firefox struct {
	once sync.Once
	err  error
	cmd  *exec.Cmd
	dir  string
	conn *bidiConn

	mu    sync.Mutex
	pages map[string]*firefoxPage // by browsing context id, for their log events
}

// sharedFirefox is package-level for the reason sharedChromium is:
// TestMain stops it when the tests are done.
var sharedFirefox firefox

func (f *firefox) start(path string) {
	f.once.Do(func() { f.err = f.launch(path) })
}

var bidiListening = regexp.MustCompile(`WebDriver BiDi listening on (ws://\S+)`)

func (f *firefox) launch(path string) error {
	dir, err := os.MkdirTemp("", "oakmeet-firefox-")
	if err != nil {
		return err
	}
	f.dir = dir
	if err := os.WriteFile(filepath.Join(dir, "user.js"), []byte(firefoxPrefs), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(path, "--headless", "--no-remote", "--profile", dir, "--remote-debugging-port", "0")
	// Its own process group: close ends Firefox's content processes too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(), "MOZ_CRASHREPORTER_DISABLE=1")
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return err
	}
	f.cmd = cmd
	go func() {
		_ = cmd.Wait()
		w.Close()
	}()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if m := bidiListening.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		close(found)
		// Whatever a line too long for the scanner left: Firefox must
		// never block writing to a pipe nobody reads.
		_, _ = io.Copy(io.Discard, r)
	}()
	var url string
	select {
	case u, ok := <-found:
		if !ok {
			return errors.New("Firefox exited before listening for WebDriver BiDi")
		}
		url = u
	case <-time.After(60 * time.Second):
		return errors.New("Firefox did not listen for WebDriver BiDi within 60 s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := dialBiDi(ctx, strings.TrimSuffix(url, "/")+"/session", f.event)
	if err != nil {
		return err
	}
	f.conn = conn
	return conn.call(ctx, "session.subscribe", map[string]any{"events": []string{"log.entryAdded"}}, nil)
}

// event hands a log entry to the page it came from.
func (f *firefox) event(method string, params json.RawMessage) {
	if method != "log.entryAdded" {
		return
	}
	var e struct {
		Level  string `json:"level"`
		Text   string `json:"text"`
		Type   string `json:"type"`
		Source struct {
			Context string `json:"context"`
		} `json:"source"`
	}
	if json.Unmarshal(params, &e) != nil {
		return
	}
	f.mu.Lock()
	p := f.pages[e.Source.Context]
	f.mu.Unlock()
	if p != nil {
		p.mu.Lock()
		p.console = append(p.console, firefoxLog{kind: e.Type, level: e.Level, text: e.Text})
		p.mu.Unlock()
	}
}

// close stops Firefox, once a start under way has ended.
func (f *firefox) close() {
	f.once.Do(func() {})
	if f.conn != nil {
		f.conn.close()
	}
	if f.cmd != nil && f.cmd.Process != nil {
		_ = syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL)
	}
	if f.dir != "" {
		_ = os.RemoveAll(f.dir)
	}
}

// firefoxPage is one Firefox window in a user context of its own, with the
// part of browser's surface the tests need.
type firefoxPage struct {
	t           *testing.T
	name        string
	context     string // browsing context id
	userContext string

	mu      sync.Mutex
	console []firefoxLog
}

// firefoxLog is a log.entryAdded event: kind "console" or "javascript"
// (an uncaught exception), level "debug", "info", "warn" or "error".
type firefoxLog struct {
	kind, level, text string
}

func (l firefoxLog) String() string { return l.kind + " " + l.level + " " + l.text }

// firefoxOpts are what a page needs before it loads: preload is a
// function declaration run in every document before the page's scripts.
type firefoxOpts struct {
	preload string
}

func newFirefoxPage(t *testing.T, name string, o firefoxOpts) *firefoxPage {
	t.Helper()
	path := needFirefox(t)
	f := &sharedFirefox
	f.start(path)
	if f.err != nil {
		t.Fatalf("start Firefox %s: %v", path, f.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var uc struct {
		UserContext string `json:"userContext"`
	}
	if err := f.conn.call(ctx, "browser.createUserContext", nil, &uc); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	p := &firefoxPage{t: t, name: name, userContext: uc.UserContext}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// Removing the user context closes its window too; one left open
		// would go on using the CPU and network of the tests after it.
		if err := f.conn.call(ctx, "browser.removeUserContext", map[string]any{"userContext": p.userContext}, nil); err != nil {
			t.Errorf("%s: close: %v", name, err)
		}
		f.mu.Lock()
		delete(f.pages, p.context)
		f.mu.Unlock()
	})
	t.Cleanup(p.logConsoleOnFailure)
	if o.preload != "" {
		if err := f.conn.call(ctx, "script.addPreloadScript", map[string]any{
			"functionDeclaration": o.preload, "userContexts": []string{p.userContext},
		}, nil); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// A window, not a tab: a background tab's media and timers are
	// throttled, and each page is the front of its own window.
	var bc struct {
		Context string `json:"context"`
	}
	if err := f.conn.call(ctx, "browsingContext.create", map[string]any{"type": "window", "userContext": p.userContext}, &bc); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	p.context = bc.Context
	f.mu.Lock()
	if f.pages == nil {
		f.pages = map[string]*firefoxPage{}
	}
	f.pages[p.context] = p
	f.mu.Unlock()
	if err := f.conn.call(ctx, "browsingContext.setViewport", map[string]any{
		"context": p.context, "viewport": map[string]any{"width": defaultWidth, "height": defaultHeight},
	}, nil); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return p
}

func (p *firefoxPage) navigate(url string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := sharedFirefox.conn.call(ctx, "browsingContext.navigate", map[string]any{"context": p.context, "url": url, "wait": "complete"}, nil); err != nil {
		p.t.Fatalf("%s: navigate %s: %v", p.name, url, err)
	}
}

// eval evaluates an expression (awaiting a promise) into out.
func (p *firefoxPage) eval(js string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return sharedFirefox.conn.evaluate(ctx, p.context, js, out)
}

// evalFirefox is evalJS for a Firefox page.
func evalFirefox[T any](p *firefoxPage, js string) T {
	p.t.Helper()
	var v T
	if err := p.eval(js, &v); err != nil {
		p.t.Fatalf("%s: evaluate %q: %v", p.name, js, err)
	}
	return v
}

// waitJS is browser.waitJS: the page polls the condition (pollJS) in
// slices of a second, until it holds or d passes.
func (p *firefoxPage) waitJS(d time.Duration, what, cond, detail string) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for {
		slice := min(time.Until(deadline), time.Second)
		var failed string
		err := p.eval(fmt.Sprintf(pollJS, cond, slice.Milliseconds()), &failed)
		if err == nil && failed == "" {
			return
		}
		if time.Now().After(deadline) {
			var got string
			if detail != "" {
				_ = p.eval("(async () => String(await ("+detail+")))()", &got)
			}
			if err == nil {
				err = errors.New(failed)
			}
			p.t.Fatalf("%s: timed out after %s waiting for %s (%v); page shows: %s\nconsole:\n%s", p.name, d, what, err, got, p.consoleText())
		}
		if err != nil {
			time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
		}
	}
}

func (p *firefoxPage) consoleText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var s strings.Builder
	for _, m := range p.console {
		fmt.Fprintf(&s, "  %s\n", m)
	}
	return s.String()
}

// checkConsole fails the test on any error logged or thrown in the page.
func (p *firefoxPage) checkConsole() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.console {
		if m.level == "error" {
			p.t.Errorf("%s: console: %s", p.name, m)
		}
	}
}

func (p *firefoxPage) logConsoleOnFailure() {
	if !p.t.Failed() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.console {
		p.t.Logf("%s console %s", p.name, m)
	}
}

func (p *firefoxPage) screenshot() []byte {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var r struct {
		Data string `json:"data"`
	}
	if err := sharedFirefox.conn.call(ctx, "browsingContext.captureScreenshot", map[string]any{"context": p.context}, &r); err != nil {
		p.t.Fatalf("%s: screenshot: %v", p.name, err)
	}
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		p.t.Fatalf("%s: screenshot: %v", p.name, err)
	}
	return png
}
