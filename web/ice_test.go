package web_test

import (
	"encoding/json"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// firewall stands in front of a node's ICE UDP socket: while on, every
// datagram either way is dropped, as a firewall that lets the node's
// signaling through but not its media would.
type firewall struct {
	on      atomic.Bool
	dropped atomic.Int64
}

func (f *firewall) wrap(pc net.PacketConn) net.PacketConn {
	return &droppingConn{PacketConn: pc, fw: f}
}

type droppingConn struct {
	net.PacketConn
	fw *firewall
}

func (c *droppingConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil || !c.fw.on.Load() {
			return n, addr, err
		}
		c.fw.dropped.Add(1)
	}
}

func (c *droppingConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.fw.on.Load() {
		c.fw.dropped.Add(1)
		return len(p), nil // lost on the way, as UDP is
	}
	return c.PacketConn.WriteTo(p, addr)
}

// iceLogJS records every distinct state of the status banner from the
// page's start: a blocked node fails before a test could attach to it.
const iceLogJS = `window.__iceLog = [];
new MutationObserver(() => {
	const el = document.querySelector('[data-testid=status]');
	if (!el) return;
	const e = {state: el.dataset.state ?? '', hidden: el.hidden, call: window.oakmeet?.call?.state ?? '',
		reason: el.querySelector('[data-testid=status-reason]')?.textContent ?? '',
		attempt: Number(el.querySelector('[data-testid=status-attempt]')?.dataset.attempt ?? 0),
		node: window.oakmeet?.call?.self?.node?.id ?? ''};
	const last = window.__iceLog.at(-1);
	if (!last || ['state', 'hidden', 'call', 'reason', 'attempt', 'node'].some((k) => last[k] !== e[k])) window.__iceLog.push(e);
}).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});`

type iceEntry struct {
	State   string `json:"state"`
	Hidden  bool   `json:"hidden"`
	Call    string `json:"call"`
	Reason  string `json:"reason"`
	Attempt int    `json:"attempt"`
	Node    string `json:"node"`
}

func (b *browser) iceLog() []iceEntry {
	b.t.Helper()
	var log []iceEntry
	if err := json.Unmarshal([]byte(evalJS[string](b, `JSON.stringify(window.__iceLog ?? [])`)), &log); err != nil {
		b.t.Fatalf("%s: status log: %v", b.name, err)
	}
	return log
}

// The reasons the page gives (recovery.js) for an ICE check that failed
// and for a media connection that did not come up before its deadline.
const (
	iceFailedReason   = "Could not reach the media server (network check failed)"
	iceTimedOutReason = "The media connection did not come up in time (network check failed)"
)

// TestICEFailureShowsErrorAndRetries: the German node's ICE UDP socket is
// behind a firewall that drops every datagram; its signaling works. A
// page placed there waits for the browser's own ICE to fail (its connect
// deadline is longer), says it could not reach the media server because
// the network check failed, counts its attempt, and joins again as a new
// participant on the American node (a replacing join is never placed on
// the node it replaces), where it plays a Go bot's video with no
// decryption failure under one security code. A second page, in a meeting
// whose policy allows only Germany and with a short connect deadline,
// keeps retrying there with a growing attempt count and the deadline's
// reason, never claiming to be connected, until the firewall opens.
func TestICEFailureShowsErrorAndRetries(t *testing.T) {
	needBrowser(t)
	fw := &firewall{}
	fw.on.Store(true)
	specs := testcluster.World()[:2] // de-fra, us-iad
	specs[0].WrapUDP = fw.wrap
	c := testcluster.Start(t, policy.Policy{}, specs)
	m := c.CreateMeeting(policy.Policy{})
	germanOnly := c.CreateMeeting(policy.Policy{AllowedCountries: []string{"DE"}})
	bot := runBot(t, c, m, "Bot", "US")
	pages := openTabs(t, browserOpts{}, "ivy", "gus") // while the bot joins
	ivy, gus := pages[0], pages[1]
	select {
	case <-bot.ready:
	case <-time.After(30 * time.Second):
		t.Fatal("bot did not join")
	}
	// Chromium gives up on ICE checks that get no answer after about 14 s:
	// ivy's deadline is beyond that (and below the node's negotiation
	// timeout of 20 s, after which the node removes the participant),
	// gus's well before.
	ivy.addScript(`window.oakmeetTuning = {mediaConnectMs: 19000, backoff: {baseMs: 500, capMs: 1000, maxAttempts: 20}};` + iceLogJS)
	gus.addScript(`window.oakmeetTuning = {mediaConnectMs: 3000, backoff: {baseMs: 500, capMs: 1000, maxAttempts: 20}};` + iceLogJS)
	ivy.navigate(joinURL(c, m, "Ivy", "DE"))
	gus.navigate(joinURL(c, germanOnly, "Gus", "DE"))

	ivy.waitJS(60*time.Second, "placed on the German node", `window.oakmeet?.call?.self?.node?.id === 'de-fra'`, `document.body.innerText`)
	first := evalJS[string](ivy, `window.oakmeet.call.self.id`)
	ivy.waitJS(90*time.Second, "connected on the American node",
		`window.oakmeet?.call?.state === 'connected' && window.oakmeet.call.self.node?.id === 'us-iad'`,
		`(window.oakmeet?.call?.state ?? '') + ' ' + document.querySelector('[data-testid=status]')?.textContent`)
	log := ivy.iceLog()
	var failed *iceEntry
	for i, e := range log {
		if e.State == "reconnecting" && !e.Hidden && e.Attempt >= 1 && e.Node == "de-fra" {
			failed = &log[i]
			break
		}
		if e.State == "connected" || e.Call == "connected" {
			t.Errorf("ivy: connected before the failure on the blocked node: %+v", log)
			break
		}
	}
	switch {
	case failed == nil:
		t.Errorf("ivy: never said it was reconnecting from the German node: %+v", log)
	case failed.Reason != iceFailedReason:
		t.Errorf("ivy: reconnecting with reason %q, want %q", failed.Reason, iceFailedReason)
	}
	if id := evalJS[string](ivy, `window.oakmeet.call.self.id`); id == first {
		t.Errorf("ivy: still participant %s after joining again", id)
	}
	ivy.waitVideoAdvancing(1, 60*time.Second)
	if s := ivy.decryptStats(); s.Video == 0 || s.Failures != 0 {
		t.Errorf("ivy decrypted %d video frames from the bot with %d failures:%s", s.Video, s.Failures, s.Detail)
	}
	if st := evalJS[string](ivy, `document.querySelector('[data-testid=status]').dataset.state`); st != "connected" {
		t.Errorf("ivy: banner data-state %q after reconnecting", st)
	}
	ivy.waitCode(2, 30*time.Second)
	ivy.checkConsole()

	gus.waitJS(60*time.Second, "a third attempt on the blocked node",
		`Number(document.querySelector('[data-testid=status-attempt]')?.dataset.attempt ?? 0) >= 3`,
		`document.querySelector('[data-testid=status]')?.outerHTML`)
	log = gus.iceLog()
	attempt := 0
	for _, e := range log {
		if e.State == "connected" || e.Call == "connected" || e.State == "failed" || e.Call == "ended" {
			t.Errorf("gus: %s/%s on a node it cannot reach: %+v", e.State, e.Call, log)
			break
		}
		if e.Attempt == 0 {
			continue
		}
		if e.Attempt < attempt {
			t.Errorf("gus: attempt %d after %d: %+v", e.Attempt, attempt, log)
		}
		attempt = e.Attempt
		if e.State != "reconnecting" || e.Reason != iceTimedOutReason {
			t.Errorf("gus: attempt %d shown as %s with reason %q, want reconnecting with %q", e.Attempt, e.State, e.Reason, iceTimedOutReason)
		}
	}
	if n := fw.dropped.Load(); n == 0 {
		t.Error("the firewall dropped nothing")
	}

	// The same node, reachable again, takes the next attempt.
	fw.on.Store(false)
	gus.waitJS(60*time.Second, "connected on the German node once it is reachable",
		`window.oakmeet.call.state === 'connected' && window.oakmeet.call.self.node?.id === 'de-fra' && document.querySelector('[data-testid=status]').dataset.state === 'connected'`,
		`window.oakmeet.call.state + ' ' + document.querySelector('[data-testid=status]')?.textContent`)
	gus.checkConsole()
}

// TestNodeNegotiationDeadlineIsRetried: a node that gives up on a page's
// media (its negotiation deadline, well before the page's own and before
// the browser's ICE gives up) sends leave negotiation_timeout. The page
// takes that as a connection that failed and retries; it does not end the
// call as it would on the host's removal.
func TestNodeNegotiationDeadlineIsRetried(t *testing.T) {
	needBrowser(t)
	fw := &firewall{}
	fw.on.Store(true)
	specs := testcluster.World()[:1] // de-fra
	specs[0].WrapUDP = fw.wrap
	specs[0].NegotiationTimeout = 2 * time.Second
	c := testcluster.Start(t, policy.Policy{}, specs)
	m := c.CreateMeeting(policy.Policy{})
	ned := newBrowser(t, "ned", browserOpts{})
	ned.addScript(`window.oakmeetTuning = {mediaConnectMs: 60000, backoff: {baseMs: 300, capMs: 600, maxAttempts: 20}};` + iceLogJS)
	ned.navigate(joinURL(c, m, "Ned", "DE"))
	ned.waitJS(60*time.Second, "a second attempt after the node's deadline",
		`Number(document.querySelector('[data-testid=status-attempt]')?.dataset.attempt ?? 0) >= 2`,
		`(window.oakmeet?.call?.state ?? '') + ' ' + document.querySelector('[data-testid=status]')?.outerHTML + ' ' + (document.querySelector('[data-testid=ended]')?.textContent ?? '')`)
	for _, e := range ned.iceLog() {
		if e.Call == "ended" || e.State == "failed" || e.State == "connected" {
			t.Fatalf("ned: %s/%s on a node that cannot connect: %+v", e.State, e.Call, ned.iceLog())
		}
	}
	fw.on.Store(false)
	ned.waitJS(60*time.Second, "connected once the node is reachable",
		`window.oakmeet.call.state === 'connected' && document.querySelector('[data-testid=status]').dataset.state === 'connected'`,
		`window.oakmeet.call.state + ' ' + document.querySelector('[data-testid=status]')?.textContent`)
	ned.checkConsole()
}
