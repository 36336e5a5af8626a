package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/testcluster"
	"golang.org/x/mod/sumdb/note"
)

// fakeLog is a deployment's log built in the test: what a control plane
// (honest or not) holding key would serve.
type fakeLog struct {
	t       *testing.T
	key     ed25519.PrivateKey
	signer  note.Signer
	vkey    string
	tree    audit.Tree
	entries []audit.Entry
	chains  map[string]*audit.Chain
	start   time.Time
}

func newFakeLog(t *testing.T, key ed25519.PrivateKey, start time.Time) *fakeLog {
	pub := key.Public().(ed25519.PublicKey)
	origin := audit.DefaultOrigin(pub)
	s, err := audit.NewSigner(origin, key)
	if err != nil {
		t.Fatal(err)
	}
	vkey, _ := audit.VerifierKey(origin, pub)
	return &fakeLog{t: t, key: key, signer: s, vkey: vkey, chains: map[string]*audit.Chain{}, start: start}
}

func testSeedKey(seed byte) ed25519.PrivateKey {
	s := bytes.Repeat([]byte{seed}, ed25519.SeedSize)
	return ed25519.NewKeyFromSeed(s)
}

// grow adds n entries to meetings m1 and m2 (each created first).
func (l *fakeLog) grow(n int) {
	for _, m := range []string{"m1", "m2"} {
		if l.chains[m] == nil {
			l.add(m, audit.Entry{Kind: audit.KindMeetingCreated, PolicyHash: "ph-" + m})
		}
	}
	for i := range n {
		m := []string{"m1", "m2"}[i%2]
		l.add(m, audit.Entry{Kind: audit.KindPlacement, Participant: fmt.Sprint("p", i), Node: "de-fra", NodeCountry: "DE", PolicyHash: "ph-" + m})
	}
}

func (l *fakeLog) add(meeting string, e audit.Entry) {
	c := l.chains[meeting]
	if c == nil {
		c = audit.NewChain(l.key, meeting, audit.Head{})
		l.chains[meeting] = c
	}
	e.Index = int64(len(l.entries))
	e.Time = l.start.Add(time.Duration(e.Index) * time.Millisecond)
	e = c.Seal(e)
	leaf, _ := audit.LeafData(&e)
	l.tree.Append(leaf)
	l.entries = append(l.entries, e)
}

func (l *fakeLog) size() int64 { return int64(len(l.entries)) }

func (l *fakeLog) cp(n int64) audit.Checkpoint {
	root, err := l.tree.Root(n)
	if err != nil {
		l.t.Fatal(err)
	}
	return audit.Checkpoint{Origin: l.signer.Name(), Size: n, Root: root}
}

func (l *fakeLog) checkpoint(n int64) []byte {
	signed, err := audit.SignCheckpoint(l.signer, l.cp(n))
	if err != nil {
		l.t.Fatal(err)
	}
	return signed
}

// export writes the full export at size n (meeting "") or the meeting's
// pack.
func (l *fakeLog) export(meeting string, n int64) []byte {
	x := audit.Export{Header: audit.Header{VerifierKey: l.vkey, Meeting: meeting, Exported: l.start, Checkpoint: string(l.checkpoint(n))}}
	for _, e := range l.entries[:n] {
		if meeting != "" && e.Meeting != meeting {
			continue
		}
		x.Entries = append(x.Entries, e)
		if meeting != "" {
			p, _ := l.tree.ProveInclusion(e.Index, n)
			x.Proofs = append(x.Proofs, p)
		}
	}
	x.Trailer = audit.SignHeads(l.key, l.cp(n), meeting, audit.Heads(x.Entries))
	var buf bytes.Buffer
	if err := audit.WriteExport(&buf, x); err != nil {
		l.t.Fatal(err)
	}
	return buf.Bytes()
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAuditUsage(t *testing.T) {
	code, _, errOut := runCmd("audit")
	if code == 0 {
		t.Fatal("audit without a subcommand succeeded")
	}
	for _, sub := range []string{"audit export", "audit verify", "audit witness"} {
		if !strings.Contains(errOut, sub) {
			t.Errorf("usage lacks %q: %s", sub, errOut)
		}
	}
	if code, _, errOut := runCmd("audit", "frob"); code == 0 || !strings.Contains(errOut, `unknown subcommand "frob"`) {
		t.Fatalf("unknown subcommand: %d %q", code, errOut)
	}
}

func TestAuditVerifyExitCodes(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	l := newFakeLog(t, testSeedKey(1), start)
	l.grow(20)
	held := l.checkpoint(l.size())
	l.grow(4)
	good := writeTemp(t, "log.jsonl", l.export("", l.size()))
	heldFile := writeTemp(t, "bot.checkpoints", append(append(l.checkpoint(3), '\n'), held...))
	truncated := writeTemp(t, "truncated.jsonl", l.export("", 15))
	pack := writeTemp(t, "m1.jsonl", l.export("m1", l.size()))
	other := newFakeLog(t, testSeedKey(2), start)
	other.grow(24)
	resigned := writeTemp(t, "resigned.jsonl", other.export("", other.size()))
	edited := writeTemp(t, "edited.jsonl", bytes.Replace(l.export("", l.size()), []byte(`"node_country":"DE"`), []byte(`"node_country":"CN"`), 1))

	wkey := testSeedKey(7)
	wsigner, _ := audit.NewSigner("witness.example", wkey)
	wvkey, _ := audit.VerifierKey("witness.example", wkey.Public().(ed25519.PublicKey))
	v, _ := audit.NewVerifier(l.vkey)
	cosigned, err := audit.Cosign(held, v, wsigner)
	if err != nil {
		t.Fatal(err)
	}
	cosignedFile := writeTemp(t, "witness.latest", cosigned)

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no key", []string{good}, 2, "a key is required"},
		{"bad key", []string{good, "--public-key", "AAAA"}, 2, "--public-key"},
		{"no file", []string{"--public-key", l.vkey}, 2, "want one export file"},
		{"missing file", []string{filepath.Join(t.TempDir(), "nope"), "--public-key", l.vkey}, 2, "no such file"},
		{"missing checkpoint file", []string{good, "--public-key", l.vkey, "--checkpoint", "/nonexistent"}, 2, "--checkpoint"},
		{"bad flag", []string{good, "--frob"}, 2, "frob"},
		{"good", []string{good, "--public-key", l.vkey}, 0, "ok: 26 entries in 2 chain(s)"},
		{"good, flags first", []string{"--public-key", l.vkey, "--checkpoint", heldFile, good}, 0, "consistent with 2 held checkpoint(s)"},
		{"pack", []string{pack, "--public-key", l.vkey}, 0, `meeting "m1"`},
		{"pack without proofs to held checkpoints", []string{pack, "--public-key", l.vkey, "--checkpoint", heldFile}, 1, "no consistency proof from size 3 to 26"},
		{"trust the file's key", []string{resigned, "--trust-file-key"}, 0, "key was taken from the file"},
		{"older or truncated vs a held checkpoint", []string{truncated, "--public-key", l.vkey, "--checkpoint", heldFile}, 1, "FAILED: the export has 15 entries, the checkpoint " + heldFile + "#2 has 22: an export older than the checkpoint, or of a log truncated since, cannot be checked against it; export again"},
		{"re-signed with another key", []string{resigned, "--public-key", l.vkey}, 1, "FAILED"},
		{"edited", []string{edited, "--public-key", l.vkey}, 1, "FAILED: audit: line 4"},
		{"witness cosigned", []string{good, "--public-key", l.vkey, "--checkpoint", cosignedFile, "--witness-key", wvkey}, 0, "cosigned by witness.example"},
		{"witness missing", []string{good, "--public-key", l.vkey, "--checkpoint", heldFile, "--witness-key", wvkey}, 1, "no checkpoint cosigned by witness witness.example"},
		{"bad witness key", []string{good, "--public-key", l.vkey, "--witness-key", "x"}, 2, "--witness-key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCmd(append([]string{"audit", "verify"}, tt.args...)...)
			if code != tt.code || !strings.Contains(out+errOut, tt.want) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s\nwant %q", code, tt.code, out, errOut, tt.want)
			}
		})
	}
}

// fakeServer serves a fakeLog's checkpoint, consistency proofs and config;
// the test swaps the log to play a server that rebuilt it.
type fakeServer struct {
	mu  sync.Mutex
	log *fakeLog
}

func (s *fakeServer) set(l *fakeLog) { s.mu.Lock(); s.log = l; s.mu.Unlock() }

func (s *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.log
	switch r.URL.Path {
	case api.PathConfig:
		json.NewEncoder(w).Encode(api.Config{AuditVerifierKey: l.vkey})
	case api.PathAuditCheckpoint:
		w.Write(l.checkpoint(l.size()))
	case api.PathAuditConsistency:
		from, _ := strconv.ParseInt(r.URL.Query().Get("from"), 10, 64)
		to, _ := strconv.ParseInt(r.URL.Query().Get("to"), 10, 64)
		p, err := l.tree.ProveConsistency(from, to)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"error": err.Error(), "code": "bad_request"})
			return
		}
		json.NewEncoder(w).Encode(api.ConsistencyProof{From: from, To: to, Proof: p})
	default:
		http.NotFound(w, r)
	}
}

func TestAuditWitnessAgainstRebuiltLog(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	key := testSeedKey(1)
	l := newFakeLog(t, key, start)
	l.grow(10)
	srv := &fakeServer{log: l}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	dir := filepath.Join(t.TempDir(), "w")

	code, out, errOut := runCmd("audit", "witness", "--server", hs.URL, "--state", dir, "--once")
	if code != 0 || !strings.Contains(errOut, "trusting the server's log key") || !strings.Contains(out, "witness key: ") {
		t.Fatalf("first round: %d\n%s\n%s", code, out, errOut)
	}
	if fi, err := os.Stat(filepath.Join(dir, witnessKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("witness key file: %v %v", fi, err)
	}
	wvkey, err := os.ReadFile(filepath.Join(dir, witnessVKeyFile))
	if err != nil || !strings.Contains(out, strings.TrimSpace(string(wvkey))) {
		t.Fatalf("witness.vkey %q, printed %q, %v", wvkey, out, err)
	}
	// Nothing new: nothing appended.
	if code, _, errOut := runCmd("audit", "witness", "--server", hs.URL, "--state", dir, "--once"); code != 0 || !strings.Contains(errOut, "unchanged") {
		t.Fatalf("unchanged round: %d %s", code, errOut)
	}
	l.grow(7)
	if code, _, errOut := runCmd("audit", "witness", "--server", hs.URL, "--state", dir, "--once"); code != 0 || !strings.Contains(errOut, "extends the one of 12") {
		t.Fatalf("second round: %d %s", code, errOut)
	}
	// The history holds both checkpoints, each cosigned by the witness.
	hist, _ := os.ReadFile(filepath.Join(dir, witnessHistory))
	notes, err := audit.SplitCheckpoints(hist)
	if err != nil || len(notes) != 2 {
		t.Fatalf("history: %d notes, %v", len(notes), err)
	}
	lv, _ := audit.NewVerifier(l.vkey)
	wv, err := audit.NewVerifier(string(wvkey))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range notes {
		if _, err := audit.OpenCheckpoint(n, lv, wv); err != nil {
			t.Fatalf("history note: %v", err)
		}
	}
	// verify takes the witness's latest and key.
	export := writeTemp(t, "log.jsonl", l.export("", l.size()))
	if code, out, _ := runCmd("audit", "verify", export, "--public-key", l.vkey, "--checkpoint", filepath.Join(dir, witnessLatest), "--witness-key", string(wvkey)); code != 0 {
		t.Fatalf("verify with the witness: %d %s", code, out)
	}

	// The stream deleted and the log rebuilt with the same key, grown
	// past the size the witness holds.
	rebuilt := newFakeLog(t, key, start.Add(time.Hour))
	rebuilt.grow(30)
	srv.set(rebuilt)
	code, _, errOut = runCmd("audit", "witness", "--server", hs.URL, "--state", dir, "--once")
	if code != 1 || !strings.Contains(errOut, "ALARM: ") || !strings.Contains(errOut, "does not extend") {
		t.Fatalf("rebuilt log: %d %s", code, errOut)
	}
	conflicts, _ := filepath.Glob(filepath.Join(dir, "conflict-*.txt"))
	if len(conflicts) != 1 {
		t.Fatalf("conflict files: %v", conflicts)
	}
	evidence, _ := os.ReadFile(conflicts[0])
	latest, _ := os.ReadFile(filepath.Join(dir, witnessLatest))
	if !bytes.Contains(evidence, latest) || !bytes.Contains(evidence, rebuilt.checkpoint(rebuilt.size())) {
		t.Fatalf("the evidence lacks a checkpoint:\n%s", evidence)
	}
	// The held checkpoint was not replaced.
	if after, _ := os.ReadFile(filepath.Join(dir, witnessLatest)); !bytes.Equal(after, latest) {
		t.Fatal("the witness moved on after an alarm")
	}
	// Started again on the same state, the witness refuses to run,
	// naming the evidence, and cosigns nothing.
	code, _, errOut = runCmd("audit", "witness", "--server", hs.URL, "--state", dir, "--once")
	if code != 1 || !strings.Contains(errOut, conflicts[0]) || !strings.Contains(errOut, "--resume-after-conflict") || strings.Contains(errOut, "ALARM") {
		t.Fatalf("restart after an alarm: %d %s", code, errOut)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, witnessLatest)); !bytes.Equal(after, latest) {
		t.Fatal("the witness moved on when started again after an alarm")
	}
	// Told to resume, it checks again: a smaller rebuilt log is another
	// alarm, kept in a file of its own.
	small := newFakeLog(t, key, start.Add(2*time.Hour))
	small.grow(1)
	srv.set(small)
	if code, _, errOut := runCmd("audit", "witness", "--server", hs.URL, "--state", dir, "--once", "--resume-after-conflict"); code != 1 || !strings.Contains(errOut, "ALARM: ") || !strings.Contains(errOut, "fewer") {
		t.Fatalf("truncated log: %d %s", code, errOut)
	}
	if c, _ := filepath.Glob(filepath.Join(dir, "conflict-*.txt")); len(c) != 2 {
		t.Fatalf("conflict files after a second alarm: %v", c)
	}
	// A log signed with another key is no evidence against the pinned
	// one: a warning, no alarm, no conflict file.
	srv.set(newFakeLog(t, testSeedKey(3), start))
	srv.log.grow(40)
	if code, _, errOut := runCmd("audit", "witness", "--server", hs.URL, "--state", dir, "--once", "--resume-after-conflict"); code != 1 || strings.Contains(errOut, "ALARM") || !strings.Contains(errOut, "WARNING: ") || !strings.Contains(errOut, "not a checkpoint signed by the pinned log key") {
		t.Fatalf("another key: %d %s", code, errOut)
	}
	if c, _ := filepath.Glob(filepath.Join(dir, "conflict-*.txt")); len(c) != 2 {
		t.Fatalf("conflict files after an unsigned answer: %v", c)
	}
	// Another pinned key for the same state is refused.
	if code, _, errOut := runCmd("audit", "witness", "--server", hs.URL, "--state", dir, "--once", "--resume-after-conflict", "--log-key", srv.log.vkey); code != 1 || !strings.Contains(errOut, "differs from the key pinned") {
		t.Fatalf("--log-key of another log: %d %s", code, errOut)
	}
	if code, _, errOut := runCmd("audit", "witness", "--server", hs.URL, "--once"); code != 1 || !strings.Contains(errOut, "--state") {
		t.Fatalf("no state: %d %s", code, errOut)
	}
}

func TestFlagsFirst(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.String("public-key", "", "")
	fs.Bool("trust-file-key", false, "")
	var l listFlag
	fs.Var(&l, "checkpoint", "")
	for _, tc := range []struct{ in, want string }{
		{"f --public-key k", "--public-key k -- f"},
		{"--trust-file-key f", "--trust-file-key -- f"},
		{"f --checkpoint a --checkpoint=b -", "--checkpoint a --checkpoint=b -- f -"},
		{"-- --x", "-- --x"},
		{"f --unknown", "--unknown -- f"},
	} {
		if got := strings.Join(flagsFirst(fs, strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("flagsFirst(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Without --once the witness keeps following the log, one round every
// --every, until stopped; a round that cannot reach the server is retried.
func TestAuditWitnessFollows(t *testing.T) {
	l := newFakeLog(t, testSeedKey(1), time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	l.grow(4)
	srv := &fakeServer{log: l}
	var mu sync.Mutex
	down := true // the first requests fail
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		d := down
		mu.Unlock()
		if d && r.URL.Path == api.PathAuditCheckpoint {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		srv.ServeHTTP(w, r)
	}))
	defer hs.Close()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"audit", "witness", "--server", hs.URL, "--state", dir, "--log-key", l.vkey, "--every", "5ms"}, &out, &errOut)
	}()
	testcluster.WaitFor(t, 10*time.Second, "a failed round", func() bool { return strings.Contains(errOut.String(), "trying again") })
	mu.Lock()
	down = false
	mu.Unlock()
	rounds := func() int {
		data, _ := os.ReadFile(filepath.Join(dir, witnessHistory))
		notes, _ := audit.SplitCheckpoints(data)
		return len(notes)
	}
	for want := 1; want <= 3; want++ {
		testcluster.WaitFor(t, 10*time.Second, fmt.Sprintf("%d checkpoints cosigned", want), func() bool { return rounds() >= want })
		srv.mu.Lock()
		l.grow(3)
		srv.mu.Unlock()
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
}

// Answers that are no evidence — not a checkpoint the pinned key signed, a
// failed proof request, a proof of other sizes — make the witness warn and
// try again, never alarm; a signed checkpoint whose proof fails is an
// alarm.
func TestAuditWitnessRetriesUnsignedAnswers(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	l := newFakeLog(t, testSeedKey(1), start)
	l.grow(4)
	srv := &fakeServer{log: l}
	var mu sync.Mutex
	var tamper func(w http.ResponseWriter, r *http.Request) bool // true: answered
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		f := tamper
		mu.Unlock()
		if f != nil && f(w, r) {
			return
		}
		srv.ServeHTTP(w, r)
	}))
	defer hs.Close()
	setTamper := func(f func(w http.ResponseWriter, r *http.Request) bool) { mu.Lock(); tamper = f; mu.Unlock() }
	dir := t.TempDir()
	witness := func() (int, string) {
		code, _, errOut := runCmd("audit", "witness", "--server", hs.URL, "--state", dir, "--log-key", l.vkey, "--once")
		return code, errOut
	}
	if code, errOut := witness(); code != 0 {
		t.Fatalf("first round: %d %s", code, errOut)
	}
	latest, _ := os.ReadFile(filepath.Join(dir, witnessLatest))
	srv.mu.Lock()
	l.grow(5)
	srv.mu.Unlock()
	signedNow := func() []byte { srv.mu.Lock(); defer srv.mu.Unlock(); return l.checkpoint(l.size()) }
	other := newFakeLog(t, testSeedKey(7), start)
	other.grow(20)
	body := func(path string, b []byte) func(w http.ResponseWriter, r *http.Request) bool {
		return func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != path {
				return false
			}
			w.Write(b)
			return true
		}
	}
	for _, tc := range []struct {
		name, want string
		tamper     func(w http.ResponseWriter, r *http.Request) bool
	}{
		{"garbage", "not a checkpoint signed by the pinned log key", body(api.PathAuditCheckpoint, []byte("<html>proxy error</html>"))},
		{"signature stripped", "not a checkpoint signed by the pinned log key", body(api.PathAuditCheckpoint, bytes.Replace(signedNow(), []byte("— "), []byte("— x"), 1))},
		{"another key", "not a checkpoint signed by the pinned log key", body(api.PathAuditCheckpoint, other.checkpoint(other.size()))},
		{"proof request fails", "consistency proof from", func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != api.PathAuditConsistency {
				return false
			}
			http.Error(w, "busy", http.StatusInternalServerError)
			return true
		}},
		{"proof of other sizes", "got one from 1 to 10", func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != api.PathAuditConsistency {
				return false
			}
			srv.mu.Lock()
			p, _ := l.tree.ProveConsistency(1, 10)
			srv.mu.Unlock()
			json.NewEncoder(w).Encode(api.ConsistencyProof{From: 1, To: 10, Proof: p})
			return true
		}},
	} {
		setTamper(tc.tamper)
		code, errOut := witness()
		if code != 1 || strings.Contains(errOut, "ALARM") || !strings.Contains(errOut, "WARNING: ") || !strings.Contains(errOut, tc.want) {
			t.Fatalf("%s: %d %s", tc.name, code, errOut)
		}
		if c, _ := filepath.Glob(filepath.Join(dir, "conflict-*.txt")); len(c) != 0 {
			t.Fatalf("%s: conflict file %v", tc.name, c)
		}
		if after, _ := os.ReadFile(filepath.Join(dir, witnessLatest)); !bytes.Equal(after, latest) {
			t.Fatalf("%s: the witness cosigned", tc.name)
		}
	}
	// Following the log, it warns, tries again and cosigns once the
	// answers are right.
	setTamper(body(api.PathAuditCheckpoint, []byte("junk")))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"audit", "witness", "--server", hs.URL, "--state", dir, "--every", "5ms"}, &out, &errOut)
	}()
	testcluster.WaitFor(t, 10*time.Second, "a warning", func() bool { return strings.Count(errOut.String(), "WARNING: ") >= 2 })
	setTamper(nil)
	testcluster.WaitFor(t, 10*time.Second, "a cosigned checkpoint", func() bool { return strings.Contains(errOut.String(), "; cosigned") })
	cancel()
	if code := <-done; code != 0 || strings.Contains(errOut.String(), "ALARM") {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	// A proof for the signed checkpoint that does not hold is an alarm.
	srv.mu.Lock()
	from := l.size()
	l.grow(3)
	to := l.size()
	srv.mu.Unlock()
	setTamper(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != api.PathAuditConsistency {
			return false
		}
		srv.mu.Lock()
		p, _ := l.tree.ProveConsistency(from, to)
		srv.mu.Unlock()
		p[0][0] ^= 1
		json.NewEncoder(w).Encode(api.ConsistencyProof{From: from, To: to, Proof: p})
		return true
	})
	if code, errOut := witness(); code != 1 || !strings.Contains(errOut, "ALARM: ") {
		t.Fatalf("failing proof: %d %s", code, errOut)
	}
	if c, _ := filepath.Glob(filepath.Join(dir, "conflict-*.txt")); len(c) != 1 {
		t.Fatalf("conflict files after a failing proof: %v", c)
	}
}
