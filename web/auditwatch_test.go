package web_test

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/web"
)

// scriptedLog is a deployment's transparency log as the test writes it:
// the control plane's audit endpoints over an audit.Tree, whose history
// the test can rewrite (a compromised control plane re-signing with its
// real key).
type scriptedLog struct {
	t      *testing.T
	signer note.Signer
	key    ed25519.PrivateKey
	vkey   string
	secret string

	mu      sync.Mutex
	entries []audit.Entry
	// listed are entries of other meetings the log lists among a
	// meeting's (a lying control plane), by meeting and index.
	listed map[string]map[int64]bool
	tree   *audit.Tree
	note   []byte
}

func newScriptedLog(t *testing.T) *scriptedLog {
	pub, key, _ := ed25519.GenerateKey(nil)
	origin := audit.DefaultOrigin(pub)
	signer, err := audit.NewSigner(origin, key)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := audit.VerifierKey(origin, pub)
	if err != nil {
		t.Fatal(err)
	}
	l := &scriptedLog{t: t, signer: signer, key: key, vkey: vkey, secret: "join-secret", tree: &audit.Tree{}}
	l.sign()
	return l
}

// add appends an entry (its index and time filled in, sealed in its
// meeting's chain with the log's key) and signs a checkpoint of the
// grown log; it returns the entry's index.
func (l *scriptedLog) add(e audit.Entry) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.appendLocked(e, true)
}

// addEdited appends an entry sealed as add does, then edited.
func (l *scriptedLog) addEdited(e audit.Entry, edit func(*audit.Entry)) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	idx := l.appendLocked(e, true)
	edit(&l.entries[idx])
	l.tree = &audit.Tree{}
	for i := range l.entries {
		leaf, err := audit.LeafData(&l.entries[i])
		if err != nil {
			l.t.Fatal(err)
		}
		l.tree.Append(leaf)
	}
	l.signLocked()
	return idx
}

// list has the log list entry index among meeting's entries.
func (l *scriptedLog) list(meeting string, index int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.listed == nil {
		l.listed = make(map[string]map[int64]bool)
	}
	if l.listed[meeting] == nil {
		l.listed[meeting] = make(map[int64]bool)
	}
	l.listed[meeting][index] = true
}

// appendLocked appends e, sealed if seal, else as it is.
func (l *scriptedLog) appendLocked(e audit.Entry, seal bool) int64 {
	e.Index = int64(len(l.entries))
	if seal {
		var head audit.Head
		for _, o := range l.entries {
			if o.Meeting == e.Meeting {
				head = o.Head()
			}
		}
		e.Time = time.Date(2026, 12, 2, 3, 0, 0, int(e.Index)*1000, time.UTC)
		e = audit.NewChain(l.key, e.Meeting, head).Seal(e)
	}
	leaf, err := audit.LeafData(&e)
	if err != nil {
		l.t.Fatal(err)
	}
	l.entries = append(l.entries, e)
	l.tree.Append(leaf)
	l.signLocked()
	return e.Index
}

// keep rewrites the log to its first n entries, as if the rest had never
// been, and signs a checkpoint of it.
func (l *scriptedLog) keep(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = l.entries[:n]
	l.tree = &audit.Tree{}
	for i := range l.entries {
		leaf, _ := audit.LeafData(&l.entries[i])
		l.tree.Append(leaf)
	}
	l.signLocked()
}

func (l *scriptedLog) sign() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.signLocked()
}

func (l *scriptedLog) signLocked() {
	n := l.tree.Size()
	root, err := l.tree.Root(n)
	if err != nil {
		l.t.Fatal(err)
	}
	l.note, err = audit.SignCheckpoint(l.signer, audit.Checkpoint{Origin: l.signer.Name(), Size: n, Root: root})
	if err != nil {
		l.t.Fatal(err)
	}
}

func (l *scriptedLog) checkpoint() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.note)
}

// joinAnswer is what a join placed on node (in country) would get: the
// entry is added after the checkpoint the answer carries, as the control
// plane does.
func (l *scriptedLog) joinAnswer(meeting, pid, node, country string, logged audit.Entry) string {
	cp := l.checkpoint()
	logged.Kind, logged.Meeting, logged.Participant = audit.KindPlacement, meeting, pid
	return l.answer(pid, node, country, cp, l.add(logged))
}

// answer is a join answer for pid on node that names entry idx and
// carries checkpoint cp.
func (l *scriptedLog) answer(pid, node, country, cp string, idx int64) string {
	b, _ := json.Marshal(map[string]any{
		"participant_id": pid,
		"node":           map[string]string{"id": node, "country": country},
		"audit":          api.JoinAudit{Checkpoint: cp, VerifierKey: l.vkey, Index: idx, EveryMS: 50},
	})
	return string(b)
}

func (l *scriptedLog) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler(nil))
	mux.HandleFunc("/auditwatch-test", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(auditwatchPage))
	})
	num := func(r *http.Request, k string) int64 {
		n, _ := strconv.ParseInt(r.URL.Query().Get(k), 10, 64)
		return n
	}
	mux.HandleFunc("GET "+api.PathAuditCheckpoint, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(l.checkpoint()))
	})
	mux.HandleFunc("GET "+api.PathAuditProof, func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		defer l.mu.Unlock()
		p, err := l.tree.ProveInclusion(num(r, "index"), num(r, "size"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(api.InclusionProof{Index: num(r, "index"), Size: num(r, "size"), Proof: nonNilProof(p)})
	})
	mux.HandleFunc("GET "+api.PathAuditConsistency, func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		defer l.mu.Unlock()
		from, to := num(r, "from"), num(r, "to")
		var p api.ConsistencyProof
		p.From, p.To, p.Proof = from, to, nonNilProof(nil)
		if from > 0 && from < to {
			proof, err := l.tree.ProveConsistency(from, to)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			p.Proof = proof
		}
		_ = json.NewEncoder(w).Encode(p)
	})
	mux.HandleFunc("GET "+api.PathAuditEntries, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(api.AuthHeader) != "Bearer "+l.secret {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		limit := int(num(r, "limit"))
		if limit == 0 {
			limit = api.AuditPageMax
		}
		page := api.AuditPage{Entries: []audit.Entry{}, Size: l.tree.Size(), Next: num(r, "start")}
		for _, e := range l.entries[min(int(num(r, "start")), len(l.entries)):] {
			if m := r.URL.Query().Get("meeting"); e.Meeting != m && !l.listed[m][e.Index] {
				continue
			}
			if len(page.Entries) == limit {
				page.More = true
				break
			}
			page.Entries = append(page.Entries, e)
			page.Next = e.Index + 1
		}
		_ = json.NewEncoder(w).Encode(page)
	})
	return mux
}

func nonNilProof(p []tlog.Hash) []tlog.Hash {
	if p == nil {
		return []tlog.Hash{}
	}
	return p
}

// auditwatchPage loads auditwatch.js; the test makes watches with
// window.watch(meeting) and keeps them in window.watches.
const auditwatchPage = `<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><script type="module">
import { AuditWatch } from '/js/auditwatch.js';
window.watches = {};
window.watch = (meeting, secret) => (window.watches[meeting] = new AuditWatch({ meeting, token: () => secret }));
window.stored = (meeting) => new Promise((resolve, reject) => {
	const req = indexedDB.open('oakmeet-audit', 1);
	req.onsuccess = () => {
		const r = req.result.transaction('meetings').objectStore('meetings').get(meeting);
		r.onsuccess = () => resolve(r.result ?? null);
		r.onerror = () => reject(r.error);
	};
	req.onerror = () => reject(req.error);
});
window.ready = true;
</script>`

// watchState is a watch's state, for a test that timed out on it.
func watchState(meeting string) string {
	return fmt.Sprintf(`(() => { const w = window.watches[%[1]q]; return JSON.stringify({state: w?.state, reason: w?.reason, size: w?.size, own: w?.own, policy: w?.policyChanges, held: w?.checkpoints().length}); })()`, meeting)
}

// TestAuditWatchHoldsTheLogToAccount drives auditwatch.js against a
// scripted control plane: an honest log that grows is consistent, holds
// the page's placement and its meeting's policy change, and is kept in
// IndexedDB; a log truncated and re-signed with the real key, seen by
// the same page and after a reload, is an alarm; so is a placement entry
// naming another node than the one the page was told, a log key other
// than the one pinned (for the meeting, or for the deployment when a new
// meeting names another), and (a fork) a checkpoint of the honest log
// offered to a page that only ever saw the rewritten one.
func TestAuditWatchHoldsTheLogToAccount(t *testing.T) {
	b := newBrowser(t, "auditwatch", browserOpts{})
	l := newScriptedLog(t)
	srv := httptest.NewServer(l.handler())
	defer srv.Close()
	l.add(audit.Entry{Kind: audit.KindMeetingCreated, Meeting: "m-1", PolicyHash: "h1"})
	l.add(audit.Entry{Kind: audit.KindMeetingCreated, Meeting: "m-other"})
	b.navigate(srv.URL + "/auditwatch-test")
	b.waitJS(10*time.Second, "auditwatch.js to load", `window.ready === true`, `document.body.textContent`)

	answer := l.joinAnswer("m-1", "p-1", "de-fra", "DE", audit.Entry{Node: "de-fra", NodeCountry: "DE"})
	evalJS[bool](b, `(window.watch('m-1', 'join-secret').joined(`+answer+`), true)`)
	b.waitJS(5*time.Second, "consistent, the placement in it", `window.watches['m-1'].state === 'consistent' && window.watches['m-1'].ownIncluded`, watchState("m-1"))
	l.add(audit.Entry{Kind: audit.KindPolicyChange, Meeting: "m-1", PolicyHash: "h2", Reason: "host: <block> \"CN\" \u2028"})
	for i := range 5 {
		l.add(audit.Entry{Kind: audit.KindPlacement, Meeting: fmt.Sprintf("m-%d", i%2), Node: "us-iad", NodeCountry: "US"})
	}
	b.waitJS(5*time.Second, "the policy change in it, the log grown to 9", `window.watches['m-1'].policyChanges === 1 && window.watches['m-1'].size === 9`, watchState("m-1"))
	held := evalJS[[]string](b, `window.stored('m-1').then((r) => r.checkpoints)`)
	if len(held) < 2 || !strings.HasPrefix(held[0], l.signer.Name()+"\n2\n") || held[len(held)-1] != l.checkpoint() {
		t.Errorf("IndexedDB holds %q; want the join's checkpoint of 2 entries first and the newest (%q) last", held, l.checkpoint())
	}
	if got := evalJS[string](b, `window.stored('m-1').then((r) => r.verifierKey)`); got != l.vkey {
		t.Errorf("pinned key %q, want %q", got, l.vkey)
	}
	honest := l.checkpoint()
	// A join answer built before the newest checkpoint was signed (its
	// checkpoint of 2 entries, handled after the poll that brought 9) is
	// no alarm: the tree of 9 extends it.
	evalJS[bool](b, `(window.watches['m-1'].joined(`+answer+`), true)`)
	b.waitJS(5*time.Second, "the older answer checked", `window.watches['m-1'].queue.then(() => true)`, watchState("m-1"))
	if st := evalJS[string](b, `window.watches['m-1'].state`); st != "consistent" {
		t.Fatalf("an older join answer's checkpoint: %s (%s)", st, evalJS[string](b, `window.watches['m-1'].reason`))
	}

	// Truncated and re-signed: the page that held 9 entries alarms.
	l.keep(4)
	b.waitJS(5*time.Second, "the alarm", `window.watches['m-1'].state === 'inconsistent'`, watchState("m-1"))
	if r := evalJS[string](b, `window.watches['m-1'].reason`); !strings.Contains(r, "4 entries, fewer than the 9") {
		t.Errorf("reason %q", r)
	}
	// The rewritten log grows on, past what the page held: a reload (a
	// new watch from IndexedDB) still alarms, now as a tree that does not
	// extend the held one.
	for range 8 {
		l.add(audit.Entry{Kind: audit.KindPlacement, Meeting: "m-other", Node: "jp-tyo", NodeCountry: "JP"})
	}
	b.navigate(srv.URL + "/auditwatch-test")
	b.waitJS(10*time.Second, "auditwatch.js to load again", `window.ready === true`, `document.body.textContent`)
	answer = l.joinAnswer("m-1", "p-2", "de-fra", "DE", audit.Entry{Node: "de-fra", NodeCountry: "DE"})
	evalJS[bool](b, `(window.watch('m-1', 'join-secret').joined(`+answer+`), true)`)
	b.waitJS(5*time.Second, "the alarm after a reload", `window.watches['m-1'].state === 'inconsistent'`, watchState("m-1"))
	if r := evalJS[string](b, `window.watches['m-1'].reason`); !strings.Contains(r, "does not extend the one of size 9") {
		t.Errorf("reason after the reload %q", r)
	}

	// A fork: a page that only saw the rewritten log is consistent with
	// it, until it is offered the honest checkpoint another page held.
	evalJS[bool](b, `(window.watch('m-fork', 'join-secret').joined(`+l.joinAnswer("m-fork", "p-3", "de-fra", "DE", audit.Entry{Node: "de-fra", NodeCountry: "DE"})+`), true)`)
	b.waitJS(5*time.Second, "the forked view consistent", `window.watches['m-fork'].state === 'consistent' && window.watches['m-fork'].ownIncluded`, watchState("m-fork"))
	got := evalJS[map[string]any](b, `window.watches['m-fork'].offer(`+jsString(honest)+`)`)
	if got["ok"] != false || !strings.Contains(fmt.Sprint(got["reason"]), "another party") {
		t.Errorf("offer of the honest checkpoint to the forked view: %v", got)
	}
	b.waitJS(time.Second, "the fork alarm", `window.watches['m-fork'].state === 'inconsistent'`, watchState("m-fork"))
	// Its own checkpoints offered back are consistent.
	evalJS[bool](b, `(window.watch('m-fork2', 'join-secret').joined(`+l.joinAnswer("m-fork2", "p-4", "de-fra", "DE", audit.Entry{Node: "de-fra", NodeCountry: "DE"})+`), true)`)
	b.waitJS(5*time.Second, "a second view consistent", `window.watches['m-fork2'].state === 'consistent' && window.watches['m-fork2'].ownIncluded`, watchState("m-fork2"))
	if got := evalJS[map[string]any](b, `window.watches['m-fork2'].offer(window.watches['m-fork2'].checkpoints()[0])`); got["ok"] != true {
		t.Errorf("offer of its own first checkpoint: %v", got)
	}

	// A placement entry naming another node than the page was told.
	evalJS[bool](b, `(window.watch('m-moved', 'join-secret').joined(`+l.joinAnswer("m-moved", "p-5", "de-fra", "DE", audit.Entry{Node: "cn-pek", NodeCountry: "CN"})+`), true)`)
	b.waitJS(5*time.Second, "the misplacement alarm", `window.watches['m-moved'].state === 'inconsistent'`, watchState("m-moved"))
	if r := evalJS[string](b, `window.watches['m-moved'].reason`); !strings.Contains(r, "cn-pek (CN)") || !strings.Contains(r, "de-fra (DE)") {
		t.Errorf("misplacement reason %q", r)
	}

	// One deployment has one log: a meeting this browser never saw,
	// whose join answer names another log key than the one it holds for
	// the deployment, is an alarm too (a control plane that gives one
	// meeting a log of its own).
	other := newScriptedLog(t)
	evalJS[bool](b, `(window.watch('m-new', 'join-secret').joined(`+other.joinAnswer("m-new", "p-8", "de-fra", "DE", audit.Entry{Node: "de-fra", NodeCountry: "DE"})+`), true)`)
	b.waitJS(5*time.Second, "the deployment key alarm", `window.watches['m-new'].state === 'inconsistent' && window.watches['m-new'].reason.includes('for this meeting and deployment')`, watchState("m-new"))
	if got := evalJS[string](b, `window.stored('').then((r) => r.verifierKey)`); got != l.vkey {
		t.Errorf("the deployment's pinned key %q, want %q", got, l.vkey)
	}

	// Another log key for a meeting whose key is pinned.
	evalJS[bool](b, `(window.watch('m-1', 'join-secret').joined(`+other.joinAnswer("m-1", "p-6", "de-fra", "DE", audit.Entry{Node: "de-fra", NodeCountry: "DE"})+`), true)`)
	b.waitJS(5*time.Second, "the key alarm", `window.watches['m-1'].state === 'inconsistent' && window.watches['m-1'].reason.includes('another key')`, watchState("m-1"))
	// The log cut short again: a page that saw only the short log, offered
	// a larger checkpoint the log signed, finds the log's latest smaller.
	l.keep(3)
	evalJS[bool](b, `(window.watch('m-short', 'join-secret').joined(`+l.joinAnswer("m-short", "p-7", "de-fra", "DE", audit.Entry{Node: "de-fra", NodeCountry: "DE"})+`), true)`)
	b.waitJS(5*time.Second, "the short view consistent", `window.watches['m-short'].state === 'consistent' && window.watches['m-short'].ownIncluded`, watchState("m-short"))
	got = evalJS[map[string]any](b, `window.watches['m-short'].offer(`+jsString(honest)+`)`)
	if got["ok"] != false || !strings.Contains(fmt.Sprint(got["reason"]), "yet its latest checkpoint has 4") {
		t.Errorf("offer of a larger checkpoint to the short view: %v", got)
	}
	// A proof asked for just as the log was cut short may be refused.
	b.checkConsole(http.StatusBadRequest)
}

// TestAuditWatchChecksItsOwnEntries: the page takes an entry as its own
// placement, or as its meeting's policy change, only if it is of its
// meeting, names its participant exactly and the node it was told, and
// is signed by the log's key in its chain. A control plane that lists
// another meeting's placement (no participant, the right node) among
// this meeting's entries and names it in the join answer, logs the
// placement without the participant, edits it after sealing, signs it
// with something else, or lists another meeting's policy change, is an
// alarm; the same log honest is consistent.
func TestAuditWatchChecksItsOwnEntries(t *testing.T) {
	b := newBrowser(t, "auditwatch-own", browserOpts{})
	l := newScriptedLog(t)
	srv := httptest.NewServer(l.handler())
	defer srv.Close()
	for _, m := range []string{"m-a", "m-b", "m-c", "m-d", "m-e", "m-f"} {
		l.add(audit.Entry{Kind: audit.KindMeetingCreated, Meeting: m, PolicyHash: "h1"})
	}
	b.navigate(srv.URL + "/auditwatch-test")
	b.waitJS(10*time.Second, "auditwatch.js to load", `window.ready === true`, `document.body.textContent`)
	join := func(meeting, answer string) {
		evalJS[bool](b, `(window.watch(`+jsString(meeting)+`, 'join-secret').joined(`+answer+`), true)`)
	}
	placed := audit.Entry{Kind: audit.KindPlacement, Node: "de-fra", NodeCountry: "DE"}
	with := func(meeting, pid string) audit.Entry {
		e := placed
		e.Meeting, e.Participant = meeting, pid
		return e
	}

	// A control plane that lists another meeting's entry as this one's:
	// meeting m-b's placement on the node the page was told, with no
	// participant, listed among m-a's entries.
	cp := l.checkpoint()
	other := l.add(with("m-b", ""))
	l.list("m-a", other)
	join("m-a", l.answer("p-a", "de-fra", "DE", cp, other))
	// Its own meeting's placement with no participant.
	cp = l.checkpoint()
	join("m-c", l.answer("p-c", "de-fra", "DE", cp, l.add(with("m-c", ""))))
	// Edited after it was sealed: the placement was in Japan.
	cp = l.checkpoint()
	jp := with("m-d", "p-d")
	jp.Node, jp.NodeCountry = "jp-tyo", "JP"
	join("m-d", l.answer("p-d", "de-fra", "DE", cp, l.addEdited(jp, func(e *audit.Entry) { e.Node, e.NodeCountry = "de-fra", "DE" })))
	// Another entry's signature.
	cp = l.checkpoint()
	join("m-e", l.answer("p-e", "de-fra", "DE", cp, l.addEdited(with("m-e", "p-e"), func(e *audit.Entry) { e.Sig = l.entries[0].Sig })))
	// Honest, then another meeting's policy change listed among its own.
	join("m-f", l.joinAnswer("m-f", "p-f", "de-fra", "DE", placed))
	b.waitJS(5*time.Second, "the honest meeting consistent", `window.watches['m-f'].state === 'consistent' && window.watches['m-f'].ownIncluded`, watchState("m-f"))

	for _, c := range []struct{ meeting, want string }{
		{"m-a", `include entry ` + fmt.Sprint(other) + ` of meeting "m-b"`},
		{"m-c", `placement of "" on de-fra (DE), but your browser (p-c)`},
		{"m-d", "hash does not match the entry's content (edited entry)"},
		{"m-e", "signature does not verify with the log key"},
	} {
		b.waitJS(5*time.Second, c.meeting+" alarmed", `window.watches[`+jsString(c.meeting)+`].state === 'inconsistent'`, watchState(c.meeting))
		if r := evalJS[string](b, `window.watches[`+jsString(c.meeting)+`].reason`); !strings.Contains(r, c.want) {
			t.Errorf("%s: alarm %q, want it to say %q", c.meeting, r, c.want)
		}
		if evalJS[bool](b, `window.watches[`+jsString(c.meeting)+`].ownIncluded`) {
			t.Errorf("%s: the page takes the entry as its placement", c.meeting)
		}
	}
	pc := l.add(audit.Entry{Kind: audit.KindPolicyChange, Meeting: "m-b", PolicyHash: "h2"})
	l.list("m-f", pc)
	l.add(audit.Entry{Kind: audit.KindPlacement, Meeting: "m-b", Node: "de-fra", NodeCountry: "DE"})
	b.waitJS(5*time.Second, "another meeting's policy change alarmed", `window.watches['m-f'].state === 'inconsistent'`, watchState("m-f"))
	if r := evalJS[string](b, `window.watches['m-f'].reason`); !strings.Contains(r, fmt.Sprintf(`include entry %d of meeting "m-b"`, pc)) {
		t.Errorf("m-f: alarm %q", r)
	}
	if n := evalJS[float64](b, `window.watches['m-f'].policyChanges`); n != 0 {
		t.Errorf("m-f counts %v policy changes, want none", n)
	}
	b.checkConsole()
}
