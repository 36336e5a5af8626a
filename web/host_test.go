package web_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// createInBrowser creates a meeting on b's create page as a person would
// (its host key is made in b and stays there) and returns what the result
// page shows: the invite link and the host link.
func createInBrowser(t *testing.T, c *testcluster.Cluster, b *browser, title string, lobby bool) api.CreatedMeeting {
	t.Helper()
	b.navigate(c.URL + "/")
	b.waitJS(20*time.Second, "the create page's preview", `document.querySelectorAll('[data-testid=node-list] li').length > 0`, `document.body.innerText`)
	actions := []chromedp.Action[chromedp.Void]{chromedp.SendKeys(chromedp.CSS(`[data-testid=title]`), title)}
	if lobby {
		actions = append(actions, chromedp.Click(chromedp.CSS(`[data-testid=lobby-on]`)))
	}
	actions = append(actions, chromedp.Click(chromedp.CSS(`[data-testid=create]`)))
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		t.Fatalf("%s: create: %v", b.name, err)
	}
	b.waitJS(20*time.Second, "the meeting's links", `document.querySelector('[data-testid=result] [data-testid=host-link]')?.value`, `document.body.innerText`)
	join := evalJS[string](b, `document.querySelector('[data-testid=join-link]').value`)
	host := evalJS[string](b, `document.querySelector('[data-testid=host-link]').value`)
	jl, err := api.ParseLink(join)
	if err != nil {
		t.Fatalf("invite link %q: %v", join, err)
	}
	hl, err := api.ParseLink(host)
	if err != nil {
		t.Fatalf("host link %q: %v", host, err)
	}
	if jl.HostToken != "" || jl.HostFingerprint == "" || hl.HostToken == "" || hl.Secret != jl.Secret || hl.Meeting != jl.Meeting {
		t.Fatalf("links: invite %q, host %q: want the secret and fingerprint in both, the host token only in the host's", join, host)
	}
	return api.CreatedMeeting{Meeting: api.Meeting{ID: jl.Meeting}, JoinSecret: jl.Secret, HostToken: hl.HostToken, JoinURL: join, HostURL: host}
}

// waitRefusal waits until the join page shows a refusal with the code and
// returns its sentence.
func (b *browser) waitRefusal(code string, d time.Duration) string {
	b.t.Helper()
	b.waitJS(d, "refusal "+code, fmt.Sprintf(`document.querySelector('[data-testid=join-error]:not([hidden])')?.dataset.code === %s`, jsString(code)), `document.body.innerText`)
	return b.text("[data-testid=refusal]")
}

// click clicks the first element the selector finds, in the page's own
// script (the element may be in a panel that re-renders).
func (b *browser) click(what, selector string) {
	b.t.Helper()
	b.waitJS(10*time.Second, what, fmt.Sprintf(`((e) => e && !e.disabled && (e.click(), true))(document.querySelector(%s))`, jsString(selector)), `document.body.innerText`)
}

// lobbyEntrySel is the host's lobby list entry of a name.
func lobbyEntrySel(name string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('[data-testid=lobby-list] li')].find((li) => li.querySelector('[data-testid=lobby-name]')?.textContent === %s)`, jsString(name))
}

// TestHostRunsTheMeeting: the host creates a meeting with its lobby on in
// the browser and joins from the host link; two guests wait in the lobby;
// the host admits one and denies the other, who is told so; with the lobby
// off a third guest comes straight in; the host locks the meeting, which
// everyone sees and which turns a fourth away; the host removes a guest,
// whose page says so, and the others' security code changes.
func TestHostRunsTheMeeting(t *testing.T) {
	needBrowser(t)
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:2])
	pages := openTabs(t, browserOpts{}, "host", "ann", "bob", "dan", "eve")
	host, ann, bob, dan, eve := pages[0], pages[1], pages[2], pages[3], pages[4]

	m := createInBrowser(t, c, host, "Board meeting", true)
	if got := host.text("[data-testid=result]"); !strings.Contains(got, "share this") || !strings.Contains(got, "keep this — it lets you run the meeting") {
		t.Errorf("result page does not tell the links apart: %q", got)
	}
	host.navigate(hostJoinURL(c, m, "Host", "DE"))
	host.waitJS(30*time.Second, "the host in the meeting (letting itself out of the lobby)", `window.oakmeet?.call?.state === 'connected'`, `document.body.innerText`)
	if got := evalJS[string](host, `location.href`); strings.Contains(got, "#") {
		t.Errorf("the link's fragment stays in the address bar: %s", got)
	}

	// Two guests wait in the lobby.
	ann.navigate(joinURL(c, m, "Ann", "DE"))
	bob.navigate(joinURL(c, m, "Bob", "US"))
	for _, b := range []*browser{ann, bob} {
		b.waitJS(20*time.Second, "the lobby's waiting screen", `document.querySelector('[data-testid=lobby-waiting]:not([hidden])')?.textContent.includes('Waiting for the host to let you in')`, `document.body.innerText`)
	}
	host.waitJS(10*time.Second, "the lobby notice", `/2 people are waiting in the lobby/.test(document.querySelector('[data-testid=lobby-notice]:not([hidden])')?.textContent ?? '')`, `document.body.innerText`)
	host.click("the lobby notice", `[data-testid=lobby-notice]`)
	host.waitJS(10*time.Second, "both in the host's lobby list", `(`+lobbyEntrySel("Ann")+`) && (`+lobbyEntrySel("Bob")+`)`, `document.querySelector('.side')?.innerText`)
	if where := evalJS[string](host, `(`+lobbyEntrySel("Bob")+`).querySelector('[data-testid=lobby-where]').textContent`); !strings.Contains(where, "United States") {
		t.Errorf("Bob's claimed location %q", where)
	}
	evalJS[bool](host, `(`+lobbyEntrySel("Ann")+`).querySelector('[data-testid=admit]').click(), true`)
	evalJS[bool](host, `(`+lobbyEntrySel("Bob")+`).querySelector('[data-testid=deny]').click(), true`)
	if got := bob.waitRefusal("lobby_denied", 20*time.Second); !strings.Contains(got, "The host did not let you in") {
		t.Errorf("denied page says %q", got)
	}
	waitTogether(t, host, ann)

	// Eve waits, then thinks better of it.
	eve.navigate(joinURL(c, m, "Eve", "DE"))
	eve.waitJS(20*time.Second, "the lobby's waiting screen", `document.querySelector('[data-testid=lobby-waiting]:not([hidden])')`, `document.body.innerText`)
	eve.click("leave the lobby", `[data-testid=leave-lobby]`)
	if got := eve.waitRefusal("left_lobby", 10*time.Second); !strings.Contains(got, "Join again whenever you are ready") {
		t.Errorf("left the lobby: %q", got)
	}
	eve.navigate("about:blank")

	// The lobby off: Dan comes straight in.
	host.click("the lobby switch", `[data-testid=lobby-toggle][aria-checked=true]`)
	host.waitJS(10*time.Second, "the lobby off", `document.querySelector('[data-testid=lobby-toggle]').getAttribute('aria-checked') === 'false'`, `document.querySelector('[data-testid=host-status]')?.textContent`)
	dan.navigate(joinURL(c, m, "Dan", "DE"))
	codeOfThree := waitTogether(t, host, ann, dan)

	// Locked: everyone sees it; Eve is turned away.
	host.click("the lock switch", `[data-testid=lock-toggle][aria-checked=false]`)
	for _, b := range []*browser{host, ann, dan} {
		b.waitJS(10*time.Second, "the Locked badge", `document.querySelector('[data-testid=locked-badge]:not([hidden])')?.textContent === 'Locked'`, `document.querySelector('.meeting-bar')?.innerText`)
	}
	eve.navigate(joinURL(c, m, "Eve", "DE"))
	if got := eve.waitRefusal("meeting_locked", 20*time.Second); !strings.Contains(got, "The host locked this meeting") {
		t.Errorf("locked page says %q", got)
	}

	// The host removes Ann.
	annID := evalJS[string](ann, `window.oakmeet.call.self.id`)
	host.click("Ann's remove button", fmt.Sprintf(`[data-testid=roster] li[data-participant=%q] [data-testid=remove]`, annID))
	host.click("the confirmation", `[data-testid=confirm-remove]`)
	ann.waitJS(20*time.Second, "the removal", `document.querySelector('[data-testid=ended]')?.textContent.includes('The host removed you')`, `document.body.innerText`)
	for _, b := range []*browser{host, dan} {
		b.waitJS(20*time.Second, "a new code without Ann", fmt.Sprintf(`%s !== %s && %s === 2`, codeJS, jsString(codeOfThree), rosterJS), codeJS+` + ' ' + `+rosterJS)
	}
	if a, d := host.securityCode(), dan.securityCode(); a != d {
		t.Errorf("codes after the removal differ: host %q, dan %q", a, d)
	}

	// The host, back after a reload, comes in through its own lock: the
	// host link's token lets the host's join past the lock and the lobby
	// it set. (Leaving the page first: the same address with a fragment
	// would only move within the page.) The meeting stays locked, and
	// the host may unlock it from inside.
	host.navigate("about:blank")
	host.navigate(hostJoinURL(c, m, "Host", "DE"))
	host.waitJS(30*time.Second, "the host back in", `window.oakmeet?.call?.state === 'connected'`, `document.body.innerText`)
	dan.waitJS(10*time.Second, "still locked", `document.querySelector('[data-testid=locked-badge]')?.hidden === false`, `document.querySelector('.meeting-bar')?.innerText`)

	host.checkConsole(403)
	dan.checkConsole()
	ann.checkConsole()
	bob.checkConsole(403)
	eve.checkConsole(403)
}

// TestPeopleFlagsWhoIsNotInTheEncryption: the People panel is the signed
// roster, checked against the server's list. A participant the server
// lists who never takes part in the key exchange (a Go client that joins
// without keys) is flagged "not in the encryption — the server says they
// are here", on its tile too; a participant the server hides from one
// page (its node tells that page they left) while the leader keeps them
// in the keys is flagged "in the encryption — the server does not list
// them"; a page whose link's fingerprint is not the meeting's host key
// has no host policy to check its node against, and refuses to connect
// (no_host_policy), saying the server changed the host key.
func TestPeopleFlagsWhoIsNotInTheEncryption(t *testing.T) {
	c, m := startMeeting(t)
	pages := openTabs(t, browserOpts{}, "ann", "bob", "carl")
	ann, bob, carl := pages[0], pages[1], pages[2]
	// In this order, so that Ann leads and Carl is not next in line.
	for i, b := range pages {
		b.navigate(joinURL(c, m, []string{"Ann", "Bob", "Carl"}[i], "DE"))
		b.waitJS(20*time.Second, "in the meeting", `window.oakmeet?.call?.self?.id`, `document.body.innerText`)
	}
	waitTogether(t, ann, bob, carl)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	jr, err := client.Join(ctx, nil, c.URL, m.ID, client.JoinRequest{Name: "Silent", Country: "DE", Secret: m.JoinSecret})
	if err != nil {
		t.Fatalf("silent join: %v", err)
	}
	s, err := client.Connect(ctx, jr, client.Options{LoopbackOnly: true})
	if err != nil {
		t.Fatalf("silent connect: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	go func() {
		for range s.Events() {
		}
	}()

	ann.click("the People tab", `[data-testid=tab-people]`)
	flagged := fmt.Sprintf(`[data-testid=roster] li[data-participant=%q]`, jr.ParticipantID)
	ann.waitJS(20*time.Second, "the silent participant flagged",
		fmt.Sprintf(`document.querySelector(%s)?.querySelector('[data-testid=person-flag]')?.textContent.includes('not in the encryption — the server says they are here')`, jsString(flagged)),
		`document.querySelector('[data-testid=roster]').innerText`)
	ann.waitJS(10*time.Second, "the silent participant's tile flagged",
		fmt.Sprintf(`!document.querySelector('.tile[data-participant=%q] [data-testid=tile-flag]').hidden`, jr.ParticipantID), `document.querySelector('[data-testid=grid]').innerText`)
	if got := evalJS[string](ann, `document.querySelector('[data-testid=roster] li[data-participant]:not(.flagged)')?.textContent ?? ''`); !strings.Contains(got, "Ann (you)") {
		t.Errorf("Ann's own entry %q", got)
	}
	if n := evalJS[int](ann, `document.querySelectorAll('[data-testid=roster] li.flagged').length`); n != 1 {
		t.Errorf("%d people flagged, want the silent one alone: %s", n, ann.text("[data-testid=roster]"))
	}

	// Carl's node says Bob left; Ann, who leads, still has him.
	bobID := evalJS[string](bob, `window.oakmeet.call.self.id`)
	evalJS[bool](carl, fmt.Sprintf(`window.oakmeet.call.session.handle({v: 1, type: 'participant_left', participant: {id: %q}}), true`, bobID))
	carl.click("the People tab", `[data-testid=tab-people]`)
	carl.waitJS(20*time.Second, "Bob flagged as hidden by the server",
		fmt.Sprintf(`document.querySelector('[data-testid=roster] li[data-participant=%q] [data-testid=person-flag]')?.textContent.includes('in the encryption — the server does not list them')`, bobID),
		`document.querySelector('[data-testid=roster]').innerText`)
	if got := carl.text(fmt.Sprintf(`[data-testid=roster] li[data-participant=%q] [data-testid=person-name]`, bobID)); !strings.Contains(got, "Bob") {
		t.Errorf("the hidden participant's signed name %q", got)
	}

	// A link whose fingerprint names another key.
	l, err := api.ParseLink(m.JoinURL)
	if err != nil {
		t.Fatal(err)
	}
	l.HostFingerprint = "AAAAAAAAAAAAAAAAAAAAAA"
	bad := openPage(t, "wrong-key", withJoin(c, l.String(), "Mal", "DE"))
	bad.waitJS(30*time.Second, "the page refusing to connect without the host's policy",
		`((e) => e && !e.hidden && e.dataset.code === 'no_host_policy' && e.textContent.includes('The server changed the host key'))(document.querySelector('[data-testid=join-error]'))`, `document.body.innerText`)
	if n := evalJS[int](bad, `window.oakmeet?.call?.refusals?.length ?? -1`); n != -1 && n != 3 {
		t.Errorf("%d refusals before giving up, want 3", n)
	}

	// The host (a Go client holding the meeting's key) locks the meeting:
	// its statement reaches the pages as a "host" message.
	lockCtx, lockCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer lockCancel()
	if _, err := c.Host(m.ID).SetSettings(lockCtx, true, false); err != nil {
		t.Fatalf("lock: %v", err)
	}
	ann.waitJS(10*time.Second, "Locked", `document.querySelector('[data-testid=locked-badge]:not([hidden])')`, `document.querySelector('.meeting-bar').innerText`)
	for _, b := range []*browser{ann, bob, carl, bad} {
		b.checkConsole()
	}
}
