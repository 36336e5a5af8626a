package control

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/store"
)

// How long a new control plane takes to be ready (docs/BENCHMARKS.md, "a
// new leader's start"), run by hand:
//
//	OAKMEET_BENCH_START=3 go test -count=1 -run TestBenchStart -v ./control/
//
// The value is the number of starts measured on the same store: 10,000
// meetings (two connected participants each, and one in fifty with a join
// stored moments ago: half of those placed in the log, half cut in half),
// and an audit log of 50,000 entries. Each start is split by phase.
func TestBenchStart(t *testing.T) {
	var runs int
	if _, err := fmt.Sscan(os.Getenv("OAKMEET_BENCH_START"), &runs); err != nil || runs <= 0 {
		t.Skip("set OAKMEET_BENCH_START to a number of starts (3) to measure")
	}
	const meetingsN, entriesN, nodesN = 10000, 50000, 10
	emb, nc, st := benchEnv(t)
	nodes := newBenchNodes(t, emb, nodesN)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, key, _ := ed25519Key()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	start := time.Now()
	fillBenchLog(t, st, key, nodes.infos, meetingsN, entriesN)
	t.Logf("stored %d audit entries in %s", entriesN, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range meetingsN {
		node := nodes.infos[i%nodesN]
		id := fmt.Sprintf("bench%05d", i)
		at := start.Add(-time.Hour).UTC()
		m := &meeting{ID: id, Title: "bench", Created: at}
		for p := range 2 {
			m.Participants = append(m.Participants, participant{ID: fmt.Sprintf("p%d%s", p, id), Name: "p",
				Node: api.PlacedNode{ID: node.ID, Country: node.Country, Region: node.Region}, Joined: at, Connected: &at})
		}
		if i%50 == 0 {
			// A join stored just now and not connected: its placement is
			// in the log for every other one (fillBenchLog), not for the
			// rest, which the start records gone.
			m.Participants = append(m.Participants, participant{ID: "new" + id, Name: "n",
				Node: api.PlacedNode{ID: node.ID, Country: node.Country, Region: node.Region}, Joined: start.UTC()})
		}
		data, _ := json.Marshal(m)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := st.CreateMeeting(ctx, id, data); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	t.Logf("stored %d meetings in %s", meetingsN, time.Since(start).Round(time.Millisecond))

	for range 2 {
		last, _ := st.AuditLastSeq(ctx)
		begin := time.Now()
		n := 0
		if err := st.ReadAudit(ctx, "", true, 1, last, 0, func(store.AuditRecord) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		t.Logf("read %d records alone in %s", n, time.Since(begin).Round(time.Millisecond))
	}
	loc, err := locate.New(locate.Config{TrustClientHints: true, DisableBuiltin: true})
	if err != nil {
		t.Fatal(err)
	}
	for run := range runs {
		rctx, rcancel := context.WithCancel(ctx)
		begin := time.Now()
		srv, err := New(rctx, Config{Store: st, NATS: nc, Locator: loc, Key: key, EnrollmentKey: testEnrollmentPub(),
			Limits: NoLimits(), Logger: quiet, OperatorToken: rigOperator})
		if err != nil {
			t.Fatal(err)
		}
		built := time.Since(begin)
		done := make(chan error, 1)
		go func() { done <- srv.Run(rctx) }()
		for !srv.ready.Load() {
			select {
			case err := <-done:
				t.Fatalf("run: %v", err)
			case <-time.After(time.Millisecond): // polling interval
			}
		}
		ready := time.Since(begin)
		for !srv.meetings.isWatched() {
			time.Sleep(time.Millisecond) // polling interval
		}
		watched := time.Since(begin)
		p := srv.startup
		t.Logf("start %d: ready after %s (New %s: audit rebuild %s; Run: registrations and meetings %s, interrupted joins %s, owner and floor %s); meetings watched after %s",
			run+1, ready.Round(time.Millisecond), built.Round(time.Millisecond), p.Rebuild.Round(time.Millisecond), p.Meetings.Round(time.Millisecond),
			p.Interrupted.Round(time.Millisecond), p.Load.Round(time.Millisecond), watched.Round(time.Millisecond))
		rcancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// fillBenchLog stores an audit log of n entries over the meetings
// bench00000.. (a meeting_created entry each, then placements), signed by
// key, with a checkpoint of all of it, as a control plane that ran for a
// while leaves it. Its times are an hour back but for the placements of
// the joins TestBenchStart stores as just made.
func fillBenchLog(t *testing.T, st *store.Store, key ed25519.PrivateKey, nodes []cluster.NodeInfo, meetingsN, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := newAuditor(key, st, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)), audit.DefaultOrigin(key.Public().(ed25519.PublicKey)), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { a.run(ctx) })
	defer wg.Wait()
	defer cancel()
	old := time.Now().Add(-time.Hour).UTC()
	// The meetings' policy as the floor makes it, so that no start
	// records a change of it.
	eff, err := policy.Combine(policy.Policy{}, policy.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	entry := func(i int) audit.Entry {
		m := i % meetingsN
		id := fmt.Sprintf("bench%05d", m)
		node := nodes[m%len(nodes)]
		if i < meetingsN {
			return audit.Entry{Kind: audit.KindMeetingCreated, Meeting: id, PolicyHash: eff.Hash(), Time: old}
		}
		e := audit.Entry{Kind: audit.KindPlacement, Meeting: id, Participant: fmt.Sprintf("p%d%s", i/meetingsN, id),
			Node: node.ID, Reason: "bench", Time: old}
		if i >= n-meetingsN && m%100 == 0 {
			e.Participant, e.Time = "new"+id, time.Now().UTC()
		}
		return e
	}
	// Every meeting's meeting_created entry first, then the placements,
	// each part by many callers at once, as joins append.
	const workers = 64
	for _, part := range [][2]int{{0, meetingsN}, {meetingsN, n}} {
		errs := make(chan error, workers)
		var fill sync.WaitGroup
		for w := range workers {
			fill.Go(func() {
				for i := part[0] + w; i < part[1]; i += workers {
					if _, err := a.append(ctx, entry(i)); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		fill.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	if _, err := a.signNow(ctx); err != nil {
		t.Fatal(err)
	}
}

// isWatched reports whether the watch has delivered every stored meeting.
func (ms *meetings) isWatched() bool {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.watched
}
