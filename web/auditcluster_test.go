package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/oakmeet/oakmeet/adversary"
	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// The browser's check of the deployment's transparency log (issue 13)
// against a real cluster: honest, then with the log rewritten by a
// control plane that holds its own key and NATS credentials.

// auditJS is what the page's audit check shows, for a test that timed
// out on it.
const auditJS = `JSON.stringify({state: window.oakmeet?.call?.auditLog?.state, reason: window.oakmeet?.call?.auditLog?.reason, ` +
	`size: window.oakmeet?.call?.auditLog?.size, own: window.oakmeet?.call?.auditLog?.own, call: window.oakmeet?.call?.state, ` +
	`status: document.querySelector('[data-testid=audit-status]')?.textContent})`

// storedJS resolves to the checkpoints this page's IndexedDB holds for
// meeting %q, oldest first.
const storedJS = `new Promise((resolve, reject) => {
	const req = indexedDB.open('oakmeet-audit', 1);
	req.onsuccess = () => {
		const r = req.result.transaction('meetings').objectStore('meetings').get(%q);
		r.onsuccess = () => resolve(r.result?.checkpoints ?? []);
		r.onerror = () => reject(r.error);
	};
	req.onerror = () => reject(req.error);
})`

// consistentJS: the page's check holds, its placement included.
const consistentJS = `window.oakmeet?.call?.auditLog?.state === 'consistent' && window.oakmeet.call.auditLog.ownIncluded`

// alarmJS: the page shows the alarm, in the routing panel and over the
// meeting.
const alarmJS = `window.oakmeet?.call?.auditLog?.state === 'inconsistent' && ` +
	`document.querySelector('[data-testid=audit-status]')?.textContent.startsWith('The audit log contradicts what this browser saw before: ') && ` +
	`!document.querySelector('[data-testid=audit-alarm]').hidden && !document.querySelector('[data-testid=audit-badge]').hidden`

// sizeOf is the tree size of a signed checkpoint's text.
func sizeOf(t *testing.T, note string) int {
	lines := strings.SplitN(note, "\n", 3)
	var n int
	if len(lines) < 3 {
		t.Fatalf("not a checkpoint: %q", note)
	}
	if _, err := fmt.Sscan(lines[1], &n); err != nil {
		t.Fatalf("checkpoint %q: %v", note, err)
	}
	return n
}

// TestPageHoldsTheAuditLog: with an honest control plane a page that
// joins shows "Audit log consistent · N entries · your placement is in
// it", keeps a growing list of checkpoints in IndexedDB as other joins
// and a host policy change are logged, and finds in the log the policy
// change and its own migration to the node it moved to.
func TestPageHoldsTheAuditLog(t *testing.T) {
	needBrowser(t)
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:2])
	b := newBrowser(t, "holder", browserOpts{})
	m := c.CreateMeeting(policy.Policy{})
	b.navigate(joinURL(c, m, "Ann", "DE"))
	b.waitJS(10*time.Second, "connected, the log consistent with the placement in it", `window.oakmeet?.call?.state === 'connected' && `+consistentJS, auditJS)
	b.waitJS(5*time.Second, "the routing panel's words",
		`/^Audit log consistent · \d+ entries · your placement is in it/.test(document.querySelector('[data-testid=audit-status]').textContent)`, auditJS)
	first := evalJS[[]string](b, fmt.Sprintf(storedJS, m.ID))
	if len(first) == 0 {
		t.Fatal("IndexedDB holds no checkpoint")
	}

	for _, country := range []string{"US", "US"} {
		if _, e, status := c.Join(m.ID, country); e != nil {
			t.Fatalf("join from %s: %d %v", country, status, e)
		}
	}
	// The host blocks Germany: the page moves to the United States, and
	// its migration entry must name that node.
	if _, err := c.Host(m.ID).SetPolicy(context.Background(), policy.Policy{BlockedCountries: []string{"DE"}}); err != nil {
		t.Fatal(err)
	}
	before := sizeOf(t, first[len(first)-1])
	b.waitJS(15*time.Second, "more checkpoints held, the policy change and the move in the log",
		fmt.Sprintf(`(async () => { const s = await %s; const a = window.oakmeet.call.auditLog;
			return s.length > %d && a.policyChanges >= 1 && a.own.length >= 2 && a.ownIncluded && a.own.at(-1).country === 'US'; })()`, fmt.Sprintf(storedJS, m.ID), len(first)), auditJS)
	held := evalJS[[]string](b, fmt.Sprintf(storedJS, m.ID))
	if held[0] != first[0] {
		t.Errorf("the first checkpoint held changed: %q, then %q", first[0], held[0])
	}
	if after := sizeOf(t, held[len(held)-1]); after < before+3 {
		t.Errorf("the newest checkpoint held has %d entries; want at least %d (two joins and a policy change after %d)", after, before+3, before)
	}
	if got := evalJS[[]string](b, `window.oakmeet.call.auditLog.checkpoints()`); len(got) != len(held) {
		t.Errorf("checkpoints() gives %d, IndexedDB %d", len(got), len(held))
	}
	b.waitJS(5*time.Second, "the panel naming the policy change", `document.querySelector('[data-testid=audit-status]').textContent.includes('1 policy change in it')`, auditJS)
	if dir := os.Getenv("OAKMEET_SCREENSHOTS"); dir != "" {
		// The server's report (polled every 2 s) caught up with the move.
		b.waitJS(10*time.Second, "the routing report after the move", `document.querySelector('[data-testid=policy-text]').textContent.includes('Germany') && document.querySelector('[data-testid=routes] li .cc')?.textContent === 'US'`, `document.querySelector('[data-testid=routing-panel]').innerText`)
		auditScreenshot(t, b, dir, "log-consistent.png")
	}
	b.checkConsole()
}

// TestPageCatchesATruncatedLog: a page holds a checkpoint; the control
// plane (its own NATS credentials, its own key) cuts the last entries off
// the stored log and starts again, signing checkpoints of the shorter log
// (adversary.RewriteLog, which also signs and stores a checkpoint of the
// rewritten log in place of the one the control plane kept, as its key
// and NATS identity can).
// The page, still in the meeting, shows the alarm; reloaded, it shows it
// again from what IndexedDB held.
func TestPageCatchesATruncatedLog(t *testing.T) {
	needBrowser(t)
	nodes := testcluster.World()[:1]
	c := testcluster.Start(t, policy.Policy{}, nodes)
	f := newStableFront(t, c.URL)
	b := newBrowser(t, "holder", browserOpts{})
	m := c.CreateMeeting(policy.Policy{})
	for range 3 {
		if _, e, status := c.Join(m.ID, "DE"); e != nil {
			t.Fatalf("join: %d %v", status, e)
		}
	}
	b.navigate(f.on(c, joinURL(c, m, "Ann", "DE")))
	b.waitJS(10*time.Second, "connected, the log consistent with the placement in it", `window.oakmeet?.call?.state === 'connected' && `+consistentJS, auditJS)
	held := evalJS[[]string](b, fmt.Sprintf(storedJS, m.ID))
	size := sizeOf(t, held[len(held)-1])

	adversary.RewriteLog(t, c, func(ctx context.Context, l *adversary.AuditLog) error { return l.Truncate(ctx, size-3) })
	f.point(c.URL)
	for _, n := range nodes {
		c.StartNode(n)
	}
	c.WaitHealthy(len(nodes))
	b.waitJS(10*time.Second, "the alarm", alarmJS, auditJS)
	if r := evalJS[string](b, `window.oakmeet.call.auditLog.reason`); !strings.Contains(r, fmt.Sprintf("fewer than the %d", size)) && !strings.Contains(r, fmt.Sprintf("does not extend the one of size %d", size)) {
		t.Errorf("alarm %q: want it to name the %d entries held", r, size)
	}
	if err := chromedp.Do(b.ctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	b.waitJS(15*time.Second, "the alarm after a reload", alarmJS, auditJS)
	if dir := os.Getenv("OAKMEET_SCREENSHOTS"); dir != "" {
		b.waitJS(10*time.Second, "in the meeting", `window.oakmeet.call.state === 'connected' && document.querySelector('[data-testid=status]').hidden`, auditJS)
		auditScreenshot(t, b, dir, "log-alarm.png")
	}
}

// TestPageCatchesAForkedLog: the control plane shows two participants
// two logs. The first holds a checkpoint of the honest log; then an
// entry is rewritten (the first page's placement, now in Japan) and
// every entry after it in its chain sealed again with the real key, so
// the rewritten log verifies on its own (a fork); the second
// participant, who only ever saw the forked log, finds it consistent,
// until it is offered the first participant's checkpoint: then it shows
// the alarm.
func TestPageCatchesAForkedLog(t *testing.T) {
	needBrowser(t)
	nodes := testcluster.World()[:1]
	c := testcluster.Start(t, policy.Policy{}, nodes)
	f := newStableFront(t, c.URL)
	pages := openTabs(t, browserOpts{}, "first", "second")
	first, second := pages[0], pages[1]
	m := c.CreateMeeting(policy.Policy{})
	first.navigate(f.on(c, joinURL(c, m, "First", "DE")))
	first.waitJS(10*time.Second, "the first page consistent", consistentJS, auditJS)
	for range 3 {
		if _, e, status := c.Join(m.ID, "DE"); e != nil {
			t.Fatalf("join: %d %v", status, e)
		}
	}
	first.waitJS(10*time.Second, "the first page holding the grown log",
		fmt.Sprintf(`window.oakmeet.call.auditLog.size >= %d`, 4), auditJS)
	theirs := evalJS[string](first, `window.oakmeet.call.auditLog.checkpoints().at(-1)`)

	// The first page's own placement, said again as a placement in
	// Japan, its chain sealed again with the control plane's real key.
	own := int64(evalJS[float64](first, `window.oakmeet.call.auditLog.own[0].index`))
	adversary.RewriteLog(t, c, func(ctx context.Context, l *adversary.AuditLog) error {
		return l.Edit(ctx, own, func(e *audit.Entry) { e.Node, e.NodeCountry = "jp-tyo", "JP" })
	})
	f.point(c.URL)
	for _, n := range nodes {
		c.StartNode(n)
	}
	c.WaitHealthy(len(nodes))
	// The forked log grows on.
	for range 2 {
		if _, e, status := c.Join(m.ID, "DE"); e != nil {
			t.Fatalf("join: %d %v", status, e)
		}
	}
	second.navigate(f.on(c, joinURL(c, m, "Second", "DE")))
	second.waitJS(10*time.Second, "the second page consistent with the fork", `window.oakmeet?.call?.state === 'connected' && `+consistentJS, auditJS)
	got := evalJS[map[string]any](second, `window.oakmeet.call.auditLog.offer(`+jsString(theirs)+`)`)
	if got["ok"] != false {
		t.Errorf("the first page's checkpoint offered to the second: %v", got)
	}
	second.waitJS(5*time.Second, "the fork alarm", alarmJS, auditJS)
	if r := evalJS[string](second, `window.oakmeet.call.auditLog.reason`); !strings.Contains(r, "a checkpoint another party holds") || !strings.Contains(r, "forked or rewritten") {
		t.Errorf("fork alarm %q: want it to name the offered checkpoint and a forked log", r)
	}
}

// auditScreenshot saves the page with its routing panel open.
func auditScreenshot(t *testing.T, b *browser, dir, name string) {
	if evalJS[string](b, `document.querySelector('.side')?.dataset.panel ?? ''`) != "routing" {
		b.click("the routing tab", `[data-testid=tab-routing]`)
	}
	b.waitJS(5*time.Second, "the routing panel", `document.querySelector('.side [data-testid=audit-status]') !== null`, `document.body.innerText`)
	if err := os.WriteFile(filepath.Join(dir, name), b.screenshot(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// stableFront is an address for the control plane that stays when
// RestartControl moves it to another port: what a page was loaded from
// is its origin, which its IndexedDB belongs to.
type stableFront struct {
	*httptest.Server
	target atomic.Pointer[url.URL]
}

func newStableFront(t *testing.T, upstream string) *stableFront {
	f := &stableFront{}
	f.point(upstream)
	f.Server = httptest.NewServer(&httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(f.target.Load()) },
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, err.Error(), http.StatusBadGateway)
		},
	})
	t.Cleanup(f.Close)
	return f
}

func (f *stableFront) point(upstream string) {
	u, err := url.Parse(upstream)
	if err != nil {
		panic(err)
	}
	f.target.Store(u)
}

// on is a link of the cluster's, on the front's address.
func (f *stableFront) on(c *testcluster.Cluster, link string) string {
	return f.URL + strings.TrimPrefix(link, c.URL)
}

// TestPagesPassOnTheirCheckpoints: members pass the checkpoints they hold
// to each other as checkpoint key messages (signed by their identity
// keys, over the node's relay), and each checks the other's against its
// own. Honest, both stay consistent. A checkpoint of a forked log (the
// same log's size with another root, signed with the control plane's
// real key) that one page passes on is an alarm on the other.
func TestPagesPassOnTheirCheckpoints(t *testing.T) {
	needBrowser(t)
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	pages := openTabs(t, browserOpts{}, "ann", "bea")
	ann, bea := pages[0], pages[1]
	m := c.CreateMeeting(policy.Policy{})
	ann.navigate(joinURL(c, m, "Ann", "DE"))
	bea.navigate(joinURL(c, m, "Bea", "DE"))
	for _, p := range pages {
		p.waitCode(2, 15*time.Second)
	}
	// A join more: a new checkpoint, which each passes on.
	if _, e, status := c.Join(m.ID, "DE"); e != nil {
		t.Fatalf("join: %d %v", status, e)
	}
	for _, p := range pages {
		p.waitJS(10*time.Second, "the other's checkpoint received and consistent",
			`window.oakmeet.call.gossip.received > 0 && `+consistentJS, `JSON.stringify(window.oakmeet.call.gossip) + ' ' + `+auditJS)
	}

	// Ann passes on a checkpoint of a log the control plane signed but
	// Bea was never shown.
	vkey := evalJS[string](bea, `window.oakmeet.call.auditLog.pinned`)
	origin, _, _ := strings.Cut(vkey, "+")
	signer, err := audit.NewSigner(origin, c.ControlKey())
	if err != nil {
		t.Fatal(err)
	}
	size := int64(evalJS[float64](bea, `window.oakmeet.call.auditLog.size`))
	var root [32]byte
	root[0] = 0xfe
	forked, err := audit.SignCheckpoint(signer, audit.Checkpoint{Origin: origin, Size: size, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	evalJS[bool](ann, `(async () => { const s = window.oakmeet.call.session; s.sendRelay('', await s.member.checkpointMessage(`+jsString(string(forked))+`)); return true; })()`)
	bea.waitJS(10*time.Second, "the alarm on the page Ann passed the forked checkpoint to", alarmJS, auditJS)
	if r := evalJS[string](bea, `window.oakmeet.call.auditLog.reason`); !strings.Contains(r, "a checkpoint another party holds") {
		t.Errorf("alarm %q", r)
	}
	ann.checkConsole()
	bea.checkConsole()
}

// TestPageAndBotPassOnCheckpoints: a browser and a Go bot (package bot)
// in one meeting pass their checkpoints to each other as checkpoint key
// messages: the page verifies the bot's with the bot's identity key, the
// bot checks the page's (its report counts them), and both stay
// consistent.
func TestPageAndBotPassOnCheckpoints(t *testing.T) {
	needBrowser(t)
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	m := c.CreateMeeting(policy.Policy{})
	bt := runBot(t, c, m, "Bot", "DE")
	page := openTabs(t, browserOpts{}, "page")[0]
	select {
	case <-bt.ready:
	case <-time.After(15 * time.Second):
		t.Fatal("bot did not join")
	}
	page.navigate(joinURL(c, m, "Ada", "DE"))
	page.waitCode(2, 15*time.Second)
	// A join more: a new checkpoint for both to pass on.
	if _, e, status := c.Join(m.ID, "DE"); e != nil {
		t.Fatalf("join: %d %v", status, e)
	}
	page.waitJS(10*time.Second, "the bot's checkpoint received, consistent",
		`window.oakmeet.call.gossip.received > 0 && `+consistentJS, `JSON.stringify(window.oakmeet.call.gossip) + ' ' + `+auditJS)
	page.waitJS(5*time.Second, "the page's checkpoint sent", `window.oakmeet.call.gossip.sent > 0`, `JSON.stringify(window.oakmeet.call.gossip)`)
	bt.stop()
	var rep *bot.Report
	select {
	case rep = <-bt.report:
	case <-time.After(20 * time.Second):
		t.Fatal("bot did not finish")
	}
	if rep == nil || rep.Audit.State != client.AuditConsistent || rep.Audit.Offered == 0 {
		t.Errorf("bot's audit check: %+v; want consistent with the page's checkpoints offered", rep)
	}
	page.checkConsole()
}

// withholdingFront is a front for the control plane that can withhold
// the log's proofs (503) or keep serving one old checkpoint, in
// GET /api/audit/checkpoint and in join answers: what a control plane
// that hides a fork from a page can do short of lying.
type withholdingFront struct {
	*httptest.Server
	withhold atomic.Bool
	frozen   atomic.Pointer[string]
}

func newWithholdingFront(t *testing.T, upstream string) *withholdingFront {
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	f := &withholdingFront{}
	proxy := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(u) },
		FlushInterval: -1,
		ModifyResponse: func(resp *http.Response) error {
			cp := f.frozen.Load()
			if cp == nil || resp.Request.Method != http.MethodPost || !strings.HasSuffix(resp.Request.URL.Path, "/join") || resp.StatusCode != http.StatusOK {
				return nil
			}
			var jr api.JoinResponse
			err := json.NewDecoder(resp.Body).Decode(&jr)
			_ = resp.Body.Close()
			if err != nil {
				return err
			}
			jr.Audit.Checkpoint = *cp
			b, err := json.Marshal(jr)
			if err != nil {
				return err
			}
			resp.Body = io.NopCloser(bytes.NewReader(b))
			resp.ContentLength = int64(len(b))
			resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
			return nil
		},
	}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.withhold.Load() && (r.URL.Path == api.PathAuditProof || r.URL.Path == api.PathAuditConsistency) {
			http.Error(w, "withheld", http.StatusServiceUnavailable)
			return
		}
		if cp := f.frozen.Load(); cp != nil && r.Method == http.MethodGet && r.URL.Path == api.PathAuditCheckpoint {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = io.WriteString(w, *cp)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

// freeze has the front serve the control plane's checkpoint of now from
// here on.
func (f *withholdingFront) freeze(t *testing.T, upstream string) {
	resp, err := http.Get(upstream + api.PathAuditCheckpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("checkpoint: %d %v", resp.StatusCode, err)
	}
	cp := string(b)
	f.frozen.Store(&cp)
}

// staleJS: the page shows that the log could not be checked, in amber in
// the routing panel, without the alarm.
const staleJS = `window.oakmeet?.call?.auditLog?.state === 'stale' && ` +
	`document.querySelector('[data-testid=audit-status]')?.textContent.startsWith('The audit log could not be checked: ') && ` +
	`document.querySelector('[data-testid=audit-status]').classList.contains('audit-stale') && ` +
	`document.querySelector('[data-testid=audit-alarm]').hidden && document.querySelector('[data-testid=audit-badge]').hidden`

// TestPageShowsAWithheldLogStale: a control plane that answers the
// page's consistency and inclusion proof requests with 503 while its log
// grows, or keeps serving one old checkpoint so that the page's
// placement is never in one, does not leave the page at "consistent":
// after a few polls, or once its placement waited ten polls for its
// proof, the routing panel says "The audit log could not be checked"
// (not the alarm); proofs and checkpoints given again, the page is
// consistent, its placement in the log.
func TestPageShowsAWithheldLogStale(t *testing.T) {
	needBrowser(t)
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	f := newWithholdingFront(t, c.URL)
	b := newBrowser(t, "withheld", browserOpts{})
	on := func(link string) string { return f.URL + strings.TrimPrefix(link, c.URL) }

	m := c.CreateMeeting(policy.Policy{})
	b.navigate(on(joinURL(c, m, "Ann", "DE")))
	b.waitJS(10*time.Second, "connected, the log consistent with the placement in it", `window.oakmeet?.call?.state === 'connected' && `+consistentJS, auditJS)
	f.withhold.Store(true)
	for range 2 {
		if _, e, status := c.Join(m.ID, "DE"); e != nil {
			t.Fatalf("join: %d %v", status, e)
		}
	}
	b.waitJS(10*time.Second, "stale, the proofs withheld", staleJS, auditJS)
	if r := evalJS[string](b, `window.oakmeet.call.auditLog.reason`); !strings.Contains(r, "checks in a row failed") || !strings.Contains(r, "503") {
		t.Errorf("stale for %q; want the failed checks and their 503", r)
	}
	f.withhold.Store(false)
	b.waitJS(10*time.Second, "consistent again, the proofs given", consistentJS+` && document.querySelector('[data-testid=audit-status]').textContent.startsWith('Audit log consistent')`, auditJS)

	// The checkpoint frozen before the page joins a second meeting: its
	// placement is in no checkpoint the page is given.
	f.freeze(t, c.URL)
	m2 := c.CreateMeeting(policy.Policy{})
	b.navigate(on(joinURL(c, m2, "Ann", "DE")))
	b.waitJS(10*time.Second, "connected", `window.oakmeet?.call?.state === 'connected'`, auditJS)
	evalJS[bool](b, `(window.oakmeet.call.auditLog.staleMinMs = 0, true)`)
	b.waitJS(10*time.Second, "stale, the placement in no checkpoint", staleJS, auditJS)
	if r := evalJS[string](b, `window.oakmeet.call.auditLog.reason`); !strings.Contains(r, "is in no checkpoint the server gave") {
		t.Errorf("stale for %q; want the placement in no checkpoint", r)
	}
	f.frozen.Store(nil)
	b.waitJS(10*time.Second, "consistent, the placement in the log", consistentJS, auditJS)
	b.checkConsole(http.StatusServiceUnavailable)
}
