package web_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// TestScreenshots writes the README's screenshots when OAKMEET_SCREENSHOTS
// names a directory (e.g. ../docs/screenshots): the create page with a
// policy, and a meeting of three (two pages and a bot, on nodes in Germany
// and the United States) from a wide and a phone-sized window.
func TestScreenshots(t *testing.T) {
	dir := os.Getenv("OAKMEET_SCREENSHOTS")
	if dir == "" {
		t.Skip("set OAKMEET_SCREENSHOTS=DIR to write screenshots")
	}
	needBrowser(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	save := func(b *browser, name string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), b.screenshot(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := testcluster.Start(t, policy.Policy{}, testcluster.World())

	create := newBrowser(t, "create", browserOpts{width: 1280, height: 820})
	create.navigate(c.URL + "/")
	create.waitJS(10*time.Second, "the preview", `document.querySelectorAll('[data-testid=node-list] li').length > 0`, `document.body.innerText`)
	if err := chromedp.Do(create.ctx,
		chromedp.SendKeys(chromedp.CSS(`[data-testid=title]`), "Board meeting"),
		chromedp.Click(chromedp.CSS(`[data-preset="Block CN and RU"]`)),
	); err != nil {
		t.Fatal(err)
	}
	create.waitJS(10*time.Second, "the preview of the policy", `/6 of 8/.test(document.querySelector('[data-testid=preview-summary]').textContent)`, `document.querySelector('[data-testid=preview-summary]').textContent`)
	evalJS[bool](create, `document.activeElement.blur(), true`)
	save(create, "create.png")

	m, err := c.API.Create(context.Background(), api.CreateRequest{Title: "Board meeting", Policy: policy.Policy{BlockedCountries: []string{"CN", "RU"}}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	<-runBot(t, c, m.ID, "Test pattern (bot)", "DE").ready
	ada := newBrowser(t, "ada", browserOpts{width: 1280, height: 760})
	grace := newBrowser(t, "grace", browserOpts{width: 500, height: 800})
	if err := chromedp.Do(grace.ctx, chromedp.EmulateViewport(390, 760, chromedp.EmulateScale(1), chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	ada.navigate(joinURL(c, m.ID, "Ada%20Lovelace", "DE") + "#host=" + m.HostToken)
	grace.navigate(joinURL(c, m.ID, "Grace%20Hopper", "US"))
	for _, b := range []*browser{ada, grace} {
		b.waitVideoAdvancing(2, 40*time.Second)
		b.waitCode(3, 20*time.Second)
	}
	if err := chromedp.Do(ada.ctx, chromedp.Click(chromedp.CSS(`[data-testid=tab-people]`))); err != nil {
		t.Fatal(err)
	}
	save(ada, "meeting.png")
	if err := chromedp.Do(ada.ctx, chromedp.Click(chromedp.CSS(`[data-testid=tab-routing]`))); err != nil {
		t.Fatal(err)
	}
	ada.waitJS(10*time.Second, "the routing list", `document.querySelectorAll('.side [data-testid=routes] li').length === 3`, `document.body.innerText`)
	save(ada, "meeting-routing.png")
	save(grace, "meeting-phone.png")
}
