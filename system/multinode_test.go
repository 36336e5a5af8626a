package system

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
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

// Bots placed in different countries exchange media across nodes; when
// the host blocks one bot's country mid-meeting, that bot moves to an
// allowed node within 5 s, media keeps flowing, and no participant or relay
// is ever left on the blocked node. One scenario in order, each step
// starting where the last left the meeting, so it stays one function.
func TestCrossNodeMediaAndPolicyMove(t *testing.T) {
	ctx := context.Background()
	c := testcluster.Start(t, policy.Policy{}, nodes())
	m := c.CreateMeeting(policy.Policy{BlockedCountries: []string{"CN"}})
	w := watch(t, c.API, m.ID, c.Timing.MoveDeadline)

	type result struct {
		rep   *bot.Report
		err   error
		first string // the participant the bot joined as
	}
	results := make([]result, 2)
	botCtx, stopBots := context.WithCancel(ctx)
	defer stopBots()
	var wg sync.WaitGroup
	var ready sync.WaitGroup
	ready.Add(2)
	for i, country := range []string{"DE", "JP"} {
		wg.Go(func() {
			rep, err := bot.Run(botCtx, bot.Config{
				Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: fingerprint(t, m), Name: "bot-" + country, Country: country,
				LoopbackOnly: true, Linger: 200 * time.Millisecond, RejoinPause: 100 * time.Millisecond,
				Ready: func(pid string) { results[i].first = pid; ready.Done() },
			})
			results[i].rep, results[i].err = rep, err
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

	// Media crosses between the nodes for a while, then JP is blocked.
	waitTraffic(t, c.API, m.ID, map[string]uint64{"de-fra": 0, "jp-tyo": 0}, mediaWhile, 10*time.Second)
	changed := time.Now()
	t.Logf("policy change at %s", changed.Format("15:04:05.000"))
	if _, err := c.Host(m.ID).SetPolicy(ctx, policy.Policy{BlockedCountries: []string{"CN", "JP"}}); err != nil {
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
	// Media flows for a while after the move, then the bots leave.
	after := nodeBytes(c.API, m.ID)
	waitTraffic(t, c.API, m.ID, map[string]uint64{"de-fra": after["de-fra"]}, mediaWhile, 10*time.Second)
	stopBots()
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
	// Counters are folded in every TrafficEvery from the heartbeats; the
	// old connection lasts until the new one carries media.
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
	// Media crossed nodes in both directions, and flowed before and after
	// the move: bot-DE received the JP bot as the participant it joined as
	// (on jp-tyo, over the relay) and as the one it moved as.
	for name, r := range map[string]*bot.Report{"DE": de.rep, "JP": jp.rep} {
		frames := map[string]int64{}
		var noKey int64
		for _, tr := range r.Tracks {
			frames[tr.Kind] += tr.Frames
			noKey += tr.NoKey
			if tr.DecryptFailures > 0 {
				t.Errorf("bot %s: %d decrypt failures", name, tr.DecryptFailures)
			}
		}
		t.Logf("bot %s: %v frames, %d without key, moves %+v, key changes %+v", name, frames, noKey, r.Moves, r.KeyChanges)
		if frames["video"] < 2*minVideo || frames["audio"] < 2*minAudio {
			t.Errorf("bot %s received %v", name, frames)
		}
	}
	for when, pid := range map[string]string{"before the move": jp.first, "after the move": jp.rep.ParticipantID} {
		v, a := framesFrom(de.rep, pid)
		t.Logf("bot DE received %d video and %d audio frames from bot-JP %s", v, a, when)
		if v < minVideo || a < minAudio {
			t.Errorf("bot DE received %d video and %d audio frames from bot-JP (%s) %s", v, a, pid, when)
		}
	}
}

// framesFrom is how many video and audio frames a bot received from one
// participant.
func framesFrom(r *bot.Report, pid string) (video, audio int64) {
	for _, tr := range r.Tracks {
		if tr.ParticipantID != pid {
			continue
		}
		switch tr.Kind {
		case "video":
			video += tr.Frames
		case "audio":
			audio += tr.Frames
		}
	}
	return video, audio
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
	t.Parallel() // a light test: see the package documentation
	c := testcluster.Start(t, policy.Policy{}, nodes()[:1])
	m := c.CreateMeeting(policy.Policy{})
	jr, ae, code := c.Join(m.ID, "DE")
	if code != 200 || len(jr.ICEServers) != 1 || !strings.HasPrefix(jr.ICEServers[0].URLs[0], "turn:127.0.0.1:") || jr.ICEServers[0].Credential == "" {
		t.Fatalf("join answer ICE servers: %d %+v %+v", code, jr.ICEServers, ae)
	}
	cfg := bot.Config{Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: fingerprint(t, m), Country: "DE", LoopbackOnly: true, Linger: 200 * time.Millisecond}
	relayed := cfg
	relayed.RelayOnly = true
	stop := startBots(t, relayed, cfg)
	// Relaying through TURN takes a while to set up: stop once media has
	// flowed for a while, however long that took.
	waitTraffic(t, c.API, m.ID, map[string]uint64{"de-fra": 0}, mediaWhile, 15*time.Second)
	reports := stop()
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
		if video < minVideo {
			t.Errorf("bot %d (relay only: %v) received %d video frames", i, i == 0, video)
		}
	}
}

// When a policy change leaves no allowed node, the participants on now
// blocked nodes are disconnected with policy_no_allowed_node — never left
// where they are — and the disconnection is audited.
func TestPolicyLeavingNoNodeDisconnects(t *testing.T) {
	t.Parallel() // a light test: see the package documentation
	ctx := context.Background()
	c := testcluster.Start(t, policy.Policy{}, nodes()[:2])
	m := c.CreateMeeting(policy.Policy{})
	in := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		_, err := bot.Run(context.Background(), bot.Config{Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: fingerprint(t, m), Country: "DE",
			Duration: 20 * time.Second, LoopbackOnly: true, Ready: func(string) { close(in) }})
		errc <- err
	}()
	select {
	case <-in:
	case err := <-errc:
		t.Fatalf("the bot ended before it was in: %v", err)
	}
	changed := time.Now()
	if _, err := c.Host(m.ID).SetPolicy(ctx, policy.Policy{BlockedCountries: []string{"DE", "FR"}}); err != nil {
		t.Fatalf("policy change: %v", err)
	}
	// The bot ends once it has closed its connections; the promise is the
	// disconnection itself, which the audit entry and the node record.
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "policy_no_allowed_node") {
			t.Fatalf("bot ended with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the bot was not disconnected")
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
		if e.Kind == audit.KindDisconnect && e.Reason == "policy_no_allowed_node" {
			found = true
			if d := e.Time.Sub(changed); d > 5*time.Second {
				t.Errorf("disconnection took %s", d)
			}
		}
	}
	if !found {
		t.Fatal("disconnection not audited")
	}
}
