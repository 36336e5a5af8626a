package system

import (
	"testing"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// fingerprint is the host-key fingerprint of a meeting's join link, which
// bots check the host's statements against.
func fingerprint(t *testing.T, m api.CreatedMeeting) string {
	t.Helper()
	l, err := api.ParseLink(m.JoinURL)
	if err != nil {
		t.Fatalf("join link %q: %v", m.JoinURL, err)
	}
	return l.HostFingerprint
}

// hosted is a meeting with a host key, as its creator holds it.
type hosted struct {
	api.CreatedMeeting
	fingerprint string
	host        *apiclient.Host
}

func hostedMeeting(t *testing.T, c *testcluster.Cluster) hosted {
	t.Helper()
	m := c.CreateMeeting(policy.Policy{})
	return hosted{CreatedMeeting: m, fingerprint: fingerprint(t, m), host: c.Host(m.ID)}
}
