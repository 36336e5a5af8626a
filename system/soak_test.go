package system

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// soakShape is how big a soak is and how long it churns.
type soakShape struct {
	nodes    [][3]string // id, country, region
	meetings int
	// countries are the bots' locations: meeting i starts with bots from
	// countries i and i+1 (mod len), and each join burst brings burst more.
	countries []string
	burst     int
	churn     time.Duration // rounds start until this has passed; 0: one
}

// ciSoak fits two shared cores under -race in well under a minute: six
// nodes in three countries, four meetings, eleven bots at most, churning
// for ciChurn (a round takes about six seconds on an idle machine, and
// the soak stops only between rounds, so a slow machine does fewer).
var ciSoak = soakShape{
	nodes: [][3]string{{"de-1", "DE", "eu-central-1"}, {"de-2", "DE", "eu-central-1"}, {"fr-1", "FR", "eu-west-3"}, {"fr-2", "FR", "eu-west-3"},
		{"us-1", "US", "us-east-1"}, {"us-2", "US", "us-east-1"}},
	meetings:  4,
	countries: []string{"DE", "FR", "US"},
	burst:     3,
	churn:     ciChurn,
}

const ciChurn = 15 * time.Second

// longSoak is the soak of OAKMEET_SOAK=<duration>: eight nodes in four
// countries, six meetings, up to fifteen bots.
func longSoak(d time.Duration) soakShape {
	return soakShape{
		nodes: [][3]string{{"de-1", "DE", "eu-central-1"}, {"de-2", "DE", "eu-central-1"}, {"fr-1", "FR", "eu-west-3"}, {"fr-2", "FR", "eu-west-3"},
			{"us-1", "US", "us-east-1"}, {"us-2", "US", "us-east-1"}, {"jp-1", "JP", "ap-northeast-1"}, {"jp-2", "JP", "ap-northeast-1"}},
		meetings:  6,
		countries: []string{"DE", "FR", "US", "JP"},
		burst:     3,
		churn:     d,
	}
}

// stepTimeout bounds every churn step's effect: a lost node noticed, its
// participants placed again and re-keyed, on a loaded machine.
const stepTimeout = 30 * time.Second

// The real system — control plane and node processes — under churn: bots
// join in bursts and leave, a node is killed and comes back, a node
// drains, a host's policy moves participants. Every frame a bot fails to
// decrypt for want of a key is a no_key drop; a frame that fails
// authentication under the key its key id names is an integrity failure,
// two members holding different secrets under one key id, and there must
// be none. OAKMEET_SOAK=10m churns for that long instead of ciChurn, on
// a bigger deployment (scripts/soak.sh sets go test's -timeout to match).
func TestSoakChurnKeepsEveryFrameIntact(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	shape := ciSoak
	if v := os.Getenv("OAKMEET_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("OAKMEET_SOAK=%q: %v", v, err)
		}
		shape = longSoak(d)
	}
	d := startDeployment(t)
	var ids []string
	for _, n := range shape.nodes {
		d.startNode(n[0], n[1], n[2])
		ids = append(ids, n[0])
	}
	d.waitHealthy(ids...)
	f := &fleet{t: t, d: d, shape: shape, start: time.Now()}
	t.Cleanup(func() {
		for _, b := range f.bots {
			b.cancel()
			<-b.done
		}
	})
	f.createMeetings(shape.meetings)
	cc := shape.countries
	for i, sm := range f.meetings {
		f.join(sm, cc[i%len(cc)], cc[(i+1)%len(cc)])
	}
	f.waitSettled("the first bots")

	for round := 0; ; round++ {
		f.round(round)
		if time.Since(f.start) >= shape.churn {
			break
		}
	}
	f.leave(slices.Clone(f.bots)...)
	f.verdict()
}

// round is one of each kind of churn, each step waiting for its effect.
func (f *fleet) round(round int) {
	sm := f.meetings[round%len(f.meetings)]
	var cs []string
	for i := range f.shape.burst {
		cs = append(cs, f.shape.countries[(round+i)%len(f.shape.countries)])
	}
	burst := f.join(sm, cs...)
	f.waitSettled("a join burst")

	f.kill(f.busiest())
	f.waitSettled("a node killed")

	f.move(f.meetings[(round+1)%len(f.meetings)])
	f.waitSettled("a policy move")

	f.drain(f.busiest())
	f.waitSettled("a node drained")

	// All but one of the burst leave, and the meeting's oldest bot: the
	// meeting's people change and their number stays the same.
	f.leave(append(burst[:len(burst)-1], f.of(sm)[0])...)
	f.waitSettled("bots leaving")
}

// waitSettled waits until every meeting has re-keyed to exactly its bots
// and media flows under the new keys.
func (f *fleet) waitSettled(after string) {
	f.t.Helper()
	testcluster.WaitFor(f.t, stepTimeout, "every meeting keyed to its bots after "+after, f.settled)
	base := f.passed()
	testcluster.WaitFor(f.t, stepTimeout, "media decrypted after "+after, func() bool { return f.flowing(base, 50) })
	f.note("settled after %s", after)
}

// busiest is the node with the most participants.
func (f *fleet) busiest() string {
	f.t.Helper()
	count := map[string]int{}
	testcluster.WaitFor(f.t, stepTimeout, "the routing of every meeting", func() bool {
		clear(count)
		for _, sm := range f.meetings {
			rv, err := f.d.api.Routing(context.Background(), sm.m.ID)
			if err != nil {
				return false
			}
			for _, p := range rv.Participants {
				count[p.Node.ID]++
			}
		}
		return len(count) > 0
	})
	ids := slices.Sorted(maps.Keys(count))
	return slices.MaxFunc(ids, func(a, b string) int { return count[a] - count[b] })
}

// off waits until the control plane places no participant on node id
// and, if dead, no longer counts it healthy: a routing or node list it
// failed to answer says nothing.
func (f *fleet) off(id, what string, dead bool) {
	f.t.Helper()
	testcluster.WaitFor(f.t, stepTimeout, "every participant off "+id+" after "+what, func() bool {
		f.sample()
		if dead {
			nodes, err := f.d.api.Nodes(context.Background())
			if err != nil || slices.ContainsFunc(nodes, func(n api.Node) bool { return n.ID == id && n.Healthy }) {
				return false
			}
		}
		for _, sm := range f.meetings {
			rv, err := f.d.api.Routing(context.Background(), sm.m.ID)
			if err != nil || slices.ContainsFunc(rv.Participants, func(p api.RoutingEntry) bool { return p.Node.ID == id }) {
				return false
			}
		}
		return true
	})
	f.note("every participant off %s", id)
}

// kill kills node id with SIGKILL and, once its participants are placed
// elsewhere, starts it again.
func (f *fleet) kill(id string) {
	f.t.Helper()
	f.note("SIGKILL %s", id)
	f.d.signalNode(id, syscall.SIGKILL)
	f.exited(id)
	f.off(id, "SIGKILL", true)
	f.restart(id)
}

// drain sends node id SIGTERM: it moves its participants away and exits;
// then it starts again.
func (f *fleet) drain(id string) {
	f.t.Helper()
	f.note("SIGTERM (drain) %s", id)
	f.d.signalNode(id, syscall.SIGTERM)
	f.off(id, "a drain", false)
	f.exited(id)
	f.restart(id)
}

func (f *fleet) exited(id string) {
	f.t.Helper()
	done := make(chan error, 1)
	go func() { done <- f.d.nodes[id].Wait() }()
	select {
	case <-done:
	case <-time.After(stepTimeout):
		f.t.Fatalf("%s did not exit", id)
	}
	delete(f.d.nodes, id)
}

func (f *fleet) restart(id string) {
	f.t.Helper()
	f.note("start %s again", id)
	i := slices.IndexFunc(f.shape.nodes, func(n [3]string) bool { return n[0] == id })
	n := f.shape.nodes[i]
	f.d.startNode(n[0], n[1], n[2])
	f.d.waitHealthy(id)
}

// move has meeting sm's host block the country where most of its
// participants are, and waits until none is placed there.
func (f *fleet) move(sm *soakMeeting) {
	f.t.Helper()
	var on map[string]string
	testcluster.WaitFor(f.t, stepTimeout, "meeting placed once", func() bool {
		at, ok := f.d.placedOnce(sm.m.ID)
		on = map[string]string{}
		for name, n := range at {
			on[name] = n.Country
		}
		return ok && len(on) == len(f.of(sm))
	})
	count := map[string]int{}
	for _, c := range on {
		count[c]++
	}
	cs := slices.Sorted(maps.Keys(count))
	blocked := slices.MaxFunc(cs, func(a, b string) int { return count[a] - count[b] })
	f.note("meeting m%d's host blocks %s (%d of its %d participants there)", sm.n, blocked, count[blocked], len(on))
	if _, err := sm.host.SetPolicy(context.Background(), policy.Policy{BlockedCountries: []string{blocked}}); err != nil {
		f.t.Fatalf("policy change: %v", err)
	}
	testcluster.WaitFor(f.t, stepTimeout, "meeting moved off "+blocked, func() bool {
		f.sample()
		at, ok := f.d.placedOnce(sm.m.ID)
		if !ok {
			return false
		}
		for _, n := range at {
			if n.Country == blocked {
				return false
			}
		}
		return true
	})
}

// verdict totals every bot's report, logs the totals and the churn's
// timeline, and fails on any integrity failure.
func (f *fleet) verdict() {
	f.t.Helper()
	var frames, noKey, replayed, failed, moves, changes int64
	var bad []string
	epochs := map[int]map[uint64]bool{}
	sender := map[string]string{}
	for _, b := range f.left {
		b.mu.Lock()
		for _, pid := range b.pids {
			sender[pid] = b.name
		}
		b.mu.Unlock()
	}
	for _, b := range f.left {
		if b.rep == nil {
			f.t.Errorf("bot %s: no report", b.name)
			continue
		}
		moves += int64(len(b.rep.Moves))
		changes += int64(len(b.rep.KeyChanges))
		for _, k := range b.rep.KeyChanges {
			if epochs[b.meeting.n] == nil {
				epochs[b.meeting.n] = map[uint64]bool{}
			}
			epochs[b.meeting.n][k.Epoch] = true
		}
		for _, tr := range b.rep.Tracks {
			frames += tr.Frames
			noKey += tr.NoKey
			replayed += tr.Replayed
			failed += tr.DecryptFailures
			if tr.DecryptFailures > 0 {
				bad = append(bad, fmt.Sprintf("bot %s (meeting m%d) from %s as %s (%s): %d integrity failures, %d no_key, %d frames",
					b.name, b.meeting.n, sender[tr.ParticipantID], tr.ParticipantID, tr.Kind, tr.DecryptFailures, tr.NoKey, tr.Frames))
			}
		}
	}
	var per []string
	total := 0
	for n := range len(f.meetings) {
		per = append(per, fmt.Sprintf("m%d:%d", n, len(epochs[n])))
		total += len(epochs[n])
	}
	f.t.Logf("soak: %s, %d bots: frames %d, no_key %d, replayed %d, decrypt_failures %d, moves %d, key changes %d, epochs %d (%s)",
		time.Since(f.start).Round(time.Second), len(f.left), frames, noKey, replayed, failed, moves, changes, total, strings.Join(per, " "))
	for _, c := range f.epochConflicts() {
		f.t.Logf("epoch conflict: %s", c)
	}
	f.t.Logf("timeline:\n%s", f.timeline())
	if failed > 0 {
		f.t.Errorf("%d frames failed integrity:\n%s", failed, strings.Join(bad, "\n"))
	}
}

// epochConflicts is every epoch number of a meeting that two bots sent
// under with different rosters: two leaders minted the same number.
func (f *fleet) epochConflicts() []string {
	type key struct {
		meeting int
		epoch   uint64
	}
	seen := map[key]string{}
	by := map[key]string{}
	var out []string
	for _, b := range f.left {
		if b.rep == nil {
			continue
		}
		for _, k := range b.rep.KeyChanges {
			r := slices.Clone(k.Roster)
			sort.Strings(r)
			id, roster := key{b.meeting.n, k.Epoch}, strings.Join(r, ",")
			if was, ok := seen[id]; ok && was != roster {
				out = append(out, fmt.Sprintf("meeting m%d epoch %d at +%s: %s has [%s], %s had [%s]", id.meeting, id.epoch,
					k.At.Sub(f.start).Round(time.Millisecond), b.name, roster, by[id], was))
				continue
			}
			seen[id], by[id] = roster, b.name
		}
	}
	return out
}

// timeline is the soak's events, each at its time from the start.
func (f *fleet) timeline() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var sb strings.Builder
	for _, e := range f.events {
		fmt.Fprintf(&sb, "+%s %s\n", e.at.Sub(f.start).Round(time.Millisecond), e.what)
	}
	return sb.String()
}
