package client_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/adversary"
	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// withholder is a control plane that hides its log: before the real one
// (through an adversary front, for the join answers), it can refuse every
// proof and entries request, or serve one checkpoint forever.
type withholder struct {
	URL   string
	front *adversary.Front

	mu       sync.Mutex
	withhold bool
	frozen   []byte
}

func newWithholder(t *testing.T, upstream string) *withholder {
	t.Helper()
	front, err := adversary.StartFront(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = front.Close() })
	u, err := url.Parse(front.URL)
	if err != nil {
		t.Fatal(err)
	}
	h := &withholder{front: front}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		withhold, frozen := h.withhold, h.frozen
		h.mu.Unlock()
		switch p := r.URL.Path; {
		case withhold && (p == api.PathAuditConsistency || p == api.PathAuditProof || p == api.PathAuditEntries):
			http.Error(w, `{"code":"internal","message":"try later"}`, http.StatusInternalServerError)
		case frozen != nil && p == api.PathAuditCheckpoint:
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write(frozen)
		default:
			rp.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	h.URL = srv.URL
	return h
}

func (h *withholder) setWithhold(on bool) {
	h.mu.Lock()
	h.withhold = on
	h.mu.Unlock()
}

// freeze serves the control plane's checkpoint of now from now on, in
// join answers too; unfreeze lets the real ones through again.
func (h *withholder) freeze(t *testing.T) {
	t.Helper()
	resp, err := http.Get(h.URL + api.PathAuditCheckpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	cp, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("checkpoint: %d %v", resp.StatusCode, err)
	}
	h.mu.Lock()
	h.frozen = cp
	h.mu.Unlock()
	h.front.SetJoinEdit(func(_ string, jr *api.JoinResponse) { jr.Audit.Checkpoint = string(cp) })
}

func (h *withholder) unfreeze() {
	h.front.SetJoinEdit(nil)
	h.mu.Lock()
	h.frozen = nil
	h.mu.Unlock()
}

// stateLog records the watcher's state changes.
type stateLog struct {
	mu     sync.Mutex
	states []client.AuditStatus
}

func (l *stateLog) on(s client.AuditStatus) {
	l.mu.Lock()
	l.states = append(l.states, s)
	l.mu.Unlock()
}

func (l *stateLog) count(st client.AuditState) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.states {
		if s.State == st {
			n++
		}
	}
	return n
}

func staleSetup(t *testing.T) (callSetup, *withholder) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	h := newWithholder(t, c.URL)
	return callSetup{cluster: c, gate: newGate(t, h.URL), meeting: c.CreateMeeting(policy.Policy{}), log: newLegLog()}, h
}

func waitAuditState(t *testing.T, w *client.AuditWatcher, want client.AuditState) client.AuditStatus {
	t.Helper()
	testcluster.WaitFor(t, 10*time.Second, "the log watcher "+string(want), func() bool { return w.Status().State == want })
	return w.Status()
}

// Proofs refused while the log grows: stale after a few polls, naming
// the proof it could not get, and consistent again once they are given.
func TestAuditStaleWhenProofsWithheld(t *testing.T) {
	s, h := staleSetup(t)
	var states stateLog
	call := s.start(t, client.CallConfig{Audit: client.AuditOptions{Every: 20 * time.Millisecond, StaleAfter: 3, StaleBound: time.Minute, OnState: states.on}})
	w := call.Audit()
	testcluster.WaitFor(t, 10*time.Second, "the placement proved", func() bool {
		st := w.Status()
		return st.State == client.AuditConsistent && st.EntriesProved >= 1 && st.EntriesPending == 0
	})
	h.setWithhold(true)
	s.cluster.CreateMeeting(policy.Policy{}) // the log grows: a proof is needed
	st := waitAuditState(t, w, client.AuditStale)
	if !strings.Contains(st.Reason, "polls in a row") || !strings.Contains(st.Reason, "no consistency proof") {
		t.Fatalf("stale status %+v", st)
	}
	t.Logf("stale status: %+v", st)
	select {
	case <-w.Alarm():
		t.Fatalf("withheld proofs raised an alarm: %+v", w.Status())
	default:
	}
	h.setWithhold(false)
	st = waitAuditState(t, w, client.AuditConsistent)
	if st.Reason != "" {
		t.Fatalf("consistent again with reason %q", st.Reason)
	}
	if n := states.count(client.AuditStale); n != 1 {
		t.Fatalf("told stale %d times: %+v", n, states.states)
	}
}

// A checkpoint served forever never covers the join's own placement:
// stale once it has stayed unproved past the bound, and consistent once
// a newer checkpoint proves it.
func TestAuditStaleWhenCheckpointFrozen(t *testing.T) {
	s, h := staleSetup(t)
	h.freeze(t)
	call := s.start(t, client.CallConfig{Audit: client.AuditOptions{Every: 20 * time.Millisecond, StaleBound: 300 * time.Millisecond}})
	w := call.Audit()
	st := waitAuditState(t, w, client.AuditStale)
	if st.EntriesPending != 1 || st.EntriesProved != 0 || !strings.Contains(st.Reason, "placement of "+call.Current().ID()) {
		t.Fatalf("stale status %+v", st)
	}
	t.Logf("stale status: %+v", st)
	h.unfreeze()
	st = waitAuditState(t, w, client.AuditConsistent)
	if st.EntriesPending != 0 || st.EntriesProved < 1 {
		t.Fatalf("consistent status %+v", st)
	}
}
