package adversary

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/testcluster"
)

// RefusedEntries are a meeting's node_refused audit entries: the nodes its
// participants' own clients refused. The meeting's whole exported chain must
// verify first, so a refusal counts only as part of the signed log.
func RefusedEntries(t testing.TB, c *testcluster.Cluster, meeting string) []audit.Entry {
	t.Helper()
	ctx := context.Background()
	VerifyExport(t, c.API, meeting)
	a, err := c.API.Audit(ctx, meeting)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Entry
	for _, e := range a.Entries {
		if e.Kind == audit.KindNodeRefused {
			out = append(out, e)
		}
	}
	return out
}

// WaitRefused waits up to d for a node_refused entry of the meeting for
// node whose reason starts with code, and returns it.
func WaitRefused(t testing.TB, c *testcluster.Cluster, meeting, node, code string, d time.Duration) audit.Entry {
	t.Helper()
	var found audit.Entry
	testcluster.WaitFor(t, d, fmt.Sprintf("a node_refused audit entry for %s (%s)", node, code), func() bool {
		for _, e := range RefusedEntries(t, c, meeting) {
			if e.Node == node && strings.HasPrefix(e.Reason, code) {
				found = e
				return true
			}
		}
		return false
	})
	return found
}
