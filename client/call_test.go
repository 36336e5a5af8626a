package client_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// gate stands between calls and the control plane: it records the
// replaces of every join and can refuse or hold back joins that replace
// someone.
type gate struct {
	URL      string
	mu       sync.Mutex
	replaces []string // of every join, "" for a first join
	refused  []string // the refusal code of every join, "" for none
	refuse   bool     // answer joins with replaces 409
	hold     bool     // keep joins with replaces waiting until the client gives up
	// answer, if set, rewrites every join answer: a control plane that
	// lies about the node.
	answer func(*api.JoinResponse)
	// nodes are the URLs of the nodes join answers named, by id.
	nodes map[string]string
}

func newGate(t *testing.T, target string) *gate {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ModifyResponse = g.rewrite
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/join") {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var req api.JoinRequest
			_ = json.Unmarshal(body, &req)
			g.mu.Lock()
			g.replaces = append(g.replaces, req.Replaces)
			code := ""
			if req.Refused != nil {
				code = req.Refused.Code
			}
			g.refused = append(g.refused, code)
			refuse, hold := g.refuse, g.hold
			g.mu.Unlock()
			if req.Replaces != "" && hold {
				<-r.Context().Done()
				return
			}
			if req.Replaces != "" && refuse {
				w.WriteHeader(http.StatusConflict)
				_, _ = w.Write([]byte(`{"error":"full","code":"no_capacity_in_allowed_regions"}`))
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	g.URL = srv.URL
	return g
}

// rewrite applies g.answer to a join answer on its way to the client.
func (g *gate) rewrite(resp *http.Response) error {
	g.mu.Lock()
	f := g.answer
	g.mu.Unlock()
	if resp.StatusCode != http.StatusOK || !strings.HasSuffix(resp.Request.URL.Path, "/join") {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var jr api.JoinResponse
	if err := json.Unmarshal(body, &jr); err != nil {
		return err
	}
	g.mu.Lock()
	if g.nodes == nil {
		g.nodes = map[string]string{}
	}
	g.nodes[jr.Node.ID] = jr.Node.URL
	g.mu.Unlock()
	if f != nil {
		f(&jr)
	}
	if body, err = json.Marshal(jr); err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

func (g *gate) setAnswer(f func(*api.JoinResponse)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.answer = f
}

// nodeURL is the URL join answers gave for node id.
func (g *gate) nodeURL(id string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.nodes[id]
}

// refusals are the refusal codes of every join, "" where there was none.
func (g *gate) refusals() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.refused...)
}

func (g *gate) set(refuse, hold bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refuse, g.hold = refuse, hold
}

func (g *gate) joins() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.replaces...)
}

// legLog is a user of a call that records its legs.
type legLog struct {
	legs   chan *client.Leg
	mu     sync.Mutex
	closed map[*client.Leg]chan struct{}
	// late is set if a leg's Event hook ran after its Closed hook.
	late atomic.Bool
	// onClosed, if set, runs in a leg's Closed hook.
	onClosed func(*client.Leg)
}

func newLegLog() *legLog {
	return &legLog{legs: make(chan *client.Leg, 8), closed: map[*client.Leg]chan struct{}{}}
}

func (r *legLog) onLeg(l *client.Leg) (client.LegHooks, error) {
	done := make(chan struct{})
	r.mu.Lock()
	r.closed[l] = done
	r.mu.Unlock()
	r.legs <- l
	return client.LegHooks{
		Event: func(client.Event) {
			select {
			case <-done:
				r.late.Store(true)
			default:
			}
		},
		Closed: func() {
			if r.onClosed != nil {
				r.onClosed(l)
			}
			close(done)
		},
	}, nil
}

func (r *legLog) closedCh(l *client.Leg) chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed[l]
}

func (r *legLog) isClosed(l *client.Leg) bool {
	select {
	case <-r.closedCh(l):
		return true
	default:
		return false
	}
}

func (r *legLog) next(t *testing.T, what string) *client.Leg {
	t.Helper()
	select {
	case l := <-r.legs:
		return l
	case <-time.After(15 * time.Second):
		t.Fatalf("no leg: %s", what)
		return nil
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("timed out after %s waiting for %s", d, what)
	}
}

type callSetup struct {
	cluster *testcluster.Cluster
	gate    *gate
	meeting testcluster.Created
	log     *legLog
}

// twoNodes is a deployment with a node in DE and one in the US, a meeting,
// and a gate in front of the control plane.
func twoNodes(t *testing.T) callSetup {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:2])
	return callSetup{cluster: c, gate: newGate(t, c.URL), meeting: c.CreateMeeting(policy.Policy{}), log: newLegLog()}
}

func (s callSetup) start(t *testing.T, cfg client.CallConfig) *client.Call {
	t.Helper()
	cfg.Server, cfg.Meeting = s.gate.URL, s.meeting.ID
	cfg.Join = client.JoinRequest{Name: "caller", Country: "DE", Secret: s.meeting.JoinSecret}
	cfg.Options.LoopbackOnly = true
	if cfg.Host == nil {
		cfg.Host = client.NewHostView(s.fingerprint())
	}
	if cfg.OnLeg == nil {
		cfg.OnLeg = s.log.onLeg
	}
	call, err := client.StartCall(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start call: %v", err)
	}
	t.Cleanup(func() { _ = call.Close() })
	return call
}

// fingerprint is the host key's fingerprint, as the meeting's link names
// it.
func (s callSetup) fingerprint() string {
	return hoststmt.Fingerprint(s.cluster.Host(s.meeting.ID).Key.Public().(ed25519.PublicKey))
}

func (s callSetup) blockDE(t *testing.T) {
	t.Helper()
	if _, err := s.cluster.Host(s.meeting.ID).SetPolicy(context.Background(), policy.Policy{BlockedCountries: []string{"DE"}}); err != nil {
		t.Fatalf("policy change: %v", err)
	}
}

// A move message makes the call join again as the participant's
// replacement, on another node, and the old leg stays open until the new
// one has carried media.
func TestCallMoveMakesBeforeBreak(t *testing.T) {
	s := twoNodes(t)
	var carried, oldClosedAfterCarried atomic.Bool
	var firstLeg atomic.Pointer[client.Leg]
	s.log.onClosed = func(l *client.Leg) {
		if l == firstLeg.Load() {
			oldClosedAfterCarried.Store(carried.Load())
		}
	}
	call := s.start(t, client.CallConfig{HandoverTimeout: time.Minute})
	first := s.log.next(t, "first")
	firstLeg.Store(first)
	if first.Node().ID != "de-fra" || call.Current() != first {
		t.Fatalf("first leg on %s, current %v", first.Node().ID, call.Current() == first)
	}

	s.blockDE(t)
	second := s.log.next(t, "after the move message")
	if second.Node().ID != "us-iad" {
		t.Fatalf("moved to %s", second.Node().ID)
	}
	if j := s.gate.joins(); len(j) != 2 || j[0] != "" || j[1] != first.ID() {
		t.Fatalf("joins replaced %q, want [\"\" %q]", j, first.ID())
	}
	testcluster.WaitFor(t, 5*time.Second, "the new leg current", func() bool { return call.Current() == second })
	mv := call.Moves()
	if len(mv) != 1 || mv[0].From.ID != "de-fra" || mv[0].To.ID != "us-iad" || mv[0].Reason != "policy_change" || mv[0].At.IsZero() {
		t.Fatalf("moves %+v", mv)
	}
	if s.log.isClosed(first) {
		t.Fatal("the old leg closed before the new one carried media")
	}
	carried.Store(true)
	second.MarkCarried()
	second.MarkCarried() // more than once is fine
	waitClosed(t, s.log.closedCh(first), 10*time.Second, "the old leg to close once the new carried media")
	if !oldClosedAfterCarried.Load() {
		t.Fatal("the old leg closed before the new one was marked as carrying media")
	}
	if s.log.isClosed(second) || call.Err() != nil {
		t.Fatalf("after the move: new leg closed %v, err %v", s.log.isClosed(second), call.Err())
	}
	_ = call.Close()
	if !s.log.isClosed(second) || s.log.late.Load() {
		t.Fatalf("after Close: new leg closed %v, events after close %v", s.log.isClosed(second), s.log.late.Load())
	}
}

// A new leg that never reports media still replaces the old one after the
// handover bound.
func TestCallMoveHandoverIsBounded(t *testing.T) {
	s := twoNodes(t)
	call := s.start(t, client.CallConfig{HandoverTimeout: 200 * time.Millisecond})
	first := s.log.next(t, "first")
	s.blockDE(t)
	second := s.log.next(t, "after the move message")
	waitClosed(t, s.log.closedCh(first), 5*time.Second, "the old leg to close after the bound")
	if call.Current() != second || s.log.isClosed(second) {
		t.Fatalf("current is the new leg: %v; new leg closed: %v", call.Current() == second, s.log.isClosed(second))
	}
}

// When the node is lost, the call joins again as the participant's
// replacement and carries on from another node.
func TestCallRejoinsAfterLostNode(t *testing.T) {
	s := twoNodes(t)
	call := s.start(t, client.CallConfig{RejoinPause: 50 * time.Millisecond, HandoverTimeout: 100 * time.Millisecond})
	first := s.log.next(t, "first")
	if first.Node().ID != "de-fra" {
		t.Fatalf("first leg on %s", first.Node().ID)
	}
	s.cluster.StopNode("de-fra")
	second := s.log.next(t, "after the node was lost")
	if second.Node().ID != "us-iad" {
		t.Fatalf("rejoined on %s", second.Node().ID)
	}
	j := s.gate.joins()
	if len(j) < 2 || j[len(j)-1] != first.ID() {
		t.Fatalf("joins replaced %q; the last should replace %q", j, first.ID())
	}
	testcluster.WaitFor(t, 5*time.Second, "the new leg current", func() bool { return call.Current() == second })
	mv := call.Moves()
	if len(mv) != 1 || mv[0].From.ID != "de-fra" || mv[0].To.ID != "us-iad" || !strings.HasPrefix(mv[0].Reason, "connection lost: ") {
		t.Fatalf("moves %+v", mv)
	}
	waitClosed(t, s.log.closedCh(first), 5*time.Second, "the lost leg to be closed")
	if call.Err() != nil {
		t.Fatalf("call ended: %v", call.Err())
	}
}

// A leg whose node dies while the leg is being prepared, before the call
// has taken it as current, is not sat on: the call moves on again.
func TestCallLegLostWhilePreparedMovesOn(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:3])
	s := callSetup{cluster: c, gate: newGate(t, c.URL), meeting: c.CreateMeeting(policy.Policy{}), log: newLegLog()}
	var legs atomic.Int32
	preparing, lost := make(chan *client.Leg), make(chan struct{})
	onLeg := func(l *client.Leg) (client.LegHooks, error) {
		if legs.Add(1) == 2 {
			preparing <- l // the test kills its node meanwhile
			<-lost
		}
		return s.log.onLeg(l)
	}
	call := s.start(t, client.CallConfig{OnLeg: onLeg, RejoinPause: 50 * time.Millisecond, HandoverTimeout: 100 * time.Millisecond})
	first := s.log.next(t, "first")
	s.cluster.StopNode(first.Node().ID)
	l := <-preparing
	s.cluster.StopNode(l.Node().ID)
	testcluster.WaitFor(t, 10*time.Second, "the new leg's session to end", func() bool { return l.Session().Err() != nil })
	close(lost)
	second := s.log.next(t, "after the first node was lost")
	third := s.log.next(t, "after the second node was lost while its leg was prepared")
	if third.Node().ID == first.Node().ID || third.Node().ID == second.Node().ID {
		t.Fatalf("legs on %s, %s, %s", first.Node().ID, second.Node().ID, third.Node().ID)
	}
	testcluster.WaitFor(t, 5*time.Second, "the third leg current", func() bool { return call.Current() == third })
	if call.Err() != nil {
		t.Fatalf("call ended: %v", call.Err())
	}
}

// A join refused with a 4xx ends the call with the control plane's
// *APIError, without retrying; a refused first join is returned by
// StartCall.
func TestCallEndsOnRefusal(t *testing.T) {
	s := twoNodes(t)
	call := s.start(t, client.CallConfig{RejoinPause: 10 * time.Millisecond})
	first := s.log.next(t, "first")
	s.gate.set(true, false)
	s.blockDE(t)
	waitClosed(t, call.Done(), 10*time.Second, "the call to end")
	var ae *client.APIError
	if err := call.Err(); !errors.As(err, &ae) || ae.Status != http.StatusConflict || ae.Code != "no_capacity_in_allowed_regions" {
		t.Fatalf("call ended with %v", err)
	}
	if j := s.gate.joins(); len(j) != 2 || j[1] != first.ID() {
		t.Fatalf("joins replaced %q: a 4xx is not retried", j)
	}
	if call.Current() != first {
		t.Fatal("the current leg changed")
	}

	blocked := s.cluster.CreateMeeting(policy.Policy{BlockedCountries: []string{"DE", "US"}})
	_, err := client.StartCall(context.Background(), client.CallConfig{
		Server: s.gate.URL, Meeting: blocked.ID, Join: client.JoinRequest{Country: "DE", Secret: blocked.JoinSecret}, Options: client.Options{LoopbackOnly: true},
		Host: client.NewHostView(callSetup{cluster: s.cluster, meeting: blocked}.fingerprint()),
		OnLeg: func(*client.Leg) (client.LegHooks, error) {
			t.Error("a refused join made a leg")
			return client.LegHooks{}, nil
		},
	})
	if !errors.As(err, &ae) || ae.Code != "no_node_in_allowed_regions" {
		t.Fatalf("refused first join: %v", err)
	}
}

// Close ends a move under way and returns only once every leg is closed
// and every goroutine the call started has ended.
func TestCallCloseWaitsForEverything(t *testing.T) {
	s := twoNodes(t)
	s.gate.set(false, true)
	call := s.start(t, client.CallConfig{RejoinTimeout: time.Minute})
	first := s.log.next(t, "first")
	s.blockDE(t)
	testcluster.WaitFor(t, 10*time.Second, "a join replacing the first leg", func() bool {
		j := s.gate.joins()
		return len(j) == 2 && j[1] == first.ID()
	})
	start := time.Now()
	_ = call.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %s with a move under way", d)
	}
	if !s.log.isClosed(first) || s.log.late.Load() {
		t.Fatalf("after Close: leg closed %v, events after close %v", s.log.isClosed(first), s.log.late.Load())
	}
	select {
	case <-call.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	if call.Err() != nil {
		t.Fatalf("Err after Close: %v", call.Err())
	}
	buf := make([]byte, 1<<20)
	if st := string(buf[:runtime.Stack(buf, true)]); strings.Contains(st, "client.(*Call)") {
		t.Fatalf("a goroutine of the call outlived Close:\n%s", st)
	}
	_ = call.Close() // again: a no-op
}
