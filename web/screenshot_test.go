package web_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// TestScreenshots writes the README's and docs/WEB.md's screenshots when
// OAKMEET_SCREENSHOTS names a directory (e.g. ../docs/screenshots): the
// create page with a policy and the lobby on, the two links, a guest
// waiting in the lobby and the host's lobby list, a meeting of three (two
// pages and a bot, on nodes in Germany and the United States) from a wide
// and a phone-sized window, a participant the People panel flags, a
// removed guest's page, and the routing panel's marks of what the browser
// verified of everyone's node (all verified; one flagged as in a country
// the host's policy blocks).
func TestScreenshots(t *testing.T) {
	save := screenshotSaver(t)
	c := testcluster.Start(t, policy.Policy{}, testcluster.World())

	ada := newBrowser(t, "ada", browserOpts{width: 1280, height: 820})
	ada.navigate(c.URL + "/")
	ada.waitJS(10*time.Second, "the preview", `document.querySelectorAll('[data-testid=node-list] li').length > 0`, `document.body.innerText`)
	if err := chromedp.Do(ada.ctx,
		chromedp.SendKeys(chromedp.CSS(`[data-testid=title]`), "Board meeting"),
		chromedp.Click(chromedp.CSS(`[data-preset="Block CN and RU"]`)),
		chromedp.Click(chromedp.CSS(`[data-testid=lobby-on]`)),
	); err != nil {
		t.Fatal(err)
	}
	ada.waitJS(10*time.Second, "the preview of the policy", `/6 of 8/.test(document.querySelector('[data-testid=preview-summary]').textContent)`, `document.querySelector('[data-testid=preview-summary]').textContent`)
	evalJS[bool](ada, `document.activeElement.blur(), true`)
	save(ada, "create.png")
	ada.click("create", `[data-testid=create]`)
	ada.waitJS(20*time.Second, "the links", `document.querySelector('[data-testid=host-link]')?.value`, `document.body.innerText`)
	save(ada, "links.png")
	m := api.CreatedMeeting{JoinURL: evalJS[string](ada, `document.querySelector('[data-testid=join-link]').value`),
		HostURL: evalJS[string](ada, `document.querySelector('[data-testid=host-link]').value`)}
	l, err := api.ParseLink(m.JoinURL)
	if err != nil {
		t.Fatal(err)
	}
	m.ID, m.JoinSecret = l.Meeting, l.Secret

	if err := chromedp.Do(ada.ctx, chromedp.EmulateViewport(1280, 760)); err != nil {
		t.Fatal(err)
	}
	ada.navigate(hostJoinURL(c, m, "Ada%20Lovelace", "DE"))
	ada.waitJS(30*time.Second, "the host in the meeting", `window.oakmeet?.call?.state === 'connected'`, `document.body.innerText`)
	grace := newBrowser(t, "grace", browserOpts{width: 500, height: 800})
	if err := chromedp.Do(grace.ctx, chromedp.EmulateViewport(390, 760, chromedp.EmulateScale(1), chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	grace.navigate(joinURL(c, m, "Grace%20Hopper", "US"))
	grace.waitJS(20*time.Second, "the lobby", `document.querySelector('[data-testid=lobby-waiting]:not([hidden])')`, `document.body.innerText`)
	save(grace, "lobby-waiting.png")
	ada.waitJS(10*time.Second, "the lobby notice", `document.querySelector('[data-testid=lobby-notice]:not([hidden])')`, `document.body.innerText`)
	save(ada, "lobby-notice.png")
	ada.click("the lobby notice", `[data-testid=lobby-notice]`)
	ada.waitJS(10*time.Second, "Grace in the lobby list", lobbyEntrySel("Grace Hopper"), `document.body.innerText`)
	evalJS[bool](ada, `document.querySelector('[data-testid=lobby-list]').scrollIntoView({block: 'end'}), true`)
	save(ada, "host-lobby.png")
	evalJS[bool](ada, `(`+lobbyEntrySel("Grace Hopper")+`).querySelector('[data-testid=admit]').click(), true`)
	ada.click("the lobby switch", `[data-testid=lobby-toggle][aria-checked=true]`)
	ada.waitJS(10*time.Second, "the lobby off", `document.querySelector('[data-testid=lobby-toggle]').getAttribute('aria-checked') === 'false'`, `document.body.innerText`)
	<-runBot(t, c, m, "Test pattern (bot)", "DE").ready
	for _, b := range []*browser{ada, grace} {
		b.waitVideoAdvancing(2, 40*time.Second)
		b.waitCode(3, 20*time.Second)
	}
	ada.click("the lock switch", `[data-testid=lock-toggle][aria-checked=false]`)
	grace.waitJS(10*time.Second, "Locked", `document.querySelector('[data-testid=locked-badge]:not([hidden])')`, `document.body.innerText`)
	evalJS[bool](ada, `document.querySelector('.side .panel').scrollTop = 0, true`)
	save(ada, "meeting.png")
	if err := chromedp.Do(ada.ctx, chromedp.Click(chromedp.CSS(`[data-testid=tab-routing]`))); err != nil {
		t.Fatal(err)
	}
	ada.waitJS(10*time.Second, "the routing list", `document.querySelectorAll('.side [data-testid=routes] li').length === 3`, `document.body.innerText`)
	save(ada, "meeting-routing.png")
	save(grace, "meeting-phone.png")

	// Unlocked, a participant who never joins the key exchange comes in:
	// the People panel flags them.
	ada.click("the lock switch", `[data-testid=lock-toggle][aria-checked=true]`)
	ada.waitJS(10*time.Second, "unlocked", `document.querySelector('[data-testid=locked-badge]').hidden`, `document.body.innerText`)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	jr, err := client.Join(ctx, nil, c.URL, m.ID, client.JoinRequest{Name: "Unknown caller", Country: "DE", Secret: m.JoinSecret})
	if err != nil {
		t.Fatal(err)
	}
	s, err := client.Connect(ctx, jr, client.Options{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	go func() {
		for range s.Events() {
		}
	}()
	ada.click("the People tab", `[data-testid=tab-people]`)
	ada.waitJS(20*time.Second, "the flag", `document.querySelector('[data-testid=person-flag]')`, `document.body.innerText`)
	evalJS[bool](ada, `document.querySelector('[data-testid=roster]').scrollIntoView({block: 'end'}), true`)
	save(ada, "people-flag.png")

	graceID := evalJS[string](grace, `window.oakmeet.call.self.id`)
	ada.click("remove", `[data-testid=roster] li[data-participant="`+graceID+`"] [data-testid=remove]`)
	save(ada, "remove-confirm.png")
	ada.click("confirm", `[data-testid=confirm-remove]`)
	grace.waitJS(20*time.Second, "removed", `document.querySelector('[data-testid=ended]')`, `document.body.innerText`)
	save(grace, "removed.png")

	// Verified routing: three people on three continents under a policy
	// that blocks China and Russia.
	vm, _, err := c.API.CreateHosted(context.Background(), api.CreateRequest{Title: "Quarterly review", Policy: policy.Policy{BlockedCountries: []string{"CN", "RU"}}})
	if err != nil {
		t.Fatal(err)
	}
	vs := openTabs(t, browserOpts{width: 1280, height: 820}, "v-ada", "v-grace", "v-kat")
	for i, who := range []struct{ name, country string }{{"Ada%20Lovelace", "DE"}, {"Grace%20Hopper", "US"}, {"Katherine%20Johnson", "JP"}} {
		vs[i].navigate(joinURL(c, vm, who.name, who.country))
	}
	waitTogether(t, vs...)
	if err := chromedp.Do(vs[0].ctx, chromedp.EmulateViewport(1280, 760)); err != nil {
		t.Fatal(err)
	}
	vs[0].click("the routing tab", `[data-testid=tab-routing]`)
	vs[0].waitJS(20*time.Second, "everyone's node verified", checksJS+` === 'verified DE, verified JP, verified US'`, checksJS)
	evalJS[bool](vs[0], `document.querySelector('[data-testid=verified-nodes]').scrollIntoView({block: 'center'}), true`)
	save(vs[0], "routing-verified.png")
	_, cnCert := c.Enroll("cn-sha", "CN", "", time.Hour)
	evalJS[bool](vs[2], `(async () => { const call = window.oakmeet.call; await call.member.setNodeCert(`+jsString(cnCert)+`);
		call.send(call.session, call.member.withNode([call.member.announce()])); return true; })()`)
	vs[0].waitJS(20*time.Second, "a node flagged", `document.querySelector('[data-testid=verified-nodes] li[data-status=not_allowed]')`, checksJS)
	evalJS[bool](vs[0], `document.querySelector('[data-testid=verified-nodes]').scrollIntoView({block: 'center'}), true`)
	save(vs[0], "routing-not-allowed.png")
}

// screenshotSaver skips the test unless OAKMEET_SCREENSHOTS names a
// directory, and returns what writes a page's screenshot there.
func screenshotSaver(t *testing.T) func(b *browser, name string) {
	t.Helper()
	dir := os.Getenv("OAKMEET_SCREENSHOTS")
	if dir == "" {
		t.Skip("set OAKMEET_SCREENSHOTS=DIR to write screenshots")
	}
	needBrowser(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return func(b *browser, name string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), b.screenshot(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
