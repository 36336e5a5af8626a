package control

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/store"
)

// logEnv is a control plane's store on an embedded JetStream, outliving
// the control planes started on it (a restart is a new Server on it).
type logEnv struct {
	t   testing.TB
	nc  *nats.Conn
	st  *store.Store
	key ed25519.PrivateKey
}

func newLogEnv(t testing.TB) *logEnv {
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
	_, key, _ := ed25519.GenerateKey(nil)
	return &logEnv{t: t, nc: nc, st: st, key: key}
}

// server builds (and so rebuilds the log of) a control plane on the store.
func (e *logEnv) server(floor policy.Policy) (*Server, error) {
	loc, err := locate.New(locate.Config{TrustClientHints: true, DisableBuiltin: true})
	if err != nil {
		e.t.Fatal(err)
	}
	return New(context.Background(), Config{Store: e.st, NATS: e.nc, Locator: loc, Floor: floor, Key: e.key, EnrollmentKey: testEnrollmentPub(), Limits: NoLimits(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Timing: rigTiming, OperatorToken: rigOperator})
}

// twoWriters starts two control planes on the one store and log, each
// ready, and stops them when the test ends.
func (e *logEnv) twoWriters() (a, b *Server) {
	e.t.Helper()
	var err error
	if a, err = e.server(policy.Policy{}); err != nil {
		e.t.Fatal(err)
	}
	if b, err = e.server(policy.Policy{}); err != nil {
		e.t.Fatal(err)
	}
	stopA, stopB := e.run(a), e.run(b)
	e.t.Cleanup(stopA)
	e.t.Cleanup(stopB)
	return a, b
}

// run runs srv until the returned stop is called, once it is ready.
func (e *logEnv) run(srv *Server) (stop func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !srv.ready.Load() {
		select {
		case err := <-done:
			cancel()
			e.t.Fatalf("control plane stopped before it was ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			e.t.Fatal("control plane not ready after 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("run: %v", err)
		}
	}
}

// records reads every stored record of the log.
func (e *logEnv) records() []store.AuditRecord {
	e.t.Helper()
	ctx := context.Background()
	last, err := e.st.AuditLastSeq(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []store.AuditRecord
	if err := e.st.ReadAudit(ctx, "", true, 1, last, 0, func(r store.AuditRecord) error {
		out = append(out, r)
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// replaceStream deletes the audit stream and stores recs in its place, as
// someone with write access to JetStream (not the control plane's key)
// can.
func (e *logEnv) replaceStream(recs []store.AuditRecord) {
	e.t.Helper()
	ctx := context.Background()
	js, err := jetstream.New(e.nc)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, cluster.StreamAudit); err != nil {
		e.t.Fatal(err)
	}
	if e.st, err = store.Open(ctx, e.nc); err != nil {
		e.t.Fatal(err)
	}
	var last uint64
	for _, r := range recs {
		if last, err = e.st.AppendAudit(ctx, r.Chain, r.Data, last); err != nil {
			e.t.Fatal(err)
		}
	}
}

// appendSome appends a few entries of two meetings and the deployment
// chain and has them checkpointed.
func appendSome(t *testing.T, srv *Server) {
	t.Helper()
	ctx := context.Background()
	for i, m := range []string{"m1", "m2", "m1", "", "m1", "m2"} {
		if _, err := srv.audit.append(ctx, audit.Entry{Kind: audit.KindPlacement, Meeting: m, Participant: fmt.Sprintf("p%d", i), Node: "de-fra", NodeCountry: "DE"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := srv.audit.signNow(ctx); err != nil {
		t.Fatal(err)
	}
}

// loggedSome is a log of a few entries (appendSome), written by a control
// plane that has stopped again.
func loggedSome(t *testing.T) *logEnv {
	t.Helper()
	env := newLogEnv(t)
	srv, err := env.server(policy.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	stop := env.run(srv)
	appendSome(t, srv)
	stop()
	return env
}

func TestAlteredStoredLogStopsStart(t *testing.T) {
	edit := func(i int, f func(string) string) func([]store.AuditRecord) []store.AuditRecord {
		return func(recs []store.AuditRecord) []store.AuditRecord {
			recs[i].Data = []byte(f(string(recs[i].Data)))
			return recs
		}
	}
	for _, tc := range []struct {
		name  string
		alter func([]store.AuditRecord) []store.AuditRecord
		want  string // "" : starts
	}{
		{"unchanged", func(r []store.AuditRecord) []store.AuditRecord { return r }, ""},
		{"edited entry", edit(2, func(s string) string { return strings.Replace(s, `"node_country":"DE"`, `"node_country":"JP"`, 1) }),
			"first 6 entries are not the ones the checkpoint signed before names"},
		{"not canonical", edit(1, func(s string) string { return strings.Replace(s, `,"kind"`, `, "kind"`, 1) }),
			"stream sequence 2: not in the canonical form of an entry"},
		{"older version", edit(3, func(s string) string { return strings.Replace(s, `"index":3,`, ``, 1) }),
			"stream sequence 4: not in the canonical form"},
		{"not an entry", edit(0, func(string) string { return "{" }), "stream sequence 1: not an entry"},
		{"reordered pair", func(r []store.AuditRecord) []store.AuditRecord { r[0], r[2] = r[2], r[0]; return r },
			"stream sequence 1: entry of meeting \"m1\" seq 2 has index 2 at position 0"},
		{"moved to another chain", func(r []store.AuditRecord) []store.AuditRecord { r[1].Chain = "m1"; return r },
			"stream sequence 2: entry of meeting \"m2\" stored in the chain of \"m1\""},
		{"last entries removed", func(r []store.AuditRecord) []store.AuditRecord { return r[:4] },
			"the stream holds 4 entries, fewer than the 6 of the checkpoint signed before"},
		{"deleted", func([]store.AuditRecord) []store.AuditRecord { return nil },
			"the stream holds 0 entries, fewer than the 6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := loggedSome(t)

			env.replaceStream(tc.alter(env.records()))
			_, err := env.server(policy.Policy{})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("an unchanged log: %v", err)
			case tc.want != "" && err == nil:
				t.Fatal("started on an altered log")
			case tc.want != "" && (!strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "the stored audit log was altered or written by an older version")):
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// checkPolicyRule checks the policy-hash rule on one meeting's chain: a
// hash is one a meeting_created or policy_change entry introduced first.
func checkPolicyRule(t *testing.T, entries []audit.Entry) {
	t.Helper()
	introduced := map[string]bool{}
	for _, e := range entries {
		if e.Kind == audit.KindMeetingCreated || e.Kind == audit.KindPolicyChange {
			introduced[e.PolicyHash] = true
		}
		if e.PolicyHash != "" && !introduced[e.PolicyHash] {
			t.Fatalf("entry %d (%s) carries policy hash %s that no earlier entry introduced", e.Index, e.Kind, e.PolicyHash)
		}
	}
}

func TestNewFloorAtStartIsAPolicyChange(t *testing.T) {
	env := newLogEnv(t)
	ctx := context.Background()
	open := policy.Policy{}
	srv, err := env.server(open)
	if err != nil {
		t.Fatal(err)
	}
	stop := env.run(srv)
	// m1's effective policy changes with a floor blocking RU; m2 blocks
	// RU itself, so its effective policy stays.
	pols := map[string]policy.Policy{"m1": {}, "m2": {BlockedCountries: []string{"RU"}}}
	for id, p := range pols {
		if err := srv.meetings.create(ctx, &meeting{ID: id, Title: "t", Policy: p, Created: time.Now().UTC()}); err != nil {
			t.Fatal(err)
		}
		_, eff, err := srv.effective(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, kind := range []string{audit.KindMeetingCreated, audit.KindPlacement} {
			if _, err := srv.audit.append(ctx, audit.Entry{Kind: kind, Meeting: id, PolicyHash: eff.Hash()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	stop()

	floor := policy.Policy{BlockedCountries: []string{"RU"}}
	changes := func(srv *Server, id string) []audit.Entry {
		entries, err := srv.audit.entries(ctx, id, false)
		if err != nil {
			t.Fatal(err)
		}
		checkPolicyRule(t, entries)
		var out []audit.Entry
		for _, e := range entries {
			if e.Kind == audit.KindPolicyChange {
				out = append(out, e)
			}
		}
		return out
	}
	for restart := range 2 { // the second start, on the same floor, changes nothing
		srv, err := env.server(floor)
		if err != nil {
			t.Fatal(err)
		}
		stop := env.run(srv)
		_, eff, err := srv.effective(pols["m1"])
		if err != nil {
			t.Fatal(err)
		}
		got := changes(srv, "m1")
		if len(got) != 1 || got[0].PolicyHash != eff.Hash() || !strings.Contains(got[0].Reason, "deployment floor changed") {
			t.Fatalf("start %d: m1's policy changes %+v, want one to %s", restart+1, got, eff.Hash())
		}
		if got := changes(srv, "m2"); len(got) != 0 {
			t.Fatalf("start %d: m2's effective policy did not change, yet %+v", restart+1, got)
		}
		// A decision under the new floor keeps the rule.
		if _, err := srv.audit.append(ctx, audit.Entry{Kind: audit.KindPlacement, Meeting: "m1", PolicyHash: eff.Hash()}); err != nil {
			t.Fatal(err)
		}
		changes(srv, "m1")
		stop()
	}
}

func TestSecondWriterCannotForkTheLog(t *testing.T) {
	env := newLogEnv(t)
	ctx := context.Background()
	a, b := env.twoWriters()
	// Each writer appends after the other's entries: one log, each chain
	// continued by whoever writes next.
	for i := range 6 {
		w := a
		if i%2 == 1 {
			w = b
		}
		e, err := w.audit.append(ctx, audit.Entry{Kind: audit.KindPlacement, Meeting: "m1", Participant: fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		if e.Index != int64(i) || e.Seq != uint64(i+1) {
			t.Fatalf("append %d by writer %d: index %d seq %d", i, i%2, e.Index, e.Seq)
		}
	}
	// a has not read b's last entry: its tree is the same log, shorter.
	if a.audit.tree.Size() != 5 || b.audit.tree.Size() != 6 {
		t.Fatalf("trees of %d and %d entries", a.audit.tree.Size(), b.audit.tree.Size())
	}
	ra, _ := a.audit.tree.Root(5)
	rb, _ := b.audit.tree.Root(5)
	if ra != rb {
		t.Fatal("two writers hold different trees of the same entries")
	}
	entries, err := b.audit.entries(ctx, "m1", false)
	if err != nil || len(entries) != 6 {
		t.Fatalf("entries %d, %v", len(entries), err)
	}
	if err := audit.Verify(a.PublicKey(), entries); err != nil {
		t.Fatalf("the chain two writers wrote: %v", err)
	}
}

// populate stores n entries in the log directly, as records the control
// plane would have written: canonical, indexed and hash-linked. They are
// not signed (signing 100,000 entries would be most of a benchmark's
// time): a checkpoint of them, signed and stored as the control plane
// stores its own, vouches for them at a rebuild. The entries belong to
// meetings meetings of n/meetings entries each, live concurrent at a time
// and interleaved round-robin while they are: concurrent == meetings
// spreads every meeting over the whole log.
func populate(b *testing.B, env *logEnv, n, meetings, concurrent int) {
	b.Helper()
	ctx := context.Background()
	js, err := jetstream.New(env.nc)
	if err != nil {
		b.Fatal(err)
	}
	heads := map[string]audit.Head{}
	var tree audit.Tree
	sig := base64.StdEncoding.EncodeToString(make([]byte, ed25519.SignatureSize))
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	per := n / meetings
	for i := range n {
		wave, j := i/(per*concurrent), i%(per*concurrent)
		m := fmt.Sprintf("m%05d", wave*concurrent+j%concurrent)
		h := heads[m]
		prev := h.Hash
		if h.Seq == 0 {
			prev = audit.GenesisHash
		}
		sum := sha256.Sum256(fmt.Appendf(nil, "%d", i))
		e := audit.Entry{Seq: h.Seq + 1, Index: int64(i), Time: t0.Add(time.Duration(i) * time.Millisecond), Kind: audit.KindPlacement,
			Meeting: m, Participant: fmt.Sprintf("p%07d", i), Node: "de-fra", NodeCountry: "DE",
			PolicyHash: hex.EncodeToString(sum[:]), Reason: "nearest allowed node with headroom (120 km; participant location DE via client_hint)",
			PrevHash: prev, Hash: hex.EncodeToString(sum[:]), Sig: sig}
		heads[m] = e.Head()
		leaf, err := audit.LeafData(&e)
		if err != nil {
			b.Fatal(err)
		}
		tree.Append(leaf)
		if _, err := js.PublishAsync(cluster.AuditSubject(m), leaf); err != nil {
			b.Fatal(err)
		}
		if i%2000 == 1999 { // under the client's 4,000 outstanding
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(30 * time.Second):
				b.Fatal("publishing stalled")
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		b.Fatal("publishing stalled")
	}
	if last, err := env.st.AuditLastSeq(ctx); err != nil || last != uint64(n) {
		b.Fatalf("stored %d records, %v", last, err)
	}
	signer, err := audit.NewSigner(audit.DefaultOrigin(env.key.Public().(ed25519.PublicKey)), env.key)
	if err != nil {
		b.Fatal(err)
	}
	root, err := tree.Root(int64(n))
	if err != nil {
		b.Fatal(err)
	}
	signed, err := audit.SignCheckpoint(signer, audit.Checkpoint{Origin: signer.Name(), Size: int64(n), Root: root})
	if err != nil {
		b.Fatal(err)
	}
	if err := env.st.PutControl(ctx, keyCheckpoint, signed); err != nil {
		b.Fatal(err)
	}
}

// benchEntries is the deployment the issue names: 100,000 entries.
const benchEntries = 100_000

func BenchmarkAuditRebuild(b *testing.B) {
	env := newLogEnv(b)
	populate(b, env, benchEntries, 2000, 100)
	b.ResetTimer()
	for b.Loop() {
		srv, err := env.server(policy.Policy{})
		if err != nil {
			b.Fatal(err)
		}
		if srv.audit.tree.Size() != benchEntries {
			b.Fatalf("rebuilt %d entries", srv.audit.tree.Size())
		}
	}
	b.ReportMetric(float64(benchEntries), "entries")
}

// BenchmarkMeetingEntries is GET /api/audit/entries of one meeting's 50
// entries in a log of 100,000: "waves" as meetings come and go (100 live
// at a time, so a meeting's entries span 5,000 of the log's), "spread"
// the worst case, every meeting's entries spread over the whole log.
func BenchmarkMeetingEntries(b *testing.B) {
	for _, layout := range []struct {
		name       string
		concurrent int
	}{{"waves", 100}, {"spread", 2000}} {
		b.Run(layout.name, func(b *testing.B) { benchMeetingEntries(b, layout.concurrent) })
	}
}

func benchMeetingEntries(b *testing.B, concurrent int) {
	const meetings = 2000
	env := newLogEnv(b)
	populate(b, env, benchEntries, meetings, concurrent)
	srv, err := env.server(policy.Policy{})
	if err != nil {
		b.Fatal(err)
	}
	for i := range meetings { // a meeting's entries are read once it is known
		if err := srv.meetings.create(context.Background(), &meeting{ID: fmt.Sprintf("m%05d", i), Title: "t"}); err != nil {
			b.Fatal(err)
		}
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	get := func(m string) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodGet, hs.URL+api.PathAuditEntries+"?meeting="+m, nil)
		req.Header.Set(api.AuthHeader, "Bearer "+rigOperator)
		return hs.Client().Do(req)
	}
	// The first read after a start loads the stream's blocks from disk;
	// the benchmark is of a control plane that has been serving.
	if resp, err := get("m00001"); err != nil {
		b.Fatal(err)
	} else {
		resp.Body.Close()
	}
	var worst time.Duration
	b.ResetTimer()
	i := 0
	for b.Loop() {
		m := fmt.Sprintf("m%05d", (i*7919)%meetings)
		i++
		t0 := time.Now()
		resp, err := get(m)
		if err != nil {
			b.Fatal(err)
		}
		var p api.AuditPage
		err = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if d := time.Since(t0); d > worst {
			worst = d
		}
		if err != nil || resp.StatusCode != 200 || len(p.Entries) != benchEntries/meetings {
			b.Fatalf("GET %s: %d, %d entries, %v", m, resp.StatusCode, len(p.Entries), err)
		}
	}
	b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
}

func BenchmarkAuditAppend(b *testing.B) {
	env := newLogEnv(b)
	srv, err := env.server(policy.Policy{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.audit.run(ctx)
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, err := srv.audit.append(ctx, audit.Entry{Kind: audit.KindPlacement, Meeting: fmt.Sprintf("m%d", i%50), Participant: "p", Node: "de-fra", NodeCountry: "DE"}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func TestDecisionBeforeItsPolicyChangeKeepsTheRule(t *testing.T) {
	env := newLogEnv(t)
	ctx := context.Background()
	srv, err := env.server(policy.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	stop := env.run(srv)
	defer stop()
	// A join that read the meeting's new policy appends its placement
	// before the change's own entry arrives.
	for _, e := range []audit.Entry{
		{Kind: audit.KindMeetingCreated, Meeting: "m1", PolicyHash: "old"},
		{Kind: audit.KindPlacement, Meeting: "m1", PolicyHash: "old"},
		{Kind: audit.KindPlacement, Meeting: "m1", PolicyHash: "new"},
		{Kind: audit.KindPolicyChange, Meeting: "m1", PolicyHash: "new"},
		{Kind: audit.KindPlacement, Meeting: "m1", PolicyHash: "old"}, // decided before the change
		{Kind: audit.KindNodeDown, Node: "de-fra", PolicyHash: "none"},
	} {
		if _, err := srv.audit.append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := srv.audit.entries(ctx, "m1", false)
	if err != nil {
		t.Fatal(err)
	}
	checkPolicyRule(t, entries)
	var kinds []string
	for _, e := range entries {
		kinds = append(kinds, e.Kind+" "+e.PolicyHash)
	}
	want := []string{"meeting_created old", "placement old", "policy_change new", "placement new", "policy_change new", "placement old"}
	if strings.Join(kinds, ", ") != strings.Join(want, ", ") {
		t.Fatalf("chain %v, want %v", kinds, want)
	}
}

// forgeEntry is an entry of meeting that continues recs (its chain and the
// log) and claims a placement in CN, sealed with key, or (key nil) with
// a made-up hash and signature: what someone with write access to the
// store, but not the control plane's key, can append.
func forgeEntry(t *testing.T, recs []store.AuditRecord, meeting string, key ed25519.PrivateKey) []byte {
	t.Helper()
	var head audit.Head
	for _, r := range recs {
		var e audit.Entry
		if err := json.Unmarshal(r.Data, &e); err != nil {
			t.Fatal(err)
		}
		if e.Meeting == meeting {
			head = e.Head()
		}
	}
	e := audit.Entry{Index: int64(len(recs)), Time: time.Now().UTC(), Kind: audit.KindPlacement, Participant: "p9", Node: "cn-sha-1", NodeCountry: "CN"}
	if key != nil {
		e = audit.NewChain(key, meeting, head).Seal(e)
	} else {
		e.Meeting, e.Seq, e.PrevHash = meeting, head.Seq+1, head.Hash
		e.Hash, e.Sig = strings.Repeat("ab", 32), strings.Repeat("A", 86)+"=="
	}
	leaf, err := audit.LeafData(&e)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// An entry past the stored checkpoint that this control plane's key did
// not seal is never taken into the log: the start fails naming it.
func TestUnsignedRecordStopsStart(t *testing.T) {
	_, other, _ := ed25519.GenerateKey(nil)
	for _, tc := range []struct {
		name string
		key  ed25519.PrivateKey
		want string
	}{
		{"made-up hash", nil, "hash does not match the entry's content"},
		{"another key", other, "signature does not verify with this control plane's key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := loggedSome(t)
			ctx := context.Background()
			recs := env.records()
			last := recs[len(recs)-1].Seq
			if _, err := env.st.AppendAudit(ctx, "m1", forgeEntry(t, recs, "m1", tc.key), last); err != nil {
				t.Fatal(err)
			}
			_, err := env.server(policy.Policy{})
			if err == nil {
				t.Fatal("started on a log holding an entry it did not seal")
			}
			for _, want := range []string{fmt.Sprintf("stream sequence %d", last+1), tc.want, "the stored audit log was altered"} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

// A record another writer appended that this control plane's key did not
// seal fails the append that finds it, and nothing is appended after it.
func TestUnsignedRecordFailsAppend(t *testing.T) {
	env := newLogEnv(t)
	srv, err := env.server(policy.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	stop := env.run(srv)
	defer stop()
	appendSome(t, srv)
	ctx := context.Background()
	recs := env.records()
	forged, err := env.st.AppendAudit(ctx, "m1", forgeEntry(t, recs, "m1", nil), recs[len(recs)-1].Seq)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // and the next append too
		_, err = srv.audit.append(ctx, audit.Entry{Kind: audit.KindPlacement, Meeting: "m2", Participant: "p", Node: "de-fra", NodeCountry: "DE"})
		if err == nil {
			t.Fatal("appended after an entry this control plane did not seal")
		}
		for _, want := range []string{fmt.Sprintf("stream sequence %d", forged), "hash does not match"} {
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not say %q", err, want)
			}
		}
	}
	if last, err := env.st.AuditLastSeq(ctx); err != nil || last != forged {
		t.Fatalf("stream ends at %d (%v), want the forged record's %d", last, err, forged)
	}
	if n := srv.audit.tree.Size(); n != int64(len(recs)) {
		t.Fatalf("the tree holds %d entries, want the %d sealed ones", n, len(recs))
	}
}

// The control value of the checkpoint signed before cannot be deleted or
// replaced to have a truncated log extended.
func TestStoredCheckpointRequired(t *testing.T) {
	_, other, _ := ed25519.GenerateKey(nil)
	otherSigner, err := audit.NewSigner(audit.DefaultOrigin(other.Public().(ed25519.PublicKey)), other)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		value func(env *logEnv, cp audit.Checkpoint) []byte // nil: deleted
		want  string
	}{
		{"deleted", nil, "is missing"},
		{"junk", func(*logEnv, audit.Checkpoint) []byte { return []byte("junk") }, "is not a checkpoint signed with this control plane's key"},
		{"another key", func(_ *logEnv, cp audit.Checkpoint) []byte {
			cp.Origin = otherSigner.Name()
			signed, err := audit.SignCheckpoint(otherSigner, cp)
			if err != nil {
				t.Fatal(err)
			}
			return signed
		}, "is not a checkpoint signed with this control plane's key"},
		{"another origin", func(env *logEnv, cp audit.Checkpoint) []byte {
			s, err := audit.NewSigner("example.org/another-log", env.key)
			if err != nil {
				t.Fatal(err)
			}
			cp.Origin = s.Name()
			signed, err := audit.SignCheckpoint(s, cp)
			if err != nil {
				t.Fatal(err)
			}
			return signed
		}, "is not a checkpoint signed with this control plane's key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := loggedSome(t)
			// The log cut to 2 entries, and the checkpoint of 2 put in
			// place of the one of 6 (other keys sign what they like).
			env.replaceStream(env.records()[:2])
			var tree audit.Tree
			for _, r := range env.records() {
				tree.Append(r.Data)
			}
			root, err := tree.Root(2)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if tc.value == nil {
				kv, err := jetstream.New(env.nc)
				if err != nil {
					t.Fatal(err)
				}
				b, err := kv.KeyValue(ctx, cluster.BucketControl)
				if err != nil {
					t.Fatal(err)
				}
				if err := b.Delete(ctx, keyCheckpoint); err != nil {
					t.Fatal(err)
				}
			} else if err := env.st.PutControl(ctx, keyCheckpoint, tc.value(env, audit.Checkpoint{Size: 2, Root: root})); err != nil {
				t.Fatal(err)
			}
			_, err = env.server(policy.Policy{})
			if err == nil {
				t.Fatal("started on a truncated log without the checkpoint signed before")
			}
			for _, want := range []string{tc.want, "the stored audit log was altered", newLogHint} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

// A new log has its (empty) checkpoint stored before its first entry, so
// a control plane stopped before it signed one of that entry starts
// again; the entry past the checkpoint is checked as its own.
func TestNewLogStoresCheckpointFirst(t *testing.T) {
	env := newLogEnv(t)
	if _, err := env.server(policy.Policy{}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	signed, err := env.st.Control(ctx, keyCheckpoint)
	if err != nil {
		t.Fatalf("no checkpoint stored for a new log: %v", err)
	}
	if cp, err := audit.PeekCheckpoint(signed); err != nil || cp.Size != 0 {
		t.Fatalf("stored checkpoint %+v, %v; want one of size 0", cp, err)
	}
	if _, err := env.st.AppendAudit(ctx, "m1", forgeEntry(t, nil, "m1", env.key), 0); err != nil {
		t.Fatal(err)
	}
	srv, err := env.server(policy.Policy{})
	if err != nil {
		t.Fatalf("a log of one sealed entry past its checkpoint: %v", err)
	}
	if n := srv.audit.tree.Size(); n != 1 {
		t.Fatalf("rebuilt %d entries, want 1", n)
	}
}
