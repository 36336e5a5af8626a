package system

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

func nodes() []testcluster.NodeSpec {
	return []testcluster.NodeSpec{
		{ID: "de-fra", Country: "DE", Region: "eu-central-1"},
		{ID: "fr-par", Country: "FR", Region: "eu-west-3"},
		{ID: "jp-tyo", Country: "JP", Region: "ap-northeast-1"},
		{ID: "us-iad", Country: "US", Region: "us-east-1"},
		{ID: "cn-pek", Country: "CN", Region: "cn-north-1"},
	}
}

// watcher polls a meeting's routing state throughout a test and records
// every moment the policy's promise was broken: a participant on a node the
// current policy blocks that is not being moved off it (or is still there
// past the move deadline), or a relay link touching a blocked node.
type watcher struct {
	t          *testing.T
	api        *apiclient.Client
	meeting    string
	mu         sync.Mutex
	violations []string
	polls      int
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

func watch(t *testing.T, cl *apiclient.Client, meeting string) *watcher {
	w := &watcher{t: t, api: cl, meeting: meeting, stop: make(chan struct{}), done: make(chan struct{}), since: map[string]stretch{}}
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
		now := time.Now()
		w.mu.Lock()
		w.polls++
		for _, p := range rv.Participants {
			if eff.Allows(p.Node.Country, p.Node.Region) {
				continue
			}
			// Allowed only while being moved, within the 5 s deadline plus
			// slack for enforcement's half-second tick and a loaded machine.
			if listed := w.seen(p.ID, now, time.Second); p.Moving == "" || listed > 6500*time.Millisecond {
				w.violations = append(w.violations, "participant "+p.ID+" on blocked node "+p.Node.ID+" (moving: "+p.Moving+")")
			}
		}
		for _, r := range rv.Relays {
			if eff.Allows(r.From.Country, r.From.Region) && eff.Allows(r.To.Country, r.To.Region) {
				continue
			}
			// Relays to blocked nodes must be torn down within the same 5 s
			// as moves (plus the same slack); until the nodes' heartbeats
			// stop listing a link it shows as closing.
			// A pair of nodes can be linked, closed and linked again as
			// policies change back and forth: each link, told apart by
			// when it started, gets its own 5 s.
			key := "relay " + r.From.ID + "-" + r.To.ID
			if listed := w.seen(key+" since "+r.Since.Format(time.RFC3339Nano), now, 0); !r.Closing || listed > 6500*time.Millisecond {
				w.violations = append(w.violations, fmt.Sprintf("%s touches a blocked node (closing %v, listed for %s)", key, r.Closing, listed.Round(time.Millisecond)))
			}
		}
		w.mu.Unlock()
	}
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

// Bots placed in different countries exchange media across nodes; when
// the host blocks one bot's country mid-meeting, that bot moves to an
// allowed node within 5 s, media keeps flowing, and no participant or relay
// is ever left on the blocked node.
func TestCrossNodeMediaAndPolicyMove(t *testing.T) {
	ctx := context.Background()
	c := testcluster.Start(t, policy.Policy{}, nodes())
	m := c.CreateMeeting(policy.Policy{BlockedCountries: []string{"CN"}})
	w := watch(t, c.API, m.ID)

	type result struct {
		rep *bot.Report
		err error
	}
	results := make([]result, 2)
	var wg sync.WaitGroup
	var ready sync.WaitGroup
	ready.Add(2)
	for i, country := range []string{"DE", "JP"} {
		wg.Go(func() {
			rep, err := bot.Run(context.Background(), bot.Config{
				Server: c.URL, Meeting: m.ID, Name: "bot-" + country, Country: country,
				Duration: 16 * time.Second, LoopbackOnly: true,
				Ready: func(string) { ready.Done() },
			})
			results[i] = result{rep, err}
		})
	}
	ready.Wait()
	// Both are in, on their own nodes, with a relay between the nodes.
	testcluster.WaitFor(t, 10*time.Second, "a connected relay between de-fra and jp-tyo", func() bool {
		rv, _ := c.API.Routing(ctx, m.ID) // not yet, until it answers
		for _, r := range rv.Relays {
			if r.Connected {
				return true
			}
		}
		return false
	})
	rv, err := c.API.Routing(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	on := map[string]string{}
	for _, p := range rv.Participants {
		on[p.Name] = p.Node.ID
	}
	if on["bot-DE"] != "de-fra" || on["bot-JP"] != "jp-tyo" {
		t.Fatalf("placements %v", on)
	}

	// Let media cross for a few seconds, then block JP.
	time.Sleep(4 * time.Second) // media runs; the watcher polls meanwhile
	changed := time.Now()
	t.Logf("policy change at %s", changed.Format("15:04:05.000"))
	if _, err := c.API.SetPolicy(ctx, m.ID, m.HostToken, policy.Policy{BlockedCountries: []string{"CN", "JP"}}); err != nil {
		t.Fatalf("policy change: %v", err)
	}
	testcluster.WaitFor(t, 6*time.Second, "bot-JP moved off jp-tyo", func() bool {
		rv, err := c.API.Routing(ctx, m.ID)
		if err != nil {
			return false
		}
		for _, p := range rv.Participants {
			if p.Node.Country == "JP" {
				return false
			}
		}
		return len(rv.Participants) == 2
	})
	if d := time.Since(changed); d > 5*time.Second {
		t.Errorf("move took %s", d)
	}
	wg.Wait()
	w.finish()

	// The report shows JP's traffic stopped at the change.
	rep, err := c.API.MeetingReport(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	byCountry := map[string]api.CountryUsage{}
	for _, cu := range rep.Countries {
		byCountry[cu.Country] = cu
	}
	jpUse, deUse := byCountry["JP"], byCountry["DE"]
	if jpUse.Bytes == 0 || jpUse.LastTraffic == nil || deUse.Bytes == 0 {
		t.Fatalf("report countries %+v", rep.Countries)
	}
	// Counters are folded in every 2 s from 1 s heartbeats.
	if jpUse.LastTraffic.After(changed.Add(4 * time.Second)) {
		t.Errorf("JP traffic until %s, policy changed at %s", jpUse.LastTraffic.Format(time.TimeOnly), changed.Format(time.TimeOnly))
	}
	if _, ok := byCountry["CN"]; ok {
		t.Errorf("CN in the report: %+v", byCountry["CN"])
	}

	de, jp := results[0], results[1]
	if de.err != nil || jp.err != nil {
		t.Fatalf("bots: %v / %v", de.err, jp.err)
	}
	if len(jp.rep.Moves) != 1 || jp.rep.Moves[0].From.Country != "JP" || jp.rep.Moves[0].To.Country == "JP" || jp.rep.Moves[0].To.Country == "CN" {
		t.Fatalf("JP bot moves: %+v", jp.rep.Moves)
	}
	// While on different nodes, the bots shared one key schedule: the same
	// code just before the change.
	before := changed.Add(-500 * time.Millisecond)
	if a, b := stateAt(de.rep.KeyChanges, before), stateAt(jp.rep.KeyChanges, before); a.SecurityCode == "" || a.SecurityCode != b.SecurityCode {
		t.Errorf("across nodes the bots disagree: %+v vs %+v", a, b) // relayed key messages must cross nodes
	}
	// Media crossed nodes in both directions (before and after the move).
	for name, r := range map[string]*bot.Report{"DE": de.rep, "JP": jp.rep} {
		frames := map[string]int64{}
		for _, tr := range r.Tracks {
			frames[tr.Kind] += tr.Frames
			if tr.DecryptFailures > 0 {
				t.Errorf("bot %s: %d decrypt failures", name, tr.DecryptFailures)
			}
		}
		var noKey int64
		for _, tr := range r.Tracks {
			noKey += tr.NoKey
		}
		t.Logf("bot %s: %v frames, %d without key, moves %+v, key changes %+v", name, frames, noKey, r.Moves, r.KeyChanges)
		if frames["video"] < 200 || frames["audio"] < 300 {
			t.Errorf("bot %s received %v", name, frames)
		}
	}
}

func stateAt(h []bot.KeyChange, at time.Time) bot.KeyChange {
	var s bot.KeyChange
	for _, c := range h {
		if c.At.After(at) {
			break
		}
		s = c
	}
	return s
}

// A participant that can only use TURN is relayed by its own node's TURN
// server — the one the join answer names — and media flows both ways.
func TestRelayOnlyThroughTheNodesTURN(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, nodes()[:1])
	m := c.CreateMeeting(policy.Policy{})
	jr, ae, code := c.Join(m.ID, "DE")
	if code != 200 || len(jr.ICEServers) != 1 || !strings.HasPrefix(jr.ICEServers[0].URLs[0], "turn:127.0.0.1:") || jr.ICEServers[0].Credential == "" {
		t.Fatalf("join answer ICE servers: %d %+v %+v", code, jr.ICEServers, ae)
	}
	var wg sync.WaitGroup
	reports := make([]*bot.Report, 2)
	for i, relayOnly := range []bool{true, false} {
		wg.Go(func() {
			rep, err := bot.Run(context.Background(), bot.Config{Server: c.URL, Meeting: m.ID, Country: "DE",
				Duration: 5 * time.Second, LoopbackOnly: true, RelayOnly: relayOnly})
			if err != nil {
				t.Errorf("bot %d: %v", i, err)
			}
			reports[i] = rep
		})
	}
	wg.Wait()
	for i, r := range reports {
		if r == nil {
			t.Fatal("no report")
		}
		var video int64
		for _, tr := range r.Tracks {
			if tr.Kind == "video" {
				video += tr.Frames
			}
		}
		if video < 60 {
			t.Errorf("bot %d (relay only: %v) received %d video frames", i, i == 0, video)
		}
	}
}

// When a policy change leaves no allowed node, the participants on now
// blocked nodes are disconnected with policy_no_allowed_node — never left
// where they are — and the disconnection is audited.
func TestPolicyLeavingNoNodeDisconnects(t *testing.T) {
	ctx := context.Background()
	c := testcluster.Start(t, policy.Policy{}, nodes()[:2])
	m := c.CreateMeeting(policy.Policy{})
	in := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		_, err := bot.Run(context.Background(), bot.Config{Server: c.URL, Meeting: m.ID, Country: "DE",
			Duration: 20 * time.Second, LoopbackOnly: true, Ready: func(string) { close(in) }})
		errc <- err
	}()
	<-in
	changed := time.Now()
	if _, err := c.API.SetPolicy(ctx, m.ID, m.HostToken, policy.Policy{BlockedCountries: []string{"DE", "FR"}}); err != nil {
		t.Fatalf("policy change: %v", err)
	}
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "policy_no_allowed_node") {
			t.Fatalf("bot ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the bot was not disconnected")
	}
	if d := time.Since(changed); d > 5*time.Second {
		t.Errorf("disconnection took %s", d)
	}
	rv, err := c.API.Routing(ctx, m.ID)
	if err != nil || len(rv.Participants) != 0 {
		t.Fatalf("still placed: %+v (%v)", rv.Participants, err)
	}
	a, err := c.API.Audit(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range a.Entries {
		found = found || (e.Kind == audit.KindDisconnect && e.Reason == "policy_no_allowed_node")
	}
	if !found {
		t.Fatal("disconnection not audited")
	}
}
