package system

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/adversary"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// The tests in this file are issue 13's acceptance for participants:
// each bot holds the transparency log's checkpoints, checks every new one
// against the newest it holds and proves its own placements and the
// meeting's policy changes included; a control plane that rewrites its
// log with its own key — truncated, edited, rebuilt — is caught by a
// participant that held a checkpoint from before, and never an honest
// one.

// stableURL is the control plane's address as participants know it,
// kept across a restart of the control plane (which comes back on another
// port): a reverse proxy to wherever it is now.
type stableURL struct {
	URL    string
	target atomic.Pointer[url.URL]
}

func newStableURL(t *testing.T, c *testcluster.Cluster) *stableURL {
	t.Helper()
	s := &stableURL{}
	s.point(t, c)
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			u := s.target.Load()
			r.SetURL(u)
			r.Out.Host = u.Host
		},
		FlushInterval: -1,
		// The control plane is away during its restart: a 502, which a
		// client retries; nothing worth a line.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// point sends the proxy to the control plane's current address.
func (s *stableURL) point(t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	u, err := url.Parse(c.URL)
	if err != nil {
		t.Fatal(err)
	}
	s.target.Store(u)
}

// auditBot is a bot's configuration for the tests here: joining from
// DE through the stable address, retrying a lost control plane for a
// while.
func auditBot(t *testing.T, m testcluster.Created, server, name string) bot.Config {
	return bot.Config{Server: server, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: fingerprint(t, m), Name: name, Country: "DE",
		NoPublish: true, RejoinTimeout: 20 * time.Second}
}

// watched is a bot run whose log watcher the test can see.
type watched struct {
	*botRun
	mu sync.Mutex
	w  *client.AuditWatcher
}

func runWatched(t *testing.T, cfg bot.Config) *watched {
	t.Helper()
	b := &watched{}
	cfg.OnAudit = func(w *client.AuditWatcher) {
		b.mu.Lock()
		b.w = w
		b.mu.Unlock()
	}
	b.botRun = runBot(t, cfg)
	return b
}

func (b *watched) watcher() *client.AuditWatcher {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w
}

// waitAudit waits until the bot's view of the log satisfies cond.
func (b *watched) waitAudit(t *testing.T, what string, cond func(client.AuditStatus) bool) client.AuditStatus {
	t.Helper()
	var s client.AuditStatus
	defer func() {
		if t.Failed() {
			t.Logf("the bot's view of the log at the end: %+v", s)
			select {
			case <-b.done:
				t.Logf("the bot had ended: %v", b.err)
			default:
			}
		}
	}()
	testcluster.WaitFor(t, 8*time.Second, what, func() bool {
		w := b.watcher()
		if w == nil {
			return false
		}
		s = w.Status()
		if s.State == client.AuditInconsistent {
			t.Fatalf("%s: the log is inconsistent: %s", what, s.Reason)
		}
		return cond(s)
	})
	return s
}

// alarmed waits for the bot to end on its alarm and returns its report.
func alarmed(t *testing.T, b *botRun, want ...string) *bot.Report {
	t.Helper()
	rep, err := b.ended(t, 8*time.Second)
	if !errors.Is(err, bot.ErrAuditAlarm) {
		t.Fatalf("the bot ended with %v, not the alarm", err)
	}
	if rep == nil || rep.Audit.State != client.AuditInconsistent || !slices.ContainsFunc(want, func(w string) bool { return strings.Contains(rep.Audit.Reason, w) }) {
		t.Fatalf("the bot's audit report %+v, want an inconsistency naming one of %q", rep.Audit, want)
	}
	return rep
}

// An honest meeting with a policy change and the move it makes: the bot
// holds a growing list of consistent checkpoints and proves its placement,
// its migration and the policy change included.
func TestAuditLogHonestMeetingWithMove(t *testing.T) {
	ctx := context.Background()
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:2])
	m := c.CreateMeeting(policy.Policy{})
	b := runWatched(t, auditBot(t, m, c.URL, "Ada"))
	b.waitIn(t, 8*time.Second)
	b.waitAudit(t, "the placement proved", func(s client.AuditStatus) bool { return s.EntriesProved >= 1 })
	if _, err := c.Host(m.ID).SetPolicy(ctx, policy.Policy{BlockedCountries: []string{"DE"}}); err != nil {
		t.Fatal(err)
	}
	s := b.waitAudit(t, "the migration and the policy change proved", func(s client.AuditStatus) bool {
		return s.EntriesProved >= 3 && s.EntriesPending == 0
	})
	cps := b.watcher().Checkpoints()
	rep, err := b.stop()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Moves) == 0 || rep.Node.ID != "us-iad" {
		t.Fatalf("the bot did not move off DE: %+v on %+v", rep.Moves, rep.Node)
	}
	if rep.Audit.State != client.AuditConsistent || len(rep.Checkpoints) < 2 || len(rep.Checkpoints) < len(cps) {
		t.Fatalf("report: %+v with %d checkpoints (status was %+v)", rep.Audit, len(rep.Checkpoints), s)
	}
	// Each is the control plane's, and each extends the one before.
	v := adversary.LogVerifier(t, c.API)
	var prev audit.Checkpoint
	for i, signed := range rep.Checkpoints {
		cp, err := audit.OpenCheckpoint([]byte(signed), v)
		if err != nil {
			t.Fatalf("checkpoint %d: %v", i, err)
		}
		if i > 0 {
			proof, err := c.API.ConsistencyProof(ctx, prev.Size, cp.Size)
			if err != nil || audit.CheckConsistency(prev, cp, proof.Proof) != nil {
				t.Fatalf("checkpoint %d (size %d) does not extend %d (size %d): %v", i, cp.Size, i-1, prev.Size, err)
			}
		}
		prev = cp
	}
}

// An honest log never alarms: a bot running across a restart of the
// control plane holds the checkpoints of the rebuilt tree as extending
// the ones before, and proves its placement after the restart too.
func TestAuditLogHonestAcrossControlRestart(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:2])
	m := c.CreateMeeting(policy.Policy{})
	addr := newStableURL(t, c)
	b := runWatched(t, auditBot(t, m, addr.URL, "Ada"))
	b.waitIn(t, 8*time.Second)
	before := b.waitAudit(t, "the placement proved", func(s client.AuditStatus) bool { return s.EntriesProved >= 1 })
	c.RestartControl()
	addr.point(t, c)
	for _, n := range testcluster.World()[:2] {
		c.StartNode(n)
	}
	c.WaitHealthy(2)
	b.waitAudit(t, "the placement after the restart proved", func(s client.AuditStatus) bool {
		return s.EntriesProved > before.EntriesProved && s.EntriesPending == 0 && s.Size > before.Size
	})
	rep, err := b.stop()
	if err != nil {
		t.Fatal(err)
	}
	if rep.Audit.State != client.AuditConsistent {
		t.Fatalf("after an honest restart: %+v", rep.Audit)
	}
}

// The log's last entries cut off and the rest left as it was, which the
// real key still verifies: a bot that held a checkpoint across the
// restart raises the alarm, and so does a new run given the checkpoints
// the first wrote.
func TestAuditLogTruncationIsCaught(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	m := c.CreateMeeting(policy.Policy{})
	addr := newStableURL(t, c)
	file := filepath.Join(t.TempDir(), "checkpoints")
	cfg := auditBot(t, m, addr.URL, "Ada")
	var fmu sync.Mutex
	cfg.OnCheckpoint = func(signed []byte) {
		fmu.Lock()
		defer fmu.Unlock()
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		if _, err := f.Write(append(bytes.Clone(signed), '\n')); err != nil {
			t.Error(err)
		}
	}
	b := runWatched(t, cfg)
	b.waitIn(t, 8*time.Second)
	held := b.waitAudit(t, "the placement proved", func(s client.AuditStatus) bool { return s.EntriesProved >= 1 && s.EntriesPending == 0 })

	adversary.RewriteLog(t, c, func(ctx context.Context, l *adversary.AuditLog) error {
		return l.Truncate(ctx, int(held.Size)-1)
	})
	addr.point(t, c)
	// No node yet: the bot's rejoin waits, its watcher asks the restarted
	// control plane for its checkpoint.
	rep := alarmed(t, b.botRun, "newest held")
	if len(rep.Checkpoints) == 0 {
		t.Fatalf("the alarmed bot reports no checkpoints")
	}

	c.StartNode(testcluster.World()[0])
	c.WaitHealthy(1)
	fmu.Lock()
	data, err := os.ReadFile(file)
	fmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	again, err := audit.SplitCheckpoints(data)
	if err != nil || len(again) == 0 {
		t.Fatalf("the checkpoints file: %d, %v", len(again), err)
	}
	cfg = auditBot(t, m, addr.URL, "Ada again")
	cfg.Checkpoints = again
	alarmed(t, runBot(t, cfg), "size")
}

// A fork: participant 1 holds a checkpoint, the log is edited (one
// entry changed, its chain sealed again with the real key) and the control
// plane restarted; participant 2 joins the rewritten log, consistent in
// its own view, and is given participant 1's checkpoint: the alarm.
func TestAuditLogForkIsCaughtByAnotherParticipantsCheckpoint(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	m := c.CreateMeeting(policy.Policy{})
	first := runWatched(t, auditBot(t, m, c.URL, "Ada"))
	pid := first.waitIn(t, 8*time.Second)
	first.waitAudit(t, "the placement proved", func(s client.AuditStatus) bool { return s.EntriesProved >= 1 && s.EntriesPending == 0 })
	cps := first.watcher().Checkpoints()
	c1 := cps[len(cps)-1]
	if _, err := first.stop(); err != nil {
		t.Fatal(err)
	}

	adversary.RewriteLog(t, c, func(ctx context.Context, l *adversary.AuditLog) error {
		entries, err := l.Entries(ctx)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.Participant == pid && e.Kind == audit.KindPlacement {
				return l.Edit(ctx, e.Index, func(e *audit.Entry) { e.Node, e.NodeCountry = "cn-pek", "CN" })
			}
		}
		return errors.New("no placement of the first participant")
	})
	c.StartNode(testcluster.World()[0])
	c.WaitHealthy(1)
	second := runWatched(t, auditBot(t, m, c.URL, "Grace"))
	second.waitIn(t, 8*time.Second)
	second.waitAudit(t, "the second participant's placement proved", func(s client.AuditStatus) bool {
		return s.State == client.AuditConsistent && s.EntriesProved >= 1 && s.EntriesPending == 0
	})
	err := second.watcher().OfferCheckpoint([]byte(c1))
	if !errors.Is(err, audit.ErrInconsistent) {
		t.Fatalf("the first participant's checkpoint offered: %v", err)
	}
	alarmed(t, second.botRun, "forked")
}

// The stream deleted and a new log written in its place, re-sealed from
// scratch with the real key and without the meeting's placements: a bot
// holding a checkpoint raises the alarm.
func TestAuditLogRebuiltStreamIsCaught(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	m := c.CreateMeeting(policy.Policy{})
	addr := newStableURL(t, c)
	b := runWatched(t, auditBot(t, m, addr.URL, "Ada"))
	b.waitIn(t, 8*time.Second)
	b.waitAudit(t, "the placement proved", func(s client.AuditStatus) bool { return s.EntriesProved >= 1 && s.EntriesPending == 0 })
	adversary.RewriteLog(t, c, func(ctx context.Context, l *adversary.AuditLog) error {
		return l.Rebuild(ctx, func(e audit.Entry) bool { return e.Kind != audit.KindPlacement })
	})
	addr.point(t, c)
	alarmed(t, b.botRun, "newest held")
}

// Members pass the checkpoints they hold to each other through the key
// schedule, each signed by its identity key: on an honest log, every one
// another member shared is checked as a view of the same log.
func TestAuditLogCheckpointsGossiped(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	m := c.CreateMeeting(policy.Policy{})
	first := runWatched(t, auditBot(t, m, c.URL, "Ada"))
	first.waitIn(t, 8*time.Second)
	second := runWatched(t, auditBot(t, m, c.URL, "Grace"))
	second.waitIn(t, 8*time.Second)
	// The second's join is a new entry: a new checkpoint, which each
	// holds and passes on.
	for _, b := range []*watched{first, second} {
		b.waitAudit(t, "checkpoints from the other member checked", func(s client.AuditStatus) bool { return s.Offered >= 1 })
	}
	for _, b := range []*watched{first, second} {
		rep, err := b.stop()
		if err != nil {
			t.Fatal(err)
		}
		if rep.Audit.State != client.AuditConsistent {
			t.Fatalf("an honest log: %+v", rep.Audit)
		}
	}
}

// A control plane that shows one participant a fork of its log (an old
// entry edited, its chain sealed again with the control plane's own key)
// and the other the real one: each view holds on its own, and the
// participants catch the fork by themselves, from the checkpoints they
// pass each other through the key schedule.
func TestAuditLogForkBetweenParticipantsIsCaughtByThem(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	m := c.CreateMeeting(policy.Policy{})
	fork, err := adversary.StartForkedLog(c.URL, c.OperatorToken(), c.ControlKey(), 0, func(e *audit.Entry) { e.Reason += " (rewritten)" })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fork.Close() })
	real := runWatched(t, auditBot(t, m, c.URL, "Ada"))
	real.waitIn(t, 8*time.Second)
	forked := runWatched(t, auditBot(t, m, fork.URL, "Grace"))
	forked.waitIn(t, 8*time.Second)
	// A policy change is a new entry: a new checkpoint for each, which
	// each passes on to the other.
	if _, err := c.Host(m.ID).SetPolicy(context.Background(), policy.Policy{BlockedCountries: []string{"RU"}}); err != nil {
		t.Fatal(err)
	}
	var first *botRun
	select {
	case <-real.done:
		first = real.botRun
	case <-forked.done:
		first = forked.botRun
	case <-time.After(8 * time.Second):
		t.Fatalf("no alarm: %+v and %+v", real.watcher().Status(), forked.watcher().Status())
	}
	// Which view a participant holds when the other's checkpoint arrives
	// decides the words: two trees of one size, a larger tree that does
	// not extend the smaller, or a checkpoint larger than the view the
	// forking control plane shows has caught up to.
	alarmed(t, first, "forked", "lost entries, or is another one")
}
