package replica

import (
	"crypto/ed25519"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/cluster"
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

// The cryptography of one forwarded request alone: the follower seals and
// signs it, the leader checks and opens it and seals one answer part, the
// follower opens that.
func BenchmarkSealedRoundTrip(b *testing.B) {
	_, key, _ := ed25519.GenerateKey(nil)
	tk, err := newTermKey(1)
	if err != nil {
		b.Fatal(err)
	}
	tg := leaseTarget(key.Public().(ed25519.PublicKey), signLease(key, cluster.Lease{Replica: "r1", Term: 1}, tk))
	op := newOpener("r1", tk, key.Public().(ed25519.PublicKey), time.Minute, time.Now)
	plain := []byte(`{"from":"r2","method":"GET","url":"/api/config","host":"x","remote_addr":"127.0.0.1:1"}`)
	answer := []byte(`{"seq":0,"status":200,"body":"e30K","leader":"r1"}`)
	for b.Loop() {
		data, fk, err := sealRequest(key, "r2", tg, time.Now(), plain)
		if err != nil {
			b.Fatal(err)
		}
		_, lk, _, err := op.open(data)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := fk.open(lk.seal(0, answer), 0); err != nil {
			b.Fatal(err)
		}
	}
}
