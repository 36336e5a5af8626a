package system

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/httpserve/httpservetest"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// A deployment with TLS everywhere: the API over HTTPS (HTTP/2), the
// nodes' signaling and the relay between them over wss://, all with a
// certificate from a CA the test makes. Two bots in two countries, on two
// nodes, trusting only that CA, see each other's media end to end.
func TestTLSEndToEnd(t *testing.T) {
	ca := httpservetest.NewCA(t)
	c := testcluster.Start(t, policy.Policy{}, []testcluster.NodeSpec{testcluster.World()[0], testcluster.World()[2]}, testcluster.WithTLS(ca))
	if !strings.HasPrefix(c.URL, "https://") {
		t.Fatalf("control plane at %s", c.URL)
	}
	ctx := context.Background()
	nodes, err := c.API.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if !strings.HasPrefix(n.URL, "wss://") {
			t.Fatalf("node %s registered %s, want wss://", n.ID, n.URL)
		}
	}
	// The app and the API alike: HTTP/2, and HSTS on every answer.
	for _, path := range []string{"/", "/api/config", "/api/no-such-endpoint"} {
		resp, err := c.HTTPClient().Get(c.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.Header.Get("Strict-Transport-Security") == "" {
			t.Errorf("%s over %s, HSTS %q", path, resp.Proto, resp.Header.Get("Strict-Transport-Security"))
		}
	}
	// A client that does not trust the CA gets nowhere.
	if _, err := http.Get(c.URL + "/healthz"); err == nil {
		t.Error("a client without the CA reached the control plane")
	}

	m := c.CreateMeeting(policy.Policy{})
	var bots []bot.Config
	for _, country := range []string{"DE", "JP"} {
		bots = append(bots, bot.Config{Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: fingerprint(t, m),
			Name: "bot-" + country, Country: country, LoopbackOnly: true, Linger: 200 * time.Millisecond, HTTPClient: c.HTTPClient()})
	}
	stop := startBots(t, bots...)
	testcluster.WaitFor(t, 15*time.Second, "a connected relay between the nodes", func() bool {
		rv, _ := c.API.Routing(ctx, m.ID) // not yet, until it answers
		for _, r := range rv.Relays {
			if r.Connected {
				return true
			}
		}
		return false
	})
	waitTraffic(t, c.API, m.ID, map[string]uint64{"de-fra": 0, "jp-tyo": 0}, mediaWhile, 20*time.Second)
	for i, r := range stop() {
		if r == nil {
			t.Fatalf("bot %d: no report", i)
		}
		var video, failed int64
		for _, tr := range r.Tracks {
			failed += tr.DecryptFailures
			if tr.Kind == "video" {
				video += tr.Frames
			}
		}
		if video < minVideo || failed > 0 {
			t.Errorf("bot %d received %d video frames, %d failed to decrypt", i, video, failed)
		}
	}
}
