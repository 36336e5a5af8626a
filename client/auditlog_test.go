package client

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/e2ee/group"
	"github.com/oakmeet/oakmeet/e2ee/identity"
)

// testLog is a deployment's log as the control plane keeps it: sealed
// chains, a Merkle tree of every entry and a signer of checkpoints, with
// the key the test chooses (the real one, for a rewrite that verifies).
type testLog struct {
	key     ed25519.PrivateKey
	signer  note.Signer
	vkey    string
	mu      sync.Mutex
	tree    *audit.Tree
	entries []audit.Entry
	chains  map[string]*audit.Chain
}

func newTestLog(t *testing.T, key ed25519.PrivateKey) *testLog {
	t.Helper()
	pub := key.Public().(ed25519.PublicKey)
	origin := audit.DefaultOrigin(pub)
	s, err := audit.NewSigner(origin, key)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := audit.VerifierKey(origin, pub)
	if err != nil {
		t.Fatal(err)
	}
	return &testLog{key: key, signer: s, vkey: vkey, tree: &audit.Tree{}, chains: map[string]*audit.Chain{}}
}

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// add seals e as the log's next entry.
func (l *testLog) add(e audit.Entry) audit.Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch, ok := l.chains[e.Meeting]
	if !ok {
		ch = audit.NewChain(l.key, e.Meeting, audit.Head{})
		l.chains[e.Meeting] = ch
	}
	e.Index = l.tree.Size()
	e.Time = time.Unix(1700000000, 0).Add(time.Duration(e.Index) * time.Second)
	sealed := ch.Seal(e)
	leaf, err := audit.LeafData(&sealed)
	if err != nil {
		panic(err)
	}
	l.tree.Append(leaf)
	l.entries = append(l.entries, sealed)
	return sealed
}

// replay makes a new log of the same key from l's entries up to n, each
// passed through edit first (nil keeps it), re-sealed from scratch.
func (l *testLog) replay(t *testing.T, n int, edit func(*audit.Entry)) *testLog {
	t.Helper()
	out := newTestLog(t, l.key)
	l.mu.Lock()
	entries := append([]audit.Entry(nil), l.entries[:n]...)
	l.mu.Unlock()
	for _, e := range entries {
		if edit != nil {
			edit(&e)
		}
		out.add(audit.Entry{Kind: e.Kind, Meeting: e.Meeting, Participant: e.Participant, Node: e.Node, NodeCountry: e.NodeCountry,
			PolicyHash: e.PolicyHash, Reason: e.Reason})
	}
	return out
}

func (l *testLog) signedCheckpoint() []byte { return l.signedCheckpointAt(l.tree.Size()) }

// signedCheckpointAt signs the tree of the first n entries.
func (l *testLog) signedCheckpointAt(n int64) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	root, err := l.tree.Root(n)
	if err != nil {
		panic(err)
	}
	signed, err := audit.SignCheckpoint(l.signer, audit.Checkpoint{Origin: l.signer.Name(), Size: n, Root: root})
	if err != nil {
		panic(err)
	}
	return signed
}

// joinAnswer is what the control plane answers a join placed by entry e.
func (l *testLog) joinAnswer(e audit.Entry) JoinResult {
	return JoinResult{ParticipantID: e.Participant, Node: NodeInfo{ID: e.Node, Country: e.NodeCountry},
		Audit: api.JoinAudit{Checkpoint: string(l.signedCheckpoint()), VerifierKey: l.vkey, Index: e.Index, EveryMS: 5}}
}

// source serves one log at a time, as a control plane restarted on a
// rewritten store would.
type source struct {
	mu  sync.Mutex
	log *testLog
}

func (s *source) cur() *testLog {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log
}

func (s *source) set(l *testLog) {
	s.mu.Lock()
	s.log = l
	s.mu.Unlock()
}

func (s *source) Checkpoint(context.Context) ([]byte, error) { return s.cur().signedCheckpoint(), nil }

func (s *source) InclusionProof(_ context.Context, index, size int64) (api.InclusionProof, error) {
	p, err := s.cur().tree.ProveInclusion(index, size)
	return api.InclusionProof{Index: index, Size: size, Proof: p}, err
}

func (s *source) ConsistencyProof(_ context.Context, from, to int64) (api.ConsistencyProof, error) {
	p, err := s.cur().tree.ProveConsistency(from, to)
	return api.ConsistencyProof{From: from, To: to, Proof: p}, err
}

func (s *source) AuditEntries(_ context.Context, meeting string, start int64, limit int) (api.AuditPage, error) {
	l := s.cur()
	l.mu.Lock()
	defer l.mu.Unlock()
	if limit <= 0 || limit > 2 {
		limit = 2 // small pages, so paging is exercised
	}
	page := api.AuditPage{Entries: []audit.Entry{}, Size: l.tree.Size()}
	for _, e := range l.entries {
		if e.Index < start || e.Meeting != meeting {
			continue
		}
		if len(page.Entries) == limit {
			page.More, page.Next = true, e.Index
			break
		}
		page.Entries = append(page.Entries, e)
	}
	return page, nil
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// meetingLog is a log with a meeting m1 created, one participant placed
// and its policy changed, among another meeting's entries.
func meetingLog(t *testing.T, key ed25519.PrivateKey) (*testLog, audit.Entry) {
	l := newTestLog(t, key)
	l.add(audit.Entry{Kind: audit.KindMeetingCreated, Meeting: "m1", PolicyHash: "p1"})
	l.add(audit.Entry{Kind: audit.KindMeetingCreated, Meeting: "other", PolicyHash: "x"})
	placed := l.add(audit.Entry{Kind: audit.KindPlacement, Meeting: "m1", Participant: "a", Node: "de-1", NodeCountry: "DE", PolicyHash: "p1"})
	l.add(audit.Entry{Kind: audit.KindPlacement, Meeting: "other", Participant: "z", Node: "jp-1", NodeCountry: "JP"})
	return l, placed
}

func startWatcher(t *testing.T, src auditSource, opts AuditOptions) *AuditWatcher {
	w := newAuditWatcher(src, "m1", opts, nil)
	t.Cleanup(w.Close)
	return w
}

func TestAuditWatcherHonestLog(t *testing.T) {
	l, placed := meetingLog(t, newKey(t))
	src := &source{log: l}
	var mu sync.Mutex
	var told []string
	w := startWatcher(t, src, AuditOptions{OnCheckpoint: func(b []byte) {
		mu.Lock()
		told = append(told, string(b))
		mu.Unlock()
	}})
	if s := w.Status(); s.State != AuditUnchecked {
		t.Fatalf("before a join: %+v", s)
	}
	w.joined(l.joinAnswer(placed), false)
	waitUntil(t, "the placement proved", func() bool { return w.Status().EntriesProved == 1 })
	l.add(audit.Entry{Kind: audit.KindPolicyChange, Meeting: "m1", PolicyHash: "p2"})
	l.add(audit.Entry{Kind: audit.KindPolicyChange, Meeting: "other", PolicyHash: "y"})
	moved := l.add(audit.Entry{Kind: audit.KindMigration, Meeting: "m1", Participant: "b", Node: "fr-1", NodeCountry: "FR", PolicyHash: "p2"})
	w.joined(l.joinAnswer(moved), false)
	waitUntil(t, "the policy change and the move proved", func() bool { return w.Status().EntriesProved == 3 })
	s := w.Status()
	if s.State != AuditConsistent || s.Size != 7 || s.EntriesPending != 0 || s.VerifierKey != l.vkey {
		t.Fatalf("status %+v", s)
	}
	cps := w.Checkpoints()
	if len(cps) < 2 || cps[len(cps)-1] != string(l.signedCheckpoint()) {
		t.Fatalf("checkpoints held: %q", cps)
	}
	mu.Lock()
	if strings.Join(told, "") != strings.Join(cps, "") {
		t.Fatalf("told %q, held %q", told, cps)
	}
	mu.Unlock()
	// Older checkpoints of the same log, offered by someone else, fit.
	for n := int64(1); n <= 7; n++ {
		if err := w.OfferCheckpoint(l.signedCheckpointAt(n)); err != nil {
			t.Fatalf("offer the checkpoint of size %d: %v", n, err)
		}
	}
	// So does a newer one, which the control plane has by then.
	l.add(audit.Entry{Kind: audit.KindNodeDown, Node: "x"})
	if err := w.OfferCheckpoint(l.signedCheckpoint()); err != nil || w.Status().Size != 8 {
		t.Fatalf("offer a newer checkpoint: %v (%+v)", err, w.Status())
	}
	select {
	case <-w.Alarm():
		t.Fatalf("alarm on an honest log: %+v", w.Status())
	default:
	}
}

func TestAuditWatcherCatchesRewrites(t *testing.T) {
	key := newKey(t)
	for _, tc := range []struct {
		name    string
		rewrite func(l *testLog) *testLog
		want    string
	}{
		{"truncated", func(l *testLog) *testLog { return l.replay(t, 3, nil) }, "fewer"},
		{"truncated and grown past", func(l *testLog) *testLog {
			r := l.replay(t, 3, nil)
			for range 5 {
				r.add(audit.Entry{Kind: audit.KindNodeDown, Node: "x"})
			}
			return r
		}, "does not extend"},
		{"edited", func(l *testLog) *testLog {
			return l.replay(t, len(l.entries), func(e *audit.Entry) {
				if e.Participant == "z" {
					e.NodeCountry = "CN"
				}
			})
		}, "two different trees"},
		{"rebuilt with another key", func(l *testLog) *testLog {
			r := newTestLog(t, newKey(t))
			r.vkey = l.vkey // the server still names the old key
			return r
		}, "does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, placed := meetingLog(t, key)
			src := &source{log: l}
			w := startWatcher(t, src, AuditOptions{})
			w.joined(l.joinAnswer(placed), false)
			waitUntil(t, "the placement proved", func() bool { return w.Status().EntriesProved == 1 })
			src.set(tc.rewrite(l))
			select {
			case <-w.Alarm():
			case <-time.After(5 * time.Second):
				t.Fatalf("no alarm: %+v", w.Status())
			}
			if s := w.Status(); s.State != AuditInconsistent || !strings.Contains(s.Reason, tc.want) {
				t.Fatalf("status %+v, want a reason with %q", s, tc.want)
			}
		})
	}
}

func TestAuditWatcherOfferCatchesFork(t *testing.T) {
	key := newKey(t)
	l, placed := meetingLog(t, key)
	first := startWatcher(t, &source{log: l}, AuditOptions{})
	first.joined(l.joinAnswer(placed), false)
	waitUntil(t, "the first participant's checkpoint", func() bool { return first.Status().EntriesProved == 1 })
	c1 := first.Checkpoints()[0]

	// The control plane shows the second participant a log with the other
	// meeting's placement edited and a join of its own on top.
	forked := l.replay(t, len(l.entries), func(e *audit.Entry) {
		if e.Participant == "z" {
			e.Node, e.NodeCountry = "cn-1", "CN"
		}
	})
	joined := forked.add(audit.Entry{Kind: audit.KindPlacement, Meeting: "m1", Participant: "b", Node: "de-1", NodeCountry: "DE", PolicyHash: "p1"})
	second := startWatcher(t, &source{log: forked}, AuditOptions{})
	second.joined(forked.joinAnswer(joined), false)
	waitUntil(t, "the second participant's placement proved", func() bool { return second.Status().EntriesProved == 1 })
	if s := second.Status(); s.State != AuditConsistent {
		t.Fatalf("the fork in its own view: %+v", s)
	}
	// Not signed by the log key: refused, no alarm.
	if err := second.OfferCheckpoint(newTestLog(t, newKey(t)).signedCheckpoint()); err == nil || errors.Is(err, audit.ErrInconsistent) {
		t.Fatalf("offer of another key's checkpoint: %v", err)
	}
	err := second.OfferCheckpoint([]byte(c1))
	if !errors.Is(err, audit.ErrInconsistent) {
		t.Fatalf("offer of the first participant's checkpoint: %v", err)
	}
	if s := second.Status(); s.State != AuditInconsistent || !strings.Contains(s.Reason, "forked") {
		t.Fatalf("status %+v", s)
	}
	// And the other way round: the first participant, given the second's.
	err = first.OfferCheckpoint([]byte(second.Checkpoints()[0]))
	if !errors.Is(err, audit.ErrInconsistent) {
		t.Fatalf("offer of the second participant's checkpoint: %v (%+v)", err, first.Status())
	}
}

func TestAuditWatcherHeldAndPinned(t *testing.T) {
	key := newKey(t)
	l, placed := meetingLog(t, key)
	held := [][]byte{l.signedCheckpoint()}
	l.add(audit.Entry{Kind: audit.KindPolicyChange, Meeting: "m1", PolicyHash: "p2"})
	held = append(held, l.signedCheckpoint())

	t.Run("held from before, same log", func(t *testing.T) {
		again := l.add(audit.Entry{Kind: audit.KindPlacement, Meeting: "m1", Participant: "c", Node: "de-1", NodeCountry: "DE", PolicyHash: "p2"})
		w := startWatcher(t, &source{log: l}, AuditOptions{Held: held, Key: l.vkey})
		w.joined(l.joinAnswer(again), false)
		waitUntil(t, "proved", func() bool { return w.Status().EntriesProved == 2 })
		if cps := w.Checkpoints(); len(cps) != 3 || cps[0] != string(held[0]) {
			t.Fatalf("held %d: %q", len(cps), cps)
		}
	})
	for _, tc := range []struct {
		name string
		opts AuditOptions
		log  func() *testLog
		want string
	}{
		{"rebuilt log", AuditOptions{Held: held}, func() *testLog { r, _ := meetingLog(t, key); return r }, "fewer"},
		{"held signed by another key", AuditOptions{Held: held}, func() *testLog { r, _ := meetingLog(t, newKey(t)); return r }, "held from before"},
		{"another key than pinned", AuditOptions{Key: newTestLog(t, newKey(t)).vkey}, func() *testLog { r, _ := meetingLog(t, key); return r }, "not the expected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.log()
			w := startWatcher(t, &source{log: r}, tc.opts)
			w.joined(r.joinAnswer(placed), false)
			select {
			case <-w.Alarm():
			case <-time.After(5 * time.Second):
				t.Fatalf("no alarm: %+v", w.Status())
			}
			if s := w.Status(); !strings.Contains(s.Reason, tc.want) {
				t.Fatalf("status %+v, want %q", s, tc.want)
			}
		})
	}
}

func TestAuditWatcherChecksItsPlacement(t *testing.T) {
	l, placed := meetingLog(t, newKey(t))
	for _, tc := range []struct {
		name string
		edit func(*JoinResult)
		want string
	}{
		{"another node", func(jr *JoinResult) { jr.Node = NodeInfo{ID: "cn-1", Country: "CN"} }, "placed a on node cn-1"},
		{"another entry", func(jr *JoinResult) { jr.Audit.Index = 3 }, "no entry 3"},
		{"another meeting's entry", func(jr *JoinResult) { jr.Audit.Index = 0 }, "is a meeting_created"},
		{"a key changed between joins", nil, "as before"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := startWatcher(t, &source{log: l}, AuditOptions{})
			jr := l.joinAnswer(placed)
			if tc.edit == nil {
				w.joined(jr, false)
				jr.Audit.VerifierKey = newTestLog(t, newKey(t)).vkey
			} else {
				tc.edit(&jr)
			}
			w.joined(jr, false)
			select {
			case <-w.Alarm():
			case <-time.After(5 * time.Second):
				t.Fatalf("no alarm: %+v", w.Status())
			}
			if s := w.Status(); !strings.Contains(s.Reason, tc.want) {
				t.Fatalf("status %+v, want %q", s, tc.want)
			}
		})
	}
}

func TestAuditWatcherWithoutCheckpoint(t *testing.T) {
	w := startWatcher(t, &source{log: newTestLog(t, newKey(t))}, AuditOptions{})
	w.joined(JoinResult{ParticipantID: "a"}, false)
	waitUntil(t, "the answer taken", func() bool { return strings.Contains(w.Status().Reason, "no checkpoint") })
	if s := w.Status(); s.State != AuditUnchecked {
		t.Fatalf("status %+v", s)
	}
	if err := w.OfferCheckpoint([]byte("x")); !errors.Is(err, ErrAuditNotStarted) {
		t.Fatalf("offer: %v", err)
	}
	w.Close()
	if err := w.OfferCheckpoint([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("offer after close: %v", err)
	}
}

func TestVerifierPublicKey(t *testing.T) {
	key := newKey(t)
	l := newTestLog(t, key)
	pub, err := verifierPublicKey(l.vkey)
	if err != nil || !pub.Equal(key.Public()) {
		t.Fatalf("key %x, %v", pub, err)
	}
	for _, bad := range []string{"", "a+b", "a+b+!!", "a+b+" + strings.Repeat("A", 44), fmt.Sprintf("%s+x", l.vkey)} {
		if _, err := verifierPublicKey(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// gossipMember is a member of the meeting's key schedule whose watcher
// shares each checkpoint it holds.
func gossipMember(t *testing.T, pid string) *group.Member {
	t.Helper()
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	m, err := group.NewMember(group.Config{Meeting: "m1", Participant: pid, Name: pid, Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Two participants shown two logs by one control plane: each consistent
// in its own view, and the fork caught as soon as one's checkpoint
// reaches the other through the key schedule, signed by its identity key.
func TestAuditWatchersCatchAForkThroughTheKeySchedule(t *testing.T) {
	key := newKey(t)
	l, placed := meetingLog(t, key)
	forked := l.replay(t, len(l.entries), func(e *audit.Entry) {
		if e.Participant == "z" {
			e.Node, e.NodeCountry = "cn-1", "CN"
		}
	})
	bobPlaced := forked.add(audit.Entry{Kind: audit.KindPlacement, Meeting: "m1", Participant: "b", Node: "de-1", NodeCountry: "DE", PolicyHash: "p1"})

	alice, bob := gossipMember(t, "a"), gossipMember(t, "b")
	for _, p := range [][2]*group.Member{{alice, bob}, {bob, alice}} {
		if _, err := p[1].HandleMessage(p[0].Participant(), p[0].Announce().Payload); err != nil {
			t.Fatal(err)
		}
	}
	bobsView := startWatcher(t, &source{log: forked}, AuditOptions{})
	shared := make(chan []byte, 16)
	alicesView := startWatcher(t, &source{log: l}, AuditOptions{OnCheckpoint: func(b []byte) { shared <- b }})
	bobsView.joined(forked.joinAnswer(bobPlaced), false)
	waitUntil(t, "bob's placement proved", func() bool { return bobsView.Status().EntriesProved == 1 })
	alicesView.joined(l.joinAnswer(placed), false)

	signed := <-shared
	out, err := alice.ShareCheckpoint(string(signed))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.HandleMessage("a", out.Payload); err != nil {
		t.Fatal(err)
	}
	got := bob.TakeCheckpoints()
	if len(got) != 1 || got[0].Participant != "a" {
		t.Fatalf("bob took %+v", got)
	}
	if err := bobsView.OfferCheckpoint([]byte(got[0].Checkpoint)); !errors.Is(err, audit.ErrInconsistent) {
		t.Fatalf("alice's checkpoint offered to bob: %v", err)
	}
	if s := bobsView.Status(); s.State != AuditInconsistent || !strings.Contains(s.Reason, "forked") {
		t.Fatalf("bob's view: %+v", s)
	}
}

// A join answer's checkpoint is taken when the join begins, so it may be
// older than one the watcher polled since: a view of the past, checked as
// one, never an alarm on an honest log.
func TestAuditWatcherJoinAnswerOlderThanHeld(t *testing.T) {
	l, placed := meetingLog(t, newKey(t))
	w := startWatcher(t, &source{log: l}, AuditOptions{})
	w.joined(l.joinAnswer(placed), false)
	waitUntil(t, "the placement proved", func() bool { return w.Status().EntriesProved == 1 })
	moved := l.add(audit.Entry{Kind: audit.KindMigration, Meeting: "m1", Participant: "b", Node: "fr-1", NodeCountry: "FR"})
	l.add(audit.Entry{Kind: audit.KindNodeDown, Node: "x"})
	waitUntil(t, "the newer checkpoint held", func() bool { return w.Status().Size == 6 })
	jr := l.joinAnswer(moved)
	jr.Audit.Checkpoint = string(l.signedCheckpointAt(5)) // begun before the last entry
	w.joined(jr, false)
	waitUntil(t, "the move proved", func() bool { return w.Status().EntriesProved == 2 })
	if s := w.Status(); s.State != AuditConsistent {
		t.Fatalf("status %+v", s)
	}
	// An older checkpoint of another tree is not a view of the past.
	other := l.replay(t, 5, func(e *audit.Entry) { e.Reason = "rewritten" })
	jr.Audit.Checkpoint = string(other.signedCheckpointAt(4))
	w.joined(jr, false)
	select {
	case <-w.Alarm():
	case <-time.After(5 * time.Second):
		t.Fatalf("no alarm: %+v", w.Status())
	}
	if s := w.Status(); !strings.Contains(s.Reason, "forked or rewritten") {
		t.Fatalf("status %+v", s)
	}
}

// The node of a placement the call refused is not held against the log:
// the answer may have lied about it, which the refusal reports; the entry
// must still be this participant's placement, in the log.
func TestAuditWatcherRefusedPlacement(t *testing.T) {
	l, placed := meetingLog(t, newKey(t))
	w := startWatcher(t, &source{log: l}, AuditOptions{})
	jr := l.joinAnswer(placed)
	jr.Node = NodeInfo{ID: "fr-1", Country: "FR"}
	w.joined(jr, true)
	waitUntil(t, "the refused placement proved", func() bool { return w.Status().EntriesProved == 1 })
	if s := w.Status(); s.State != AuditConsistent {
		t.Fatalf("status %+v", s)
	}
	jr.ParticipantID = "someone-else"
	w.joined(jr, true)
	select {
	case <-w.Alarm():
	case <-time.After(5 * time.Second):
		t.Fatalf("no alarm for another participant's entry: %+v", w.Status())
	}
}

// withholding serves a log but refuses inclusion proofs of some entries.
type withholding struct {
	*source
	mu      sync.Mutex
	refused map[int64]bool
}

func (s *withholding) InclusionProof(ctx context.Context, index, size int64) (api.InclusionProof, error) {
	s.mu.Lock()
	no := s.refused[index]
	s.mu.Unlock()
	if no {
		return api.InclusionProof{}, errors.New("503 try later")
	}
	return s.source.InclusionProof(ctx, index, size)
}

func (s *withholding) refuse(index int64, no bool) {
	s.mu.Lock()
	s.refused[index] = no
	s.mu.Unlock()
}

// A policy change whose proof is withheld past the bound makes the
// watcher stale, whatever the count of failed polls; its proof returns
// it to consistent.
func TestAuditWatcherStaleOnUnprovedPolicyChange(t *testing.T) {
	l, placed := meetingLog(t, newKey(t))
	src := &withholding{source: &source{log: l}, refused: map[int64]bool{}}
	var mu sync.Mutex
	var told []AuditState
	w := startWatcher(t, src, AuditOptions{StaleAfter: 1 << 20, StaleBound: 50 * time.Millisecond, OnState: func(s AuditStatus) {
		mu.Lock()
		told = append(told, s.State)
		mu.Unlock()
	}})
	w.joined(l.joinAnswer(placed), false)
	waitUntil(t, "the placement proved", func() bool { return w.Status().EntriesProved == 1 })
	change := l.add(audit.Entry{Kind: audit.KindPolicyChange, Meeting: "m1", PolicyHash: "p2"})
	src.refuse(change.Index, true)
	waitUntil(t, "stale", func() bool { return w.Status().State == AuditStale })
	s := w.Status()
	if !strings.Contains(s.Reason, fmt.Sprintf("policy_change entry %d", change.Index)) || !strings.Contains(s.Reason, "503 try later") {
		t.Fatalf("status %+v", s)
	}
	src.refuse(change.Index, false)
	waitUntil(t, "consistent again", func() bool { return w.Status().State == AuditConsistent })
	if s := w.Status(); s.EntriesProved != 2 || s.Reason != "" {
		t.Fatalf("status %+v", s)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := fmt.Sprint(told); got != "[consistent stale consistent]" {
		t.Fatalf("states told %s", got)
	}
}

// The defaults: five polls in a row, and an entry bound of ten polls but
// never under 30 s.
func TestAuditWatcherStaleDefaults(t *testing.T) {
	l, placed := meetingLog(t, newKey(t))
	w := startWatcher(t, &source{log: l}, AuditOptions{})
	w.joined(l.joinAnswer(placed), false)
	waitUntil(t, "the placement proved", func() bool { return w.Status().EntriesProved == 1 })
	got := make(chan [2]any, 1)
	w.cmds.Put(func() { got <- [2]any{w.staleAfter, w.staleBound} })
	if v := <-got; v[0] != DefaultAuditStaleAfter || v[1] != 30*time.Second {
		t.Fatalf("defaults %v", v)
	}
	w2 := startWatcher(t, &source{log: l}, AuditOptions{Every: 10 * time.Second})
	w2.joined(l.joinAnswer(placed), false)
	waitUntil(t, "the placement proved", func() bool { return w2.Status().EntriesProved == 1 })
	w2.cmds.Put(func() { got <- [2]any{w2.staleAfter, w2.staleBound} })
	if v := <-got; v[1] != 100*time.Second {
		t.Fatalf("bound for a 10 s poll %v", v)
	}
}

// unreachable is a control plane that, while down, answers no request for
// its checkpoint: a burst of joins it refuses or times out on.
type unreachable struct {
	source
	down atomic.Bool
}

func (u *unreachable) Checkpoint(ctx context.Context) ([]byte, error) {
	if u.down.Load() {
		return nil, errors.New("503 overloaded")
	}
	return u.source.Checkpoint(ctx)
}

func TestAuditWatcherComparesAnOfferOnceTheControlPlaneAnswers(t *testing.T) {
	start := func(t *testing.T) (*testLog, *unreachable, *AuditWatcher) {
		l, placed := meetingLog(t, newKey(t))
		src := &unreachable{source: source{log: l}}
		w := startWatcher(t, src, AuditOptions{Every: 20 * time.Millisecond})
		w.joined(l.joinAnswer(placed), false)
		waitUntil(t, "the placement proved", func() bool { return w.Status().EntriesProved == 1 })
		return l, src, w
	}
	t.Run("an honest log, unreachable for a while", func(t *testing.T) {
		l, src, w := start(t)
		l.add(audit.Entry{Kind: audit.KindNodeDown, Node: "x"})
		src.down.Store(true)
		err := w.OfferCheckpoint(l.signedCheckpoint())
		if err == nil || errors.Is(err, audit.ErrInconsistent) || w.Status().State == AuditInconsistent {
			t.Fatalf("offer while the control plane is unreachable: %v (%+v)", err, w.Status())
		}
		src.down.Store(false)
		waitUntil(t, "the offer compared", func() bool { return w.Status().Size == 5 })
		select {
		case <-w.Alarm():
			t.Fatalf("alarm on an honest log: %+v", w.Status())
		default:
		}
	})
	t.Run("a log that lost entries, shown once it answers again", func(t *testing.T) {
		l, src, w := start(t)
		// Someone else holds a checkpoint with an entry this control
		// plane never shows: it withholds its own, then answers with the
		// old one.
		grown := l.replay(t, len(l.entries), nil)
		grown.add(audit.Entry{Kind: audit.KindPlacement, Meeting: "m1", Participant: "b", Node: "cn-1", NodeCountry: "CN", PolicyHash: "p1"})
		src.down.Store(true)
		if err := w.OfferCheckpoint(grown.signedCheckpoint()); err == nil || errors.Is(err, audit.ErrInconsistent) {
			t.Fatalf("offer while the control plane is unreachable: %v", err)
		}
		src.down.Store(false)
		select {
		case <-w.Alarm():
		case <-time.After(5 * time.Second):
			t.Fatalf("no alarm once the control plane answered with a log short of the offer: %+v", w.Status())
		}
		if s := w.Status(); s.State != AuditInconsistent || !strings.Contains(s.Reason, "lost entries") {
			t.Fatalf("status %+v", s)
		}
	})
}
