package testcluster_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// BenchmarkJoin is one join's round trip (placement, the meeting's KV
// compare-and-set, the audit append) on one NATS server and on a 3-server
// cluster whose buckets and streams are replicated three times, where each
// write waits for a quorum.
func BenchmarkJoin(b *testing.B) {
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("nats=%d", n), func(b *testing.B) {
			var opts []testcluster.Option
			if n > 1 {
				opts = append(opts, testcluster.WithNATSCluster(n))
			}
			c := testcluster.Start(b, policy.Policy{}, testcluster.World()[:1], opts...)
			ctx := context.Background()
			var m testcluster.Created
			i := 0
			for b.Loop() {
				// A meeting's record grows with its participants: a fresh
				// one now and then keeps every join alike.
				if i%50 == 0 {
					m = c.CreateMeeting(policy.Policy{})
				}
				i++
				if _, err := c.API.Join(ctx, m.ID, api.JoinRequest{Name: "b", Location: api.Hint{Country: "DE"}, Secret: c.Secret(m.ID)}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
