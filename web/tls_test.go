package web_test

import (
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/httpserve/httpservetest"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// Chromium joins a meeting served over HTTPS whose node speaks wss://, and
// it and a Go bot see each other's media; the page was served with a CSP
// whose connect-src names the node's wss:// origin, no referrer and HSTS.
func TestPageOverTLS(t *testing.T) {
	needBrowser(t)
	sharedChromium.browserContext(t) // its TLS key is known once it is up
	ca := httpservetest.NewCA(t).WithLeafKey(sharedChromium.tlsKey)
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1], testcluster.WithTLS(ca))
	m := c.CreateMeeting(policy.Policy{})
	if !strings.HasPrefix(m.JoinURL, "https://") {
		t.Fatalf("join link %s", m.JoinURL)
	}
	nodes, err := c.API.Nodes(t.Context())
	if err != nil || len(nodes) != 1 || !strings.HasPrefix(nodes[0].URL, "wss://") {
		t.Fatalf("nodes %+v %v", nodes, err)
	}
	origin := strings.TrimSuffix(nodes[0].URL, "/ws")
	resp, err := c.HTTPClient().Get(c.URL + "/m/" + m.ID)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "connect-src 'self' "+origin+";") || strings.Contains(csp, " wss:;") || strings.Contains(csp, " ws: ") {
		t.Errorf("CSP %q, want connect-src 'self' %s only", csp, origin)
	}
	if resp.Header.Get("Referrer-Policy") != "no-referrer" || !strings.HasPrefix(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Errorf("Referrer-Policy %q, HSTS %q", resp.Header.Get("Referrer-Policy"), resp.Header.Get("Strict-Transport-Security"))
	}

	b := runBot(t, c, m, "Bot", "DE")
	page := openTabs(t, browserOpts{}, "page")[0]
	select {
	case <-b.ready:
	case <-time.After(20 * time.Second):
		t.Fatal("bot did not join")
	}
	page.navigate(joinURL(c, m, "Ada", "DE"))
	page.waitJS(20*time.Second, "the page in the meeting", `window.oakmeet?.call?.self?.id`, `document.body.innerText`)
	if proto := evalJS[string](page, `location.protocol`); proto != "https:" {
		t.Fatalf("page over %s", proto)
	}
	page.waitVideoAdvancing(1, 30*time.Second)
	if s := page.decryptStats(); s.Video == 0 || s.Failures != 0 {
		t.Errorf("page decrypted %d video frames from the bot with %d failures", s.Video, s.Failures)
	}
	page.checkConsole()
}
