package bench

import (
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/e2ee/group"
	"github.com/oakmeet/oakmeet/e2ee/identity"
)

// keyNet is a meeting's key schedule alone: members passing key messages
// through a perfect relay, with no media and no network, to see what a
// burst of joins costs the key schedule itself.
type keyNet struct {
	tb      testing.TB
	ids     []string // join order
	members map[string]*group.Member
	queue   []keyMsg
	counts  map[string]int // messages by type ("/all": to everyone)
}

type keyMsg struct {
	from, to string
	payload  []byte
}

func (n *keyNet) join(pid string) {
	id, err := identity.Generate()
	if err != nil {
		n.tb.Fatal(err)
	}
	m, err := group.NewMember(group.Config{Meeting: "bench", Participant: pid, Identity: id, Name: pid})
	if err != nil {
		n.tb.Fatal(err)
	}
	n.members[pid] = m
	n.ids = append(n.ids, pid)
	n.send(pid, []group.Outgoing{m.Announce()})
}

func (n *keyNet) send(from string, outs []group.Outgoing) {
	for _, o := range outs {
		n.queue = append(n.queue, keyMsg{from, o.To, o.Payload})
	}
}

// list gives every member the server's list, as a node would.
func (n *keyNet) list() {
	for _, p := range n.ids {
		outs, err := n.members[p].OnRosterChange(append([]string(nil), n.ids...))
		if err != nil {
			n.tb.Fatal(err)
		}
		n.send(p, outs)
	}
}

// deliver passes messages on until none is left.
func (n *keyNet) deliver() {
	for len(n.queue) > 0 {
		msg := n.queue[0]
		n.queue = n.queue[1:]
		var hdr struct{ Type string }
		_ = json.Unmarshal(msg.payload, &hdr)
		to := []string{msg.to}
		if msg.to == "" {
			hdr.Type += "/all"
			to = to[:0]
			for _, p := range n.ids {
				if p != msg.from {
					to = append(to, p)
				}
			}
		}
		n.counts[hdr.Type]++
		for _, p := range to {
			outs, _ := n.members[p].HandleMessage(msg.from, msg.payload) // refusals are the schedule's business
			n.send(p, outs)
		}
	}
}

// tick ticks every member that has something due about now.
func (n *keyNet) tick() {
	for _, p := range n.ids {
		m := n.members[p]
		if m.NextTick().Before(time.Now().Add(60 * time.Millisecond)) {
			outs, _ := m.Tick()
			n.send(p, outs)
		}
	}
}

// keyed reports whether everyone sends under one epoch holding everyone.
func (n *keyNet) keyed() bool {
	lead := n.members[n.ids[0]]
	e := lead.Epoch()
	for _, m := range n.members {
		if st := m.Status(); st.Epoch != e || st.Newest != e {
			return false
		}
	}
	for _, p := range lead.People() {
		if !p.InKeys {
			return false
		}
	}
	return len(lead.People()) == len(n.ids)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBurstKeying is the key schedule's side of a burst of joins:
// one member in, then n join at once; the time until every member sends
// under one epoch holding all of them (join batching, the heard handshake,
// every ack, the commit), the process's CPU for it, and the key messages
// it took.
func BenchmarkBurstKeying(b *testing.B) {
	for _, size := range []int{50, 200} {
		b.Run(fmt.Sprintf("joins=%d", size), func(b *testing.B) {
			for range b.N {
				n := &keyNet{tb: b, members: map[string]*group.Member{}, counts: map[string]int{}}
				n.join("p0000")
				n.list()
				n.deliver()
				start, cpu := time.Now(), cpuTime()
				for i := 1; i <= size; i++ {
					n.join(fmt.Sprintf("p%04d", i))
				}
				n.list()
				for n.deliver(); !n.keyed(); n.deliver() {
					if time.Since(start) > 2*time.Minute {
						b.Fatalf("not keyed after 2 minutes: %+v", n.members[n.ids[0]].Status())
					}
					time.Sleep(50 * time.Millisecond) // the members' clocks run in real time
					n.tick()
				}
				total := 0
				for _, c := range n.counts {
					total += c
				}
				b.ReportMetric(time.Since(start).Seconds(), "s-to-keyed")
				b.ReportMetric((cpuTime() - cpu).Seconds(), "cpu-s")
				b.ReportMetric(float64(total), "messages")
				b.ReportMetric(float64(n.counts["announce"]), "direct-announces")
				b.ReportMetric(float64(n.members["p0000"].Epoch()-1), "epochs")
			}
		})
	}
}
