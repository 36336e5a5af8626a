package control

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/geo"
	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/store"
)

// cutEnv is one JetStream store and fake nodes outliving the control
// planes started on it: a control plane made to die, then the next one.
type cutEnv struct {
	t        *testing.T
	emb      *bus.Embedded
	key      ed25519.PrivateKey
	tokenTTL time.Duration
	nodes    []cluster.NodeInfo
}

// cutPlane is one control plane of a cutEnv, with a NATS connection of
// its own: closing it is that control plane's crash, not the next one's.
type cutPlane struct {
	srv *Server
	nc  *nats.Conn
	api *apiclient.Client
	url string
	// halt stops Run and waits for it; stop also closes the HTTP server.
	halt, stop func()
}

// errDied is what a join cut by a test hook answers: the process is gone.
var errDied = errors.New("the control plane died")

func newCutEnv(t *testing.T, tokenTTL time.Duration, nodes ...string) *cutEnv {
	t.Helper()
	emb, err := bus.Embed(bus.EmbedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	_, key, _ := ed25519.GenerateKey(nil)
	e := &cutEnv{t: t, emb: emb, key: key, tokenTTL: tokenTTL}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, spec := range nodes {
		id, country := spec[:len(spec)-3], spec[len(spec)-2:]
		where, _ := geo.CountryLocation(country)
		info := enrolled(cluster.NodeInfo{ID: id, Country: country, Lat: where.Lat, Lon: where.Lon, URL: "ws://" + id})
		e.nodes = append(e.nodes, info)
		nc, err := emb.ConnectNode(id)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		wg.Go(func() {
			tick := time.NewTicker(rigTiming.HeartbeatInterval)
			defer tick.Stop()
			for {
				data, _ := json.Marshal(cluster.Heartbeat{Node: info, Sent: time.Now()})
				_ = nc.Publish(cluster.SubjectHeartbeat(id), data)
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		})
	}
	return e
}

// start builds and runs a control plane on the env's store, and waits
// until it is ready and sees every node healthy.
func (e *cutEnv) start() *cutPlane {
	e.t.Helper()
	nc, err := e.emb.ConnectControl("control")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, nc)
	if err != nil {
		e.t.Fatal(err)
	}
	loc, err := locate.New(locate.Config{TrustClientHints: true, DisableBuiltin: true})
	if err != nil {
		e.t.Fatal(err)
	}
	srv, err := New(ctx, Config{Store: st, NATS: nc, Locator: loc, Key: e.key, EnrollmentKey: testEnrollmentPub(), TrustClientLocation: true,
		Limits: NoLimits(), TokenTTL: e.tokenTTL, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Timing: rigTiming, OperatorToken: rigOperator})
	if err != nil {
		e.t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	var halted, stopped sync.Once
	p := &cutPlane{srv: srv, nc: nc, url: hs.URL, api: apiclient.New(hs.URL, hs.Client()).WithBearer(rigOperator)}
	p.halt = func() {
		halted.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("run: %v", err)
			}
		})
	}
	p.stop = func() {
		stopped.Do(func() {
			p.halt()
			hs.Close()
		})
	}
	e.t.Cleanup(p.stop)
	waitUntil(e.t, "control plane ready with every node healthy", func() bool {
		select {
		case err := <-done:
			e.t.Fatalf("control plane stopped before it was ready: %v", err)
		default:
		}
		return srv.ready.Load() && srv.owner.live().healthy == len(e.nodes)
	})
	return p
}

// dieAt makes the control plane's NATS connection close, and the join go
// no further, at the nth call of the hook cut selects.
func (p *cutPlane) dieAt(cut *func() error, nth int64) {
	var calls atomic.Int64
	*cut = func() error {
		switch n := calls.Add(1); {
		case n == nth:
			p.nc.Close()
			return errDied
		case n > nth:
			return errDied
		}
		return nil
	}
}

// waitUntil polls cond until it holds; the deadline only bounds a failing
// test.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

func (p *cutPlane) create(t *testing.T) api.CreatedMeeting {
	t.Helper()
	m, _, err := p.api.CreateHosted(context.Background(), api.CreateRequest{Policy: policy.Policy{}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (p *cutPlane) join(m api.CreatedMeeting, country string) (api.JoinResponse, error) {
	return p.api.Join(context.Background(), m.ID, api.JoinRequest{Location: api.Hint{Country: country}, Secret: m.JoinSecret})
}

func (p *cutPlane) meeting(t *testing.T, id string) *meeting {
	t.Helper()
	m, _, err := p.srv.meetings.get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// logged is, by participant, the kinds of the meeting's entries naming it.
func (p *cutPlane) logged(t *testing.T, id string) map[string][]string {
	t.Helper()
	es, err := p.srv.audit.entries(context.Background(), id, false)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, e := range es {
		if e.Participant != "" {
			out[e.Participant] = append(out[e.Participant], e.Kind)
		}
	}
	return out
}

// verifyLog checks the whole exported log as `oakmeet audit verify` does.
func (p *cutPlane) verifyLog(t *testing.T) {
	t.Helper()
	var buf bytes.Buffer
	if err := p.api.AuditExport(context.Background(), "", &buf); err != nil {
		t.Fatal(err)
	}
	v, err := audit.NewVerifier(p.srv.audit.vkey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.VerifyExport(&buf, audit.VerifyOptions{Log: v}); err != nil {
		t.Fatalf("the log does not verify: %v", err)
	}
}

// assigned is how many participants the owner counts on every node.
func (p *cutPlane) assigned() int {
	n := 0
	for _, c := range p.srv.owner.live().assigned {
		n += c
	}
	return n
}

// joinAgain checks that a new join to the meeting is placed and logged.
func (p *cutPlane) joinAgain(t *testing.T, m api.CreatedMeeting) {
	t.Helper()
	jr, err := p.join(m, "DE")
	if err != nil {
		t.Fatalf("join after the restart: %v", err)
	}
	if got := p.logged(t, m.ID)[jr.ParticipantID]; len(got) != 1 || got[0] != audit.KindPlacement {
		t.Fatalf("the new join's entries %q, want one placement", got)
	}
}

func TestJoinCutBeforeItsPlacementIsDroppedAtStart(t *testing.T) {
	env := newCutEnv(t, 0, "n1:DE")
	a := env.start()
	m := a.create(t)
	a.dieAt(&a.srv.audit.cut.stored, 1)
	if _, err := a.join(m, "DE"); err == nil {
		t.Fatal("a join cut before its placement was answered")
	}
	a.stop()

	b := env.start()
	stored := b.meeting(t, m.ID).Participants
	if len(stored) != 1 {
		t.Fatalf("participants %+v, want the one stored join", stored)
	}
	p := stored[0]
	if p.Left == nil || p.LeftReason != api.ReasonJoinInterrupted {
		t.Fatalf("the cut join at start: left %v reason %q, want recorded gone %q", p.Left, p.LeftReason, api.ReasonJoinInterrupted)
	}
	if n := b.assigned(); n != 0 {
		t.Fatalf("%d participants counted on the node, want none", n)
	}
	if held, _ := b.srv.owner.seatsHeld(context.Background(), []string{p.ID}); held[p.ID] {
		t.Fatal("the cut join holds a seat")
	}
	if got := b.logged(t, m.ID)[p.ID]; len(got) != 1 || got[0] != kindJoinInterrupted {
		t.Fatalf("the cut join's entries %q, want one %s and no placement", got, kindJoinInterrupted)
	}
	b.verifyLog(t)
	b.joinAgain(t, m)

	// A second start finds nothing more to do.
	b.stop()
	c := env.start()
	if got := c.logged(t, m.ID)[p.ID]; len(got) != 1 {
		t.Fatalf("after another start the cut join's entries are %q", got)
	}
	c.verifyLog(t)
}

func TestJoinCutBeforeItsAnswerKeepsItsSeatUntilTheHold(t *testing.T) {
	env := newCutEnv(t, time.Second, "n1:DE")
	a := env.start()
	m := a.create(t)
	a.dieAt(&a.srv.audit.cut.logged, 1)
	if _, err := a.join(m, "DE"); err == nil {
		t.Fatal("a join cut before its answer was answered")
	}
	a.stop()

	b := env.start()
	stored := b.meeting(t, m.ID).Participants
	if len(stored) != 1 || stored[0].Left != nil {
		t.Fatalf("participants %+v, want the one logged join, not gone", stored)
	}
	pid := stored[0].ID
	if got := b.logged(t, m.ID)[pid]; len(got) != 1 || got[0] != audit.KindPlacement {
		t.Fatalf("the logged join's entries %q, want its placement only", got)
	}
	if n := b.assigned(); n != 1 {
		t.Fatalf("%d participants counted on the node, want the logged join's seat", n)
	}
	b.verifyLog(t)
	// The token it was never handed expires; the seat's hold then ends it.
	waitUntil(t, "the unanswered join recorded never connected", func() bool {
		p := b.meeting(t, m.ID).participant(pid)
		return p.Left != nil && p.LeftReason == reasonNeverConnected && b.assigned() == 0
	})
	b.joinAgain(t, m)
	b.verifyLog(t)
}

func TestRejoinCutBeforeItsPlacementLeavesTheOldParticipant(t *testing.T) {
	env := newCutEnv(t, 0, "n1:DE", "n2:FR")
	a := env.start()
	m := a.create(t)
	first, err := a.join(m, "DE")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(cluster.Event{Kind: cluster.EventConnected, Node: first.Node.ID, Meeting: m.ID, Participant: first.ParticipantID, Time: time.Now()})
	nc, err := env.emb.ConnectNode(first.Node.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish(cluster.SubjectEvents(first.Node.ID), data); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "first participant connected", func() bool { return a.meeting(t, m.ID).participant(first.ParticipantID).Connected != nil })
	a.dieAt(&a.srv.audit.cut.stored, 1)
	if _, err := a.api.Join(context.Background(), m.ID, api.JoinRequest{Location: api.Hint{Country: "DE"}, Secret: m.JoinSecret,
		Replaces: first.ParticipantID, RejoinSecret: first.RejoinSecret}); err == nil {
		t.Fatal("a rejoin cut before its placement was answered")
	}
	a.stop()

	b := env.start()
	rec := b.meeting(t, m.ID)
	if len(rec.Participants) != 2 {
		t.Fatalf("participants %+v, want the first and its cut replacement", rec.Participants)
	}
	for _, p := range rec.Participants {
		switch {
		case p.ID == first.ParticipantID && p.Left != nil:
			t.Fatalf("the participant a cut rejoin would have replaced is gone: %+v", p)
		case p.ID != first.ParticipantID && (p.Left == nil || p.LeftReason != api.ReasonJoinInterrupted):
			t.Fatalf("the cut rejoin %+v, want recorded gone %q", p, api.ReasonJoinInterrupted)
		}
	}
	if n := b.assigned(); n != 1 {
		t.Fatalf("%d participants counted on the nodes, want the first only", n)
	}
	b.verifyLog(t)
	// It may still be replaced with its rejoin secret.
	if _, err := b.api.Join(context.Background(), m.ID, api.JoinRequest{Location: api.Hint{Country: "DE"}, Secret: m.JoinSecret,
		Replaces: first.ParticipantID, RejoinSecret: first.RejoinSecret}); err != nil {
		t.Fatalf("rejoin after the restart: %v", err)
	}
}

func TestBurstOfJoinsCutLeavesNothingHalfDone(t *testing.T) {
	env := newCutEnv(t, time.Second, "n1:DE", "n2:FR")
	a := env.start()
	m := a.create(t)
	const joins, nth = 24, 6
	a.dieAt(&a.srv.audit.cut.stored, nth)
	var (
		mu       sync.Mutex
		answered = map[string]bool{}
		failed   int
		wg       sync.WaitGroup
	)
	for i := range joins {
		wg.Go(func() {
			jr, err := a.join(m, []string{"DE", "FR"}[i%2])
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				return
			}
			answered[jr.ParticipantID] = true
		})
	}
	wg.Wait()
	a.stop()
	if failed == 0 {
		t.Fatal("every join of the burst was answered: the control plane did not die")
	}

	b := env.start()
	rec := b.meeting(t, m.ID)
	logged := b.logged(t, m.ID)
	interrupted, unanswered, active := 0, 0, 0
	for _, p := range rec.Participants {
		kinds := logged[p.ID]
		placed := len(kinds) > 0 && kinds[0] == audit.KindPlacement
		switch {
		case answered[p.ID]:
			if !placed || p.Left != nil {
				t.Errorf("answered join %s: entries %q, left %v: want logged placed and there", p.ID, kinds, p.Left)
			}
			active++
		case placed:
			// Logged but its answer lost with the process: it keeps its
			// seat until the hold.
			if p.Left != nil {
				t.Errorf("logged unanswered join %s recorded gone (%s) at start", p.ID, p.LeftReason)
			}
			unanswered++
			active++
		default:
			if p.Left == nil || p.LeftReason != api.ReasonJoinInterrupted || len(kinds) != 1 || kinds[0] != kindJoinInterrupted {
				t.Errorf("stored unlogged join %s: left %v reason %q entries %q, want recorded gone %q and logged dropped", p.ID, p.Left, p.LeftReason, kinds, api.ReasonJoinInterrupted)
			}
			interrupted++
		}
	}
	for pid := range answered {
		if rec.participant(pid) == nil {
			t.Errorf("answered join %s is not stored", pid)
		}
	}
	if interrupted == 0 {
		t.Fatalf("no stored join was found interrupted (participants %d, answered %d)", len(rec.Participants), len(answered))
	}
	if n := b.assigned(); n != active {
		t.Fatalf("%d participants counted on the nodes, want the %d answered or logged", n, active)
	}
	t.Logf("%d joins: %d answered, %d failed; stored %d: %d logged unanswered, %d interrupted", joins, len(answered), failed, len(rec.Participants), unanswered, interrupted)
	b.verifyLog(t)
	b.joinAgain(t, m)
	// Nobody connects: every seat, answered or not, ends at its hold, and
	// none stored unlogged ever held one.
	waitUntil(t, "every seat released", func() bool { return b.assigned() == 0 })
	b.verifyLog(t)
}

func TestJoinWhoseLogFailsIsDroppedAtOnce(t *testing.T) {
	env := newCutEnv(t, 0, "n1:DE")
	a := env.start()
	m := a.create(t)
	// Someone with write access to JetStream but not the key puts a
	// record in the log between the join's store and its append: the
	// append cannot go after it, and the join fails in a living process.
	nc, err := env.emb.ConnectControl("forger")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	forger, err := store.Open(context.Background(), nc)
	if err != nil {
		t.Fatal(err)
	}
	a.srv.audit.cut.stored = func() error {
		ctx := context.Background()
		last, err := forger.AuditLastSeq(ctx)
		if err == nil {
			_, err = forger.AppendAudit(ctx, m.ID, []byte(`{"forged":true}`), last)
		}
		return err
	}
	if _, err := a.join(m, "DE"); err == nil {
		t.Fatal("a join whose placement could not be logged was answered")
	}
	stored := a.meeting(t, m.ID).Participants
	if len(stored) != 1 || stored[0].Left == nil || stored[0].LeftReason != api.ReasonJoinInterrupted {
		t.Fatalf("participants %+v, want the failed join recorded gone %q", stored, api.ReasonJoinInterrupted)
	}
	if n := a.assigned(); n != 0 {
		t.Fatalf("%d participants counted on the node, want none", n)
	}
	if got := a.logged(t, m.ID)[stored[0].ID]; len(got) != 0 {
		t.Fatalf("the failed join's entries %q in a log that took none", got)
	}
}

func TestJoinOfAStoppingControlPlaneIsDroppedAtOnce(t *testing.T) {
	env := newCutEnv(t, 0, "n1:DE")
	a := env.start()
	m := a.create(t)
	// The control plane stops (a leader stepping down) once the join is
	// logged: its owner no longer takes the seat, so it is not answered.
	a.srv.audit.cut.logged = func() error { a.halt(); return nil }
	if _, err := a.join(m, "DE"); err == nil {
		t.Fatal("a join of a stopped control plane was answered")
	}
	stored := a.meeting(t, m.ID).Participants
	if len(stored) != 1 || stored[0].Left == nil || stored[0].LeftReason != api.ReasonJoinInterrupted {
		t.Fatalf("participants %+v, want the unanswered join recorded gone %q", stored, api.ReasonJoinInterrupted)
	}
	a.stop()

	b := env.start()
	if n := b.assigned(); n != 0 {
		t.Fatalf("%d participants counted on the node, want none", n)
	}
	b.verifyLog(t)
	b.joinAgain(t, m)
}
