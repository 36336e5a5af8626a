package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// A control plane that refuses every proof and entries request leaves the
// bot's check of the log stale: one warning on standard error, the stale
// status in the report, and no alarm (exit 0).
func TestBotAuditStaleWhenProofsWithheld(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	m := c.CreateMeeting(policy.Policy{})
	u, err := url.Parse(c.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case api.PathAuditConsistency, api.PathAuditProof, api.PathAuditEntries:
			http.Error(w, "try later", http.StatusServiceUnavailable)
		default:
			rp.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	link, err := api.ParseLink(m.JoinURL)
	if err != nil {
		t.Fatal(err)
	}
	link.Server = srv.URL
	// Polls every 100 ms (the test cluster's checkpoints): five fail in
	// half a second.
	code, out, errOut := runCmd("bot", "--link", link.String(), "--json", "--duration", "2s")
	if code != 0 {
		t.Fatalf("exit %d: %q", code, errOut)
	}
	if n := strings.Count(errOut, "WARNING: the audit log could not be checked"); n != 1 {
		t.Fatalf("%d stale warnings in %q", n, errOut)
	}
	rep := lastJSON(t, out)
	if rep.Audit.State != client.AuditStale || !strings.Contains(rep.Audit.Reason, "polls in a row") || rep.Audit.EntriesPending != 1 {
		t.Fatalf("report %+v", rep.Audit)
	}
	js, _ := json.Marshal(rep.Audit)
	t.Logf("audit: %s", js)
	for _, l := range strings.Split(errOut, "\n") {
		if strings.HasPrefix(l, "WARNING: ") {
			t.Logf("stderr: %s", l)
		}
	}
}
