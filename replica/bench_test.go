package replica

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// The cost of forwarding: one API request answered by the leader itself
// and through a follower.
func BenchmarkForwarding(b *testing.B) {
	g := newRig(b)
	reps := []*testReplica{g.start("r1"), g.start("r2")}
	leader := g.leader(reps, 10*time.Second)
	f := reps[0]
	if f == leader {
		f = reps[1]
	}
	for _, bc := range []struct {
		name string
		url  string
	}{{"direct", leader.url}, {"forwarded", f.url}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				resp, err := http.Get(bc.url + "/api/config")
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatal(resp.Status)
				}
			}
		})
	}
}
