package system

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// watchSlack is how much longer than its deadline a move or a relay's
// teardown may take before the watcher calls it a broken promise: the
// control plane's enforcement tick, the nodes' heartbeats and a loaded
// machine.
const watchSlack = 1500 * time.Millisecond

// watcher polls a meeting's routing state throughout a test and records
// every moment the policy's promise was broken: a participant on a node the
// current policy blocks that is not being moved off it (or is still there
// past the move deadline), or a relay link touching a blocked node.
type watcher struct {
	t        *testing.T
	api      *apiclient.Client
	meeting  string
	deadline time.Duration // the cluster's move deadline, never more than the 5 s promised
	mu       sync.Mutex
	// violations and polls are what the polls found; clean is whether the
	// last poll, at cleanAt, saw nothing where the policy forbids.
	violations []string
	polls      int
	clean      bool
	cleanAt    time.Time
	stop       chan struct{}
	done       chan struct{}
	// since holds, for each participant or relay link seen where the
	// policy forbids, when this stretch of being seen there began.
	since map[string]stretch
}

// stretch is one run of polls that saw the same thing.
type stretch struct{ first, last time.Time }

// seen records that key was seen now and returns for how long it has been
// seen. With gapEnds set, a key unseen for longer than that starts afresh:
// a participant's id stays the same when the policy blocks its node, lets
// it be, and blocks it again.
func (w *watcher) seen(key string, now time.Time, gapEnds time.Duration) time.Duration {
	s, ok := w.since[key]
	if !ok || (gapEnds > 0 && now.Sub(s.last) > gapEnds) {
		s.first = now
	}
	s.last = now
	w.since[key] = s
	return now.Sub(s.first)
}

// watch starts watching a meeting of a cluster whose move deadline is
// moveDeadline: past it (and watchSlack), nothing may be left on a blocked
// node. The promise is 5 s; a cluster with a shorter deadline is held to
// its own.
func watch(t *testing.T, cl *apiclient.Client, meeting string, moveDeadline time.Duration) *watcher {
	w := &watcher{t: t, api: cl, meeting: meeting, deadline: min(moveDeadline, 5*time.Second),
		stop: make(chan struct{}), done: make(chan struct{}), since: map[string]stretch{}}
	go w.run()
	return w
}

func (w *watcher) run() {
	defer close(w.done)
	for {
		select {
		case <-w.stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
		rv, err := w.routing()
		if err != nil {
			continue
		}
		eff, err := policy.Combine(policy.Policy{}, rv.EffectivePolicy)
		if err != nil {
			continue
		}
		w.check(rv, eff, time.Now())
	}
}

// check records what one poll of the routing state saw.
func (w *watcher) check(rv api.Routing, eff policy.Effective, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.polls++
	bound := w.deadline + watchSlack
	clean := true
	for _, p := range rv.Participants {
		if eff.Allows(p.Node.Country, p.Node.Region) {
			continue
		}
		clean = false
		// Allowed only while being moved, within the deadline.
		if listed := w.seen(p.ID, now, time.Second); p.Moving == "" || listed > bound {
			w.violations = append(w.violations, "participant "+p.ID+" on blocked node "+p.Node.ID+" (moving: "+p.Moving+")")
		}
	}
	for _, r := range rv.Relays {
		if eff.Allows(r.From.Country, r.From.Region) && eff.Allows(r.To.Country, r.To.Region) {
			continue
		}
		clean = false
		// Relays to blocked nodes must be torn down within the same
		// deadline as moves; until the nodes' heartbeats stop listing a
		// link it shows as closing.
		// A pair of nodes can be linked, closed and linked again as
		// policies change back and forth: each link, told apart by when
		// it started, gets its own deadline.
		key := "relay " + r.From.ID + "-" + r.To.ID
		if listed := w.seen(key+" since "+r.Since.Format(time.RFC3339Nano), now, 0); !r.Closing || listed > bound {
			w.violations = append(w.violations, fmt.Sprintf("%s touches a blocked node (closing %v, listed for %s)", key, r.Closing, listed.Round(time.Millisecond)))
		}
	}
	w.clean, w.cleanAt = clean, now
}

// cleanSince says whether a poll after t saw nothing where the policy
// forbids.
func (w *watcher) cleanSince(t time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.clean && w.cleanAt.After(t)
}

// routing asks for the meeting's routing, giving up after a second so a
// slow answer costs one poll, not the watch.
func (w *watcher) routing() (api.Routing, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return w.api.Routing(ctx, w.meeting)
}

func (w *watcher) finish() {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.polls < 10 {
		w.t.Errorf("routing state polled only %d times", w.polls)
	}
	for _, v := range w.violations {
		w.t.Error("invariant broken: " + v)
	}
}

// How long media must flow around an event, and what must then have
// arrived. mediaWhile is forwarded bytes: about a second and a half of two
// bots' media through their node (the test clips are fixed, so this is a
// fixed amount of media, however long a loaded machine takes to carry it).
// minVideo and minAudio are frames a bot must receive from another over
// that while; it sends about 25 and 50 a second.
const (
	mediaWhile = 150_000
	minVideo   = 20
	minAudio   = 40
)

// nodeBytes is what a meeting's report counts as forwarded, by node.
func nodeBytes(cl *apiclient.Client, meeting string) map[string]uint64 {
	rep, _ := cl.MeetingReport(context.Background(), meeting) // nothing counted until it answers
	out := map[string]uint64{}
	for _, u := range rep.Nodes {
		out[u.Node] = u.Bytes
	}
	return out
}

// waitTraffic waits until the meeting's report counts at least atLeast
// bytes more than base on every node named in base: media is flowing
// through those nodes, not merely connected. The report is updated every
// cluster TrafficEvery, so this also waits out the nodes' counting.
func waitTraffic(t *testing.T, cl *apiclient.Client, meeting string, base map[string]uint64, atLeast uint64, d time.Duration) {
	t.Helper()
	testcluster.WaitFor(t, d, fmt.Sprintf("%d more bytes forwarded on %v", atLeast, base), func() bool {
		now := nodeBytes(cl, meeting)
		for node, b := range base {
			if now[node] < b+atLeast {
				return false
			}
		}
		return true
	})
}

// startBots runs one bot for each config until the returned stop is
// called; stop returns their reports, in order. A bot that fails fails the
// test.
func startBots(t *testing.T, cfgs ...bot.Config) (stop func() []*bot.Report) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	reports := make([]*bot.Report, len(cfgs))
	for i, cfg := range cfgs {
		wg.Go(func() {
			rep, err := bot.Run(ctx, cfg)
			if err != nil {
				t.Errorf("bot %d: %v", i, err)
			}
			reports[i] = rep
		})
	}
	t.Cleanup(func() { cancel(); wg.Wait() }) // when the test ends before stop
	return func() []*bot.Report {
		cancel()
		wg.Wait()
		return reports
	}
}
