package group

import (
	"fmt"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/e2ee/identity"
	"github.com/oakmeet/oakmeet/e2ee/keymsg"
)

// benchGroup is a leader that has heard members-1 others (synthetic
// announcements: the key schedule's cost does not depend on who made them)
// and one real member among them.
type benchGroup struct {
	leader, member *Member
	clock          *fakeClock
}

func newBenchGroup(b *testing.B, members int) *benchGroup {
	b.Helper()
	clock := &fakeClock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	mk := func(p string) *Member {
		id, err := identity.Generate()
		if err != nil {
			b.Fatal(err)
		}
		m, err := NewMember(Config{Meeting: "bench", Participant: p, Name: "Participant " + p, Identity: id, Now: clock.Now})
		if err != nil {
			b.Fatal(err)
		}
		return m
	}
	g := &benchGroup{leader: mk("p0000"), member: mk("p0001"), clock: clock}
	view := []string{"p0000", "p0001"}
	g.leader.heard["p0001"] = g.member.self
	g.member.heard["p0000"] = g.leader.self
	for i := 2; i < members; i++ {
		p := fmt.Sprintf("p%04d", i)
		id, err := identity.Generate()
		if err != nil {
			b.Fatal(err)
		}
		key, err := keymsg.KEM().GenerateKey()
		if err != nil {
			b.Fatal(err)
		}
		a, err := keymsg.NewAnnouncement("bench", p, "Participant "+p, id, key.PublicKey().Bytes())
		if err != nil {
			b.Fatal(err)
		}
		g.leader.heard[p] = a.Entry
		view = append(view, p)
	}
	g.leader.view = view
	g.member.view = view
	g.leader.gen++
	return g
}

// BenchmarkRekey is a leader's CPU per re-key: draw the secret, seal it to
// every member with HPKE, sign, encode, and install its own keys.
func BenchmarkRekey(b *testing.B) {
	for _, members := range []int{50, 200, 1000} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			g := newBenchGroup(b, members)
			var size int
			b.ResetTimer()
			for range b.N {
				out, err := g.leader.rekey(g.clock.Now(), false)
				if err != nil {
					b.Fatal(err)
				}
				size = len(out[0].Payload)
			}
			b.ReportMetric(float64(size), "bytes/epoch")
		})
	}
}

// BenchmarkAcceptEpoch is a member's CPU to take an epoch message: decode,
// verify the leader's signature and (cold) every entry's or (warm) only
// those it has not verified before, open its copy, derive and install
// every sender's key.
func BenchmarkAcceptEpoch(b *testing.B) {
	for _, members := range []int{50, 200, 1000} {
		for _, warm := range []bool{false, true} {
			name := fmt.Sprintf("members=%d/cache=cold", members)
			if warm {
				name = fmt.Sprintf("members=%d/cache=warm", members)
			}
			b.Run(name, func(b *testing.B) {
				g := newBenchGroup(b, members)
				payloads := make([][]byte, b.N+1)
				for i := range payloads {
					out, err := g.leader.rekey(g.clock.Now(), false)
					if err != nil {
						b.Fatal(err)
					}
					payloads[i] = out[0].Payload
				}
				// The first epoch warms the cache (or not).
				if _, err := g.member.HandleMessage("p0000", payloads[0]); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for i := range b.N {
					if !warm {
						b.StopTimer()
						clear(g.member.verified)
						b.StartTimer()
					}
					if _, err := g.member.HandleMessage("p0000", payloads[i+1]); err != nil {
						b.Fatal(err)
					}
				}
				if got, want := g.member.Status().Newest, g.leader.Status().Newest; got != want {
					b.Fatalf("member at epoch %d, want %d", got, want)
				}
			})
		}
	}
}
