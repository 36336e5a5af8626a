package control

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/store"
)

// Measurements of enforcement, run by hand (docs/BENCHMARKS.md):
//
//	OAKMEET_BENCH_REST=30s go test -count=1 -run TestBenchEnforcementAtRest -v ./control/
//	OAKMEET_BENCH_LATENCY=200 go test -count=1 -run TestBenchHeartbeatToDecision -v ./control/
//	OAKMEET_BENCH_SILENT=30 go test -count=1 -run TestBenchSilentNodeToDecision -v ./control/
//
// Both use the default timing. Without the variables they are skipped.

// cpuTime is the process's user and system CPU time so far.
func cpuTime(t testing.TB) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchNodes are the nodes of a measurement: enrolled, each with its own
// NATS identity, reporting what the test sets.
type benchNodes struct {
	mu       sync.Mutex
	infos    []cluster.NodeInfo
	conns    map[string]*nats.Conn
	draining map[string]bool
	silent   map[string]bool
	lastBeat map[string]time.Time
	bytes    map[string]map[string]uint64 // by node, by meeting
	load     map[string]int
}

func newBenchNodes(t testing.TB, emb *bus.Embedded, n int) *benchNodes {
	t.Helper()
	b := &benchNodes{conns: map[string]*nats.Conn{}, draining: map[string]bool{}, silent: map[string]bool{}, lastBeat: map[string]time.Time{}, bytes: map[string]map[string]uint64{}, load: map[string]int{}}
	for i := range n {
		id := fmt.Sprintf("de-%02d", i)
		info := enrolled(cluster.NodeInfo{ID: id, Country: "DE", Region: "eu-central-1", URL: "ws://" + id, MaxParticipants: 100000})
		nc, err := emb.ConnectNode(id)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		b.infos = append(b.infos, info)
		b.conns[id] = nc
		b.bytes[id] = map[string]uint64{}
	}
	return b
}

// beat publishes one heartbeat of node i now.
func (b *benchNodes) beat(i int) {
	b.mu.Lock()
	info := b.infos[i]
	if b.silent[info.ID] {
		b.mu.Unlock()
		return
	}
	b.lastBeat[info.ID] = time.Now()
	hb := cluster.Heartbeat{Node: info, Draining: b.draining[info.ID], MeetingBytes: b.bytes[info.ID],
		Load: cluster.Load{Participants: b.load[info.ID]}, Sent: time.Now()}
	data, _ := json.Marshal(hb)
	b.mu.Unlock()
	_ = b.conns[info.ID].Publish(cluster.SubjectHeartbeat(info.ID), data)
	_ = b.conns[info.ID].Flush()
}

// run publishes every node's heartbeat every interval until ctx ends.
func (b *benchNodes) run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		for i := range b.infos {
			b.beat(i)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func benchServer(t testing.TB, st *store.Store, nc *nats.Conn) *Server {
	t.Helper()
	loc, err := locate.New(locate.Config{TrustClientHints: true, DisableBuiltin: true})
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519Key()
	srv, err := New(context.Background(), Config{Store: st, NATS: nc, Locator: loc, Key: key, EnrollmentKey: testEnrollmentPub(), TrustClientLocation: true,
		Limits: NoLimits(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), OperatorToken: rigOperator})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func benchEnv(t testing.TB) (*bus.Embedded, *nats.Conn, *store.Store) {
	t.Helper()
	emb, err := bus.Embed(bus.EmbedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	nc, err := emb.ConnectControl("control")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	st, err := store.Open(context.Background(), nc)
	if err != nil {
		t.Fatal(err)
	}
	return emb, nc, st
}

// The CPU a control plane spends at rest on 10,000 live meetings (two
// connected participants each, on ten nodes that report every second with
// unchanged counts): the process's CPU over the window with the control
// plane running, less the same window before it started (the embedded NATS
// server and the heartbeats alone).
func TestBenchEnforcementAtRest(t *testing.T) {
	window, err := time.ParseDuration(os.Getenv("OAKMEET_BENCH_REST"))
	if err != nil {
		t.Skip("set OAKMEET_BENCH_REST to a window (30s) to measure")
	}
	const meetingsN, nodesN = 10000, 10
	emb, nc, st := benchEnv(t)
	nodes := newBenchNodes(t, emb, nodesN)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	start := time.Now()
	ids := make([]string, meetingsN)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range meetingsN {
		node := nodes.infos[i%nodesN]
		id := fmt.Sprintf("bench%05d", i)
		ids[i] = id
		nodes.bytes[node.ID][id] = uint64(1000 + i)
		nodes.load[node.ID] += 2
		at := start.Add(-time.Minute).UTC()
		m := &meeting{ID: id, Title: "bench", Created: at}
		for p := range 2 {
			m.Participants = append(m.Participants, participant{ID: fmt.Sprintf("p%d%s", p, id), Name: "p",
				Node: api.PlacedNode{ID: node.ID, Country: node.Country, Region: node.Region}, Joined: at, Connected: &at})
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
	go nodes.run(ctx, cluster.DefaultTiming().HeartbeatInterval)

	measure := func() time.Duration {
		c0, w0 := cpuTime(t), time.Now()
		time.Sleep(window) // the measurement window itself
		return time.Duration(float64(cpuTime(t)-c0) / float64(time.Since(w0)) * float64(time.Second))
	}
	base := measure()
	t.Logf("without a control plane: %.2f%% of a core", 100*base.Seconds())

	srv := benchServer(t, st, nc)
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	for !srv.ready.Load() {
		select {
		case err := <-done:
			t.Fatalf("run: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Logf("control plane ready after %s", time.Since(start).Round(time.Millisecond))
	// Taking the meetings in (each planned once) is start-up work, not
	// rest: the window starts once it has settled.
	settle := cluster.DefaultTiming().SweepInterval / 2
	time.Sleep(settle)
	with := measure()
	t.Logf("with the control plane: %.2f%% of a core; enforcement at rest: %.2f%% of a core (window %s, %d meetings, %d nodes, GOMAXPROCS from %d cores)",
		100*with.Seconds(), 100*(with-base).Seconds(), window, meetingsN, nodesN, numCPU())
	cancel()
	<-done
}

// From the heartbeat in which a node first reports draining to the move
// command the control plane sends for a participant there: median and 99th
// percentile over many runs, default timing.
func TestBenchHeartbeatToDecision(t *testing.T) {
	var runs int
	if _, err := fmt.Sscan(os.Getenv("OAKMEET_BENCH_LATENCY"), &runs); err != nil || runs <= 0 {
		t.Skip("set OAKMEET_BENCH_LATENCY to a number of runs (200) to measure")
	}
	emb, nc, st := benchEnv(t)
	nodes := newBenchNodes(t, emb, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	moves := make(chan time.Time, 16)
	var want sync.Map // participant id → struct{}
	for _, info := range nodes.infos {
		if _, err := nodes.conns[info.ID].Subscribe(cluster.SubjectCommand(info.ID), func(m *nats.Msg) {
			at := time.Now()
			var c cluster.Command
			if json.Unmarshal(m.Data, &c) == nil && c.Kind == cluster.CommandMove {
				if _, ok := want.LoadAndDelete(c.Participant); ok {
					moves <- at
				}
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	go nodes.run(ctx, cluster.DefaultTiming().HeartbeatInterval)
	srv := benchServer(t, st, nc)
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	hs := newBenchHTTP(t, srv)
	cl := apiclient.New(hs, nil).WithBearer(rigOperator)
	waitUntil := func(what string, cond func() bool) {
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(2 * time.Millisecond) // polling interval
		}
	}
	waitUntil("both nodes healthy", func() bool { h, err := cl.Health(ctx); return err == nil && h.HealthyNodes == 2 })
	var lat []time.Duration
	for range runs {
		created, _, err := cl.CreateHosted(ctx, api.CreateRequest{})
		if err != nil {
			t.Fatal(err)
		}
		jr, err := cl.Join(ctx, created.ID, api.JoinRequest{Location: api.Hint{Country: "DE"}, Secret: created.JoinSecret})
		if err != nil {
			t.Fatal(err)
		}
		ev, _ := json.Marshal(cluster.Event{Kind: cluster.EventConnected, Node: jr.Node.ID, Meeting: created.ID, Participant: jr.ParticipantID, Time: time.Now()})
		if err := nodes.conns[jr.Node.ID].Publish(cluster.SubjectEvents(jr.Node.ID), ev); err != nil {
			t.Fatal(err)
		}
		waitUntil("the connection recorded", func() bool {
			m, _, err := srv.meetings.get(ctx, created.ID)
			return err == nil && m.participant(jr.ParticipantID).Connected != nil
		})
		i := slices.IndexFunc(nodes.infos, func(n cluster.NodeInfo) bool { return n.ID == jr.Node.ID })
		want.Store(jr.ParticipantID, struct{}{})
		nodes.mu.Lock()
		nodes.draining[jr.Node.ID] = true
		nodes.mu.Unlock()
		sent := time.Now()
		nodes.beat(i)
		select {
		case at := <-moves:
			lat = append(lat, at.Sub(sent))
		case <-time.After(30 * time.Second):
			t.Fatal("no move command")
		}
		nodes.mu.Lock()
		nodes.draining[jr.Node.ID] = false
		nodes.mu.Unlock()
		nodes.beat(i)
		waitUntil("the node back", func() bool {
			ns, err := cl.Nodes(ctx)
			return err == nil && !slices.ContainsFunc(ns, func(n api.Node) bool { return n.Draining })
		})
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("heartbeat (draining) to move command over %d runs: median %s, p90 %s, p99 %s, max %s", len(lat),
		lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*9/10].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	cancel()
	<-done
}

func ed25519Key() (ed25519.PublicKey, ed25519.PrivateKey, error) { return ed25519.GenerateKey(nil) }

func numCPU() int { return runtime.NumCPU() }

// newBenchHTTP serves srv's API on loopback and returns its URL.
func newBenchHTTP(t testing.TB, srv *Server) string {
	t.Helper()
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs.URL
}

// From the moment a node's heartbeat is overdue (its last one plus
// HeartbeatTimeout) to the departure recorded for a participant there (the
// time the plan stamps on it): median and 99th percentile, default timing.
func TestBenchSilentNodeToDecision(t *testing.T) {
	var runs int
	if _, err := fmt.Sscan(os.Getenv("OAKMEET_BENCH_SILENT"), &runs); err != nil || runs <= 0 {
		t.Skip("set OAKMEET_BENCH_SILENT to a number of runs (30) to measure")
	}
	emb, nc, st := benchEnv(t)
	nodes := newBenchNodes(t, emb, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go nodes.run(ctx, cluster.DefaultTiming().HeartbeatInterval)
	srv := benchServer(t, st, nc)
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	cl := apiclient.New(newBenchHTTP(t, srv), nil).WithBearer(rigOperator)
	waitUntil := func(what string, cond func() bool) {
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(2 * time.Millisecond) // polling interval
		}
	}
	healthy := func() bool { h, err := cl.Health(ctx); return err == nil && h.HealthyNodes == 2 }
	waitUntil("both nodes healthy", healthy)
	timeout := cluster.DefaultTiming().HeartbeatTimeout
	// For 2 × HeartbeatTimeout after its start a control plane takes no
	// node for gone (plan's Started): the runs begin after.
	time.Sleep(2 * timeout)
	var lat []time.Duration
	for range runs {
		created, _, err := cl.CreateHosted(ctx, api.CreateRequest{})
		if err != nil {
			t.Fatal(err)
		}
		jr, err := cl.Join(ctx, created.ID, api.JoinRequest{Location: api.Hint{Country: "DE"}, Secret: created.JoinSecret})
		if err != nil {
			t.Fatal(err)
		}
		ev, _ := json.Marshal(cluster.Event{Kind: cluster.EventConnected, Node: jr.Node.ID, Meeting: created.ID, Participant: jr.ParticipantID, Time: time.Now()})
		if err := nodes.conns[jr.Node.ID].Publish(cluster.SubjectEvents(jr.Node.ID), ev); err != nil {
			t.Fatal(err)
		}
		waitUntil("the connection recorded", func() bool {
			m, _, err := srv.meetings.get(ctx, created.ID)
			return err == nil && m.participant(jr.ParticipantID).Connected != nil
		})
		i := slices.IndexFunc(nodes.infos, func(n cluster.NodeInfo) bool { return n.ID == jr.Node.ID })
		nodes.beat(i)
		nodes.mu.Lock()
		nodes.silent[jr.Node.ID] = true
		overdue := nodes.lastBeat[jr.Node.ID].Add(timeout)
		nodes.mu.Unlock()
		var left time.Time
		waitUntil("the departure recorded", func() bool {
			m, _, err := srv.meetings.get(ctx, created.ID)
			if err != nil {
				return false
			}
			if p := m.participant(jr.ParticipantID); p.Left != nil {
				left = *p.Left
				return true
			}
			return false
		})
		lat = append(lat, left.Sub(overdue))
		nodes.mu.Lock()
		nodes.silent[jr.Node.ID] = false
		nodes.mu.Unlock()
		nodes.beat(i)
		waitUntil("the node back", healthy)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("heartbeat overdue to departure recorded over %d runs: median %s, p90 %s, p99 %s, max %s", len(lat),
		lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*9/10].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	cancel()
	<-done
}
