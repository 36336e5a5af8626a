package adversary

import (
	"context"
	"testing"

	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// Misplace sets a meeting's stored policy to p with the control plane's own
// NATS identity, as a compromised or buggy control plane could: it then
// places joins by rules the host never signed, while the host's signed
// statement stays as it was.
func Misplace(t testing.TB, c *testcluster.Cluster, meeting string, p policy.Policy) {
	t.Helper()
	nc, err := c.NATS().ConnectControl("misplacer")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	st, err := OpenStore(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RewritePolicy(ctx, meeting, func(q *policy.Policy) { *q = p }); err != nil {
		t.Fatal(err)
	}
}
