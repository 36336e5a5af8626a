package web_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/web"
)

// auditlogPage loads the app's auditlog.js; the test calls window.al.
const auditlogPage = `<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><script type="module">
import * as al from '/js/auditlog.js';
import { b64, fromB64, hex } from '/js/e2ee/bytes.js';
window.al = al;
window.b64 = b64;
window.fromB64 = fromB64;
window.hex = hex;
window.ready = true;
</script>`

// auditlogJS checks every vector in the page and resolves to the list of
// what failed (empty when the page agrees with Go everywhere).
const auditlogJS = `(async (v) => {
	const fails = [];
	const H = (s) => fromB64(s);
	const hs = (l) => l.map(H);
	const flip = (l, i) => { const c = l.map((h) => h.slice()); c[i % c.length][i % 32] ^= 1; return c; };
	const rejects = async (p) => { try { await p; return false; } catch { return true; } };
	for (const t of v.trees) {
		const root = H(t.root);
		for (const r of t.records) {
			const leaf = H(v.leafHashes[r.index]);
			const proof = hs(r.proof);
			if (await rejects(al.checkRecord(proof, t.size, root, r.index, leaf))) fails.push('record ' + r.index + ' of ' + t.size + ' refused');
			if (proof.length && !(await rejects(al.checkRecord(flip(proof, r.index), t.size, root, r.index, leaf)))) fails.push('record ' + r.index + ' of ' + t.size + ' with a flipped hash accepted');
			if (!(await rejects(al.checkRecord(proof, t.size, root, r.index, H(v.leafHashes[(r.index + 1) % v.leafHashes.length]))))) fails.push('record ' + r.index + ' of ' + t.size + ' with another leaf accepted');
			if (t.size > 1 && !(await rejects(al.checkRecord(proof, t.size, root, (r.index + 1) % t.size, leaf)))) fails.push('record ' + r.index + ' of ' + t.size + ' as another index accepted');
			if (!(await rejects(al.checkRecord(proof.concat([root]), t.size, root, r.index, leaf)))) fails.push('record ' + r.index + ' of ' + t.size + ' with a hash too many accepted');
		}
		for (const c of t.trees) {
			const old = H(v.roots[c.size - 1]);
			const proof = hs(c.proof);
			if (await rejects(al.checkTree(proof, t.size, root, c.size, old))) fails.push('tree ' + c.size + ' in ' + t.size + ' refused');
			if (proof.length && !(await rejects(al.checkTree(flip(proof, c.size), t.size, root, c.size, old)))) fails.push('tree ' + c.size + ' in ' + t.size + ' with a flipped hash accepted');
			const forged = old.slice(); forged[0] ^= 1;
			if (!(await rejects(al.checkTree(proof, t.size, root, c.size, forged)))) fails.push('tree ' + c.size + ' in ' + t.size + ' from another old root accepted');
			const cpOld = { origin: 'o', size: c.size, root: old }, cpNew = { origin: 'o', size: t.size, root };
			if (await rejects(al.checkConsistency(cpOld, cpNew, proof))) fails.push('consistency ' + c.size + ' to ' + t.size + ' refused');
			if (c.size < t.size && !(await rejects(al.checkConsistency(cpNew, cpOld, proof)))) fails.push('consistency ' + t.size + ' back to ' + c.size + ' accepted');
		}
		const leaf0 = H(v.leaves[0]);
		const cp = { origin: 'o', size: t.size, root };
		if (await rejects(al.checkInclusion(cp, 0, leaf0, hs(t.records[0].proof)))) fails.push('inclusion of leaf 0 in ' + t.size + ' refused');
	}
	for (let i = 0; i < v.leaves.length; i++) {
		if (b64(await al.leafHash(H(v.leaves[i]))) !== v.leafHashes[i]) fails.push('leaf hash ' + i);
	}
	const l = hs(v.leafHashes.slice(0, 2));
	if (b64(await al.nodeHash(l[0], l[1])) !== v.roots[1]) fails.push('node hash of leaves 0 and 1 is not the root of size 2');

	for (const e of v.entries) {
		const got = al.entryJSON(JSON.parse(e.wire));
		if (got !== e.line) fails.push('entry ' + e.wire + ': page writes ' + JSON.stringify(got) + ', Go ' + JSON.stringify(e.line));
		if (b64(al.leafData(JSON.parse(e.wire))) !== e.leaf) fails.push('entry ' + e.wire + ': leaf bytes differ from Go');
	}

	const vk = await al.parseVerifier(v.verifier);
	for (const n of v.goodNotes) {
		try {
			const c = await al.openCheckpoint(n.note, vk);
			if (c.size !== n.size || b64(c.root) !== n.root || c.origin !== n.origin) fails.push('note ' + JSON.stringify(n.note) + ' read as ' + JSON.stringify([c.origin, c.size, b64(c.root)]));
		} catch (e) { fails.push('good note ' + JSON.stringify(n.note) + ' refused: ' + e.message); }
	}
	for (const n of v.badNotes) {
		try {
			await al.openCheckpoint(n.note, vk);
			fails.push('bad note accepted (' + n.why + '): ' + JSON.stringify(n.note));
		} catch (e) {
			if (!(e instanceof al.AuditError) || e.kind !== 'checkpoint') fails.push('bad note (' + n.why + ') refused with the wrong error: ' + e);
		}
	}
	for (const k of v.badVerifiers) {
		if (!(await rejects(al.parseVerifier(k)))) fails.push('bad verifier key accepted: ' + k);
	}
	for (const b of v.badBodies) {
		try { al.parseCheckpoint(b); fails.push('bad checkpoint body accepted: ' + JSON.stringify(b)); } catch {}
	}
	return fails;
})`

// auditVectors are what Go's audit package makes, for the page to check.
type auditVectors struct {
	Leaves     []string      `json:"leaves"`
	LeafHashes []string      `json:"leafHashes"`
	Roots      []string      `json:"roots"` // Roots[n-1] is the tree hash of the first n leaves
	Trees      []vectorTree  `json:"trees"`
	Entries    []vectorEntry `json:"entries"`
	Verifier   string        `json:"verifier"`
	GoodNotes  []vectorNote  `json:"goodNotes"`
	BadNotes   []struct {
		Note string `json:"note"`
		Why  string `json:"why"`
	} `json:"badNotes"`
	BadVerifiers []string `json:"badVerifiers"`
	BadBodies    []string `json:"badBodies"`
}

// vectorTree is a tree of Size leaves: every leaf's inclusion proof and
// the consistency proof from every smaller size.
type vectorTree struct {
	Size    int64         `json:"size"`
	Root    string        `json:"root"`
	Records []vectorProof `json:"records"` // Index is the leaf
	Trees   []vectorProof `json:"trees"`   // Size is the older tree's
}

type vectorProof struct {
	Index int64    `json:"index"`
	Size  int64    `json:"size"`
	Proof []string `json:"proof"`
}

type vectorEntry struct {
	Wire string `json:"wire"` // as the API sends it: json.Marshal, HTML escaped
	Line string `json:"line"` // audit.LeafData
	Leaf string `json:"leaf"` // base64 of the same bytes
}

type vectorNote struct {
	Note   string `json:"note"`
	Origin string `json:"origin"`
	Size   int64  `json:"size"`
	Root   string `json:"root"`
}

func hashStrings(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	return out
}

// trickyEntries are entries whose strings Go escapes in every way it can:
// quotes and backslashes, every control character, HTML's <>& (which
// LeafData does not escape but json.Marshal does), U+2028 and U+2029,
// DEL, non-ASCII and an astral character, a time with nanoseconds and an
// offset, and every optional field empty or not.
func trickyEntries() []audit.Entry {
	var ctl strings.Builder
	for c := range 0x20 {
		ctl.WriteByte(byte(c))
	}
	ist := time.FixedZone("IST", 5*3600+1800)
	return []audit.Entry{
		{Seq: 1, Index: 0, Time: time.Date(2026, 12, 2, 2, 3, 4, 0, time.UTC), Kind: audit.KindMeetingCreated, Meeting: "m-1", PrevHash: audit.GenesisHash, Hash: strings.Repeat("ab", 32), Sig: "c2ln"},
		{Seq: 2, Index: 1, Time: time.Date(2026, 12, 2, 2, 3, 4, 123456789, ist), Kind: audit.KindPlacement, Meeting: "m-1", Participant: "p-\"quoted\"\\back", Node: "de-fra", NodeCountry: "DE",
			PolicyHash: "sha256:00", Reason: "<b>a & b</b> \u2028line\u2029para\x7f", PrevHash: strings.Repeat("cd", 32), Hash: strings.Repeat("ef", 32), Sig: "sig/+=="},
		{Seq: 3, Index: 2, Time: time.Date(2026, 1, 2, 3, 4, 5, 100, time.UTC), Kind: "other", Meeting: "", Reason: ctl.String(), PrevHash: "x"},
		{Seq: 1 << 40, Index: 1 << 40, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Kind: audit.KindPolicyChange, Meeting: "Zoë Ørsted 李 😀", Node: "\ufffd", Reason: "tab\there\r\nand \b\f"},
	}
}

func makeAuditVectors(t *testing.T) auditVectors {
	var v auditVectors
	var tree audit.Tree
	for i := range 40 {
		e := audit.Entry{Seq: uint64(i + 1), Index: int64(i), Time: time.Unix(1_800_000_000+int64(i), 0).UTC(), Kind: audit.KindPlacement, Meeting: fmt.Sprintf("m-%d", i%3), Node: "de-fra"}
		leaf, err := audit.LeafData(&e)
		if err != nil {
			t.Fatal(err)
		}
		tree.Append(leaf)
		lh := tlog.RecordHash(leaf)
		v.Leaves = append(v.Leaves, base64.StdEncoding.EncodeToString(leaf))
		v.LeafHashes = append(v.LeafHashes, base64.StdEncoding.EncodeToString(lh[:]))
	}
	for n := int64(1); n <= tree.Size(); n++ {
		root, err := tree.Root(n)
		if err != nil {
			t.Fatal(err)
		}
		v.Roots = append(v.Roots, base64.StdEncoding.EncodeToString(root[:]))
		tr := vectorTree{Size: n, Root: v.Roots[n-1]}
		for i := range n {
			p, err := tree.ProveInclusion(i, n)
			if err != nil {
				t.Fatal(err)
			}
			tr.Records = append(tr.Records, vectorProof{Index: i, Proof: hashStrings(p)})
			p2, err := tree.ProveConsistency(i+1, n)
			if err != nil {
				t.Fatal(err)
			}
			tr.Trees = append(tr.Trees, vectorProof{Size: i + 1, Proof: hashStrings(p2)})
		}
		v.Trees = append(v.Trees, tr)
	}

	for _, e := range trickyEntries() {
		wire, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := audit.LeafData(&e)
		if err != nil {
			t.Fatal(err)
		}
		v.Entries = append(v.Entries, vectorEntry{string(wire), string(leaf), base64.StdEncoding.EncodeToString(leaf)})
	}

	// A key whose base64 holds a "+", as about half do: the verifier
	// string is split at its first two.
	var (
		pub    ed25519.PublicKey
		key    ed25519.PrivateKey
		origin string
	)
	keyPart := func(vkey string) string { return strings.SplitN(vkey, "+", 3)[len(strings.SplitN(vkey, "+", 3))-1] }
	for !strings.Contains(keyPart(v.Verifier), "+") {
		pub, key, _ = ed25519.GenerateKey(nil)
		origin = audit.DefaultOrigin(pub)
		var err error
		if v.Verifier, err = audit.VerifierKey(origin, pub); err != nil {
			t.Fatal(err)
		}
	}
	signer, err := audit.NewSigner(origin, key)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(s note.Signer, c audit.Checkpoint) string {
		b, err := note.Sign(&note.Note{Text: c.Text()}, s)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	good := func(n string, c audit.Checkpoint) {
		v.GoodNotes = append(v.GoodNotes, vectorNote{n, c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:])})
	}
	badNote := func(why, n string) {
		v.BadNotes = append(v.BadNotes, struct {
			Note string `json:"note"`
			Why  string `json:"why"`
		}{n, why})
	}
	root20, _ := tree.Root(20)
	cp := audit.Checkpoint{Origin: origin, Size: 20, Root: root20}
	signed, err := audit.SignCheckpoint(signer, cp)
	if err != nil {
		t.Fatal(err)
	}
	good(string(signed), cp)
	good(sign(signer, audit.Checkpoint{Origin: origin}), audit.Checkpoint{Origin: origin})
	// A witness's cosignature, before or after the log's, changes nothing.
	_, wkey, _ := ed25519.GenerateKey(nil)
	witness, err := audit.NewSigner("witness.example", wkey)
	if err != nil {
		t.Fatal(err)
	}
	logV, err := audit.NewVerifier(v.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	cosigned, err := audit.Cosign(signed, logV, witness)
	if err != nil {
		t.Fatal(err)
	}
	good(string(cosigned), cp)
	// The witness's signature first.
	wtext, wsigs, _ := strings.Cut(string(cosigned), "\n\n")
	lines := strings.SplitAfter(wsigs, "\n")
	good(wtext+"\n\n"+lines[1]+lines[0], cp)

	// The same checkpoint signed by another key under the log's name (a
	// different key hash), or under another name.
	_, otherKey, _ := ed25519.GenerateKey(nil)
	otherSigner, _ := audit.NewSigner(origin, otherKey)
	badNote("another key", sign(otherSigner, cp))
	badNote("only a witness", sign(witness, cp))
	// The log's key hash with another key's signature.
	text, sigLine, _ := strings.Cut(string(signed), "\n\n")
	other := sign(otherSigner, cp)
	_, otherLine, _ := strings.Cut(other, "\n\n")
	rawReal := sigBytes(t, sigLine)
	rawOther := sigBytes(t, otherLine)
	forged := append(append([]byte{}, rawReal[:4]...), rawOther[4:]...)
	badNote("the log's key hash, another key's signature", text+"\n\n— "+origin+" "+base64.StdEncoding.EncodeToString(forged)+"\n")
	// The signature over another text: a size or root changed.
	root19, _ := tree.Root(19)
	badNote("size changed", strings.Replace(string(signed), "\n20\n", "\n19\n", 1))
	badNote("root changed", strings.Replace(string(signed), base64.StdEncoding.EncodeToString(root20[:]), base64.StdEncoding.EncodeToString(root19[:]), 1))
	flipped := append([]byte{}, rawReal...)
	flipped[10] ^= 1
	badNote("signature flipped", text+"\n\n— "+origin+" "+base64.StdEncoding.EncodeToString(flipped)+"\n")
	badNote("signature cut short", text+"\n\n— "+origin+" "+base64.StdEncoding.EncodeToString(rawReal[:40])+"\n")
	badNote("no signature", text+"\n")
	badNote("no blank line", text+"\n— "+origin+" "+base64.StdEncoding.EncodeToString(rawReal)+"\n")
	badNote("no final newline", strings.TrimSuffix(string(signed), "\n"))
	badNote("a control character", strings.Replace(string(signed), "\n20\n", "\n20\r\n", 1))
	badNote("a line that is not a signature", string(signed)+"hello\n")
	// Bodies the log's key signed that are not canonical checkpoints.
	for _, body := range []string{
		origin + "\n020\n" + base64.StdEncoding.EncodeToString(root20[:]) + "\n",
		origin + "\n20\n" + base64.StdEncoding.EncodeToString(root20[:]) + "\nextension\n",
		"another.origin\n20\n" + base64.StdEncoding.EncodeToString(root20[:]) + "\n",
		origin + "\n-1\n" + base64.StdEncoding.EncodeToString(root20[:]) + "\n",
		origin + "\n20\n" + base64.StdEncoding.EncodeToString(root20[:16]) + "\n",
	} {
		b, err := note.Sign(&note.Note{Text: body}, signer)
		if err != nil {
			t.Fatal(err)
		}
		badNote("body "+body, string(b))
		if !strings.HasPrefix(body, "another") {
			v.BadBodies = append(v.BadBodies, body)
		}
	}
	v.BadBodies = append(v.BadBodies, origin+"\n20\n"+strings.TrimRight(base64.StdEncoding.EncodeToString(root20[:]), "=")+"\n", "o\n1\n"+base64.StdEncoding.EncodeToString(root20[:]), "o o\n1\n"+base64.StdEncoding.EncodeToString(root20[:])+"\n")

	name, rest, _ := strings.Cut(v.Verifier, "+")
	hash, key64, _ := strings.Cut(rest, "+")
	v.BadVerifiers = []string{
		name + "+" + strings.Repeat("0", 8) + "+" + key64, // wrong hash
		"other.name+" + hash + "+" + key64,                // hash of another name
		name + "+" + hash,
		name + "+" + hash + "+" + base64.StdEncoding.EncodeToString(append([]byte{2}, pub...)), // another algorithm
		name + "+" + hash + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, pub[:31]...)),
		"",
	}
	return v
}

func sigBytes(t *testing.T, line string) []byte {
	_, enc, _ := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(line, "— "), "\n"), " ")
	b, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAuditLogMatchesGo: the browser's auditlog.js and Go's audit
// package (golang.org/x/mod's tlog and note underneath) are one format.
// Every inclusion and consistency proof of trees of 1 to 40 leaves that
// Go makes verifies in the page, and none with a hash flipped, another
// leaf, index or old root, or a hash too many; checkpoints Go signed open
// (cosigned too) and read as Go wrote them, while notes under another key,
// with another key's signature under the log's key hash, altered, or
// malformed are refused, as are verifier keys whose hash does not match
// and non-canonical checkpoint bodies; entries with every string Go
// escapes encode to Go's leaf bytes exactly.
func TestAuditLogMatchesGo(t *testing.T) {
	v := makeAuditVectors(t)
	for _, f := range runVectors(t, "auditlog", v, auditlogJS) {
		t.Error(f)
	}
	if len(v.Trees) != 40 || len(v.BadNotes) < 10 || len(v.Entries) < 4 {
		t.Fatalf("too few vectors: %d trees, %d bad notes, %d entries", len(v.Trees), len(v.BadNotes), len(v.Entries))
	}
}

// checkpointMsgPage loads the browser's key messages.
const checkpointMsgPage = `<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><script type="module">
import * as keymsg from '/js/e2ee/keymsg.js';
import { b64, fromB64, hex } from '/js/e2ee/bytes.js';
window.keymsg = keymsg;
window.b64 = b64;
window.fromB64 = fromB64;
window.hex = hex;
window.ready = true;
</script>`

// checkpointMsgJS checks Go's example checkpoint message (e2ee/keymsg's
// testdata/checkpoint.json) in the page and resolves to what failed.
const checkpointMsgJS = `(async (v) => {
	const fails = [];
	const id = fromB64(v.identity);
	const m = keymsg.decode(v.message);
	if (hex(keymsg.checkpointTBS(m.meeting, m.participant, m.checkpoint)) !== v.tbs) fails.push('signed bytes differ from Go');
	try { await keymsg.verifyCheckpoint(m, id); } catch (e) { fails.push('Go signature refused: ' + e.message); }
	if (JSON.stringify(keymsg.encode(m)) !== JSON.stringify(v.message)) fails.push('re-encoded as ' + JSON.stringify(keymsg.encode(m)));
	for (const [what, alter] of [['another meeting', (x) => { x.meeting = 'm2'; }], ['another participant', (x) => { x.participant = 'bob'; }],
		['another checkpoint', (x) => { x.checkpoint = x.checkpoint.replace('\n42\n', '\n43\n'); }], ['a flipped signature', (x) => { x.sig = x.sig.slice(); x.sig[0] ^= 1; }]]) {
		const x = keymsg.decode(v.message);
		alter(x);
		try { await keymsg.verifyCheckpoint(x, id); fails.push('verifies with ' + what); } catch {}
	}
	for (const [what, wire] of [['an extra field', { ...v.message, extra: 1 }], ['no checkpoint', { ...v.message, checkpoint: '' }],
		['a checkpoint too long', { ...v.message, checkpoint: 'x'.repeat(4097) }], ['a short signature', { ...v.message, sig: v.message.sig.slice(0, 40) }],
		['a missing field', (({ participant, ...rest }) => rest)(v.message)]]) {
		try { keymsg.decode(wire); fails.push('decodes with ' + what); } catch {}
	}
	return fails;
})`

// TestCheckpointMessageMatchesGo: the browser's checkpoint key message is
// Go's (e2ee/keymsg): Go's example decodes, has Go's signed bytes,
// verifies with the sender's identity key and encodes back identically;
// altered it does not verify, and malformed ones are refused as Go
// refuses them.
func TestCheckpointMessageMatchesGo(t *testing.T) {
	b := newBrowser(t, "checkpoint-msg", browserOpts{})
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler(nil))
	mux.HandleFunc("/checkpoint-test", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(checkpointMsgPage))
	})
	mux.HandleFunc("/vectors/checkpoint.json", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, "../e2ee/keymsg/testdata/checkpoint.json")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	b.navigate(srv.URL + "/checkpoint-test")
	b.waitJS(10*time.Second, "keymsg.js to load", `window.ready === true`, `document.body.textContent`)
	for _, f := range evalJS[[]string](b, `fetch('/vectors/checkpoint.json').then((r) => r.json()).then(`+checkpointMsgJS+`)`) {
		t.Error(f)
	}
	b.checkConsole()
}

// entryVectors are entries Go sealed (audit.Chain) for the page to check
// as audit.Verify does: Good, one chain in order, all verify; each of Bad
// (after the chain's entries before it, Prev) does not.
type entryVectors struct {
	Verifier string   `json:"verifier"`
	Good     []string `json:"good"` // as the API sends them: json.Marshal
	Bad      []struct {
		Wire string      `json:"wire"`
		Prev *audit.Head `json:"prev"`
		Why  string      `json:"why"`
	} `json:"bad"`
}

func makeEntryVectors(t *testing.T) entryVectors {
	pub, key, _ := ed25519.GenerateKey(nil)
	origin := audit.DefaultOrigin(pub)
	vkey, err := audit.VerifierKey(origin, pub)
	if err != nil {
		t.Fatal(err)
	}
	v := entryVectors{Verifier: vkey}
	wire := func(e audit.Entry) string {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// One chain of the tricky entries, sealed in a meeting whose ID is
	// tricky too; invalid UTF-8, which Seal makes U+FFFD, as well.
	chain := audit.NewChain(key, "Zoë \"<m>\" \u2028 😀", audit.Head{})
	var sealed []audit.Entry
	for i, e := range trickyEntries() {
		e.Index = int64(10 * i)
		if i == 2 {
			e.Participant = "bad \xff utf-8"
		}
		sealed = append(sealed, chain.Seal(e))
	}
	// The same instant in another zone: Go's digest hashes it in UTC.
	ist := sealed[1]
	ist.Time = ist.Time.In(time.FixedZone("IST", 5*3600+1800))
	sealed = append(sealed[:1], append([]audit.Entry{ist}, sealed[2:]...)...)
	if err := audit.Verify(pub, sealed); err != nil {
		t.Fatalf("Go refuses its own chain: %v", err)
	}
	for _, e := range sealed {
		v.Good = append(v.Good, wire(e))
	}
	if !strings.Contains(v.Good[1], "+05:30") || !strings.Contains(v.Good[2], "\ufffd") {
		t.Fatalf("the vectors lack the zone or U+FFFD: %q %q", v.Good[1], v.Good[2])
	}

	bad := func(why string, k int, edit func(e *audit.Entry)) {
		e := sealed[k]
		edit(&e)
		chain := append(append([]audit.Entry{}, sealed[:k]...), e)
		if audit.Verify(pub, chain) == nil {
			t.Fatalf("Go accepts the entry with %s", why)
		}
		var prev *audit.Head
		if k > 0 {
			h := sealed[k-1].Head()
			prev = &h
		}
		v.Bad = append(v.Bad, struct {
			Wire string      `json:"wire"`
			Prev *audit.Head `json:"prev"`
			Why  string      `json:"why"`
		}{wire(e), prev, why})
	}
	_, otherKey, _ := ed25519.GenerateKey(nil)
	for k := range sealed {
		bad("another entry's signature", k, func(e *audit.Entry) { e.Sig = sealed[(k+1)%len(sealed)].Sig })
		bad("another key's signature", k, func(e *audit.Entry) {
			var head audit.Head
			if k > 0 {
				head = sealed[k-1].Head()
			}
			o := audit.NewChain(otherKey, e.Meeting, head).Seal(*e)
			if o.Hash != e.Hash {
				t.Fatalf("resealed with another key: hash %s, want %s", o.Hash, e.Hash)
			}
			e.Sig = o.Sig
		})
	}
	edits := []struct {
		why  string
		edit func(e *audit.Entry)
	}{
		{"the kind edited", func(e *audit.Entry) { e.Kind = "placement" }},
		{"the meeting edited", func(e *audit.Entry) { e.Meeting = "m-other" }},
		{"the participant edited", func(e *audit.Entry) { e.Participant = "p-other" }},
		{"the node edited", func(e *audit.Entry) { e.Node = "jp-tyo" }},
		{"the country edited", func(e *audit.Entry) { e.NodeCountry = "JP" }},
		{"the policy hash edited", func(e *audit.Entry) { e.PolicyHash = "sha256:11" }},
		{"the reason edited", func(e *audit.Entry) { e.Reason += " " }},
		{"the time a nanosecond on", func(e *audit.Entry) { e.Time = e.Time.Add(time.Nanosecond) }},
		{"the index moved", func(e *audit.Entry) { e.Index++ }},
		{"the seq moved", func(e *audit.Entry) { e.Seq++ }},
		{"prev_hash edited", func(e *audit.Entry) { e.PrevHash = strings.Repeat("1", 64) }},
		{"the hash in upper case", func(e *audit.Entry) { e.Hash = strings.ToUpper(e.Hash) }},
		{"no signature", func(e *audit.Entry) { e.Sig = "" }},
		{"a signature cut short", func(e *audit.Entry) { e.Sig = e.Sig[:40] }},
		{"a signature with padding bits set", func(e *audit.Entry) {
			// The last data character of 64 bytes in base64 ("A", "Q",
			// "g" or "w") one on: the same bytes, its unused bits set.
			b := []byte(e.Sig)
			b[len(b)-3]++
			e.Sig = string(b)
		}},
	}
	for _, ed := range edits {
		for _, k := range []int{0, 1, 3} {
			if ed.why == "the kind edited" && sealed[k].Kind == "placement" {
				continue
			}
			bad(ed.why, k, ed.edit)
		}
	}
	return v
}

// entryJS checks Go's sealed entries in the page (auditlog.js
// entryDigest and checkEntry) and resolves to what failed.
const entryJS = `(async (v) => {
	const fails = [];
	const key = await al.entryKey(await al.parseVerifier(v.verifier));
	let prev = null;
	for (const w of v.good) {
		const e = JSON.parse(w);
		if (hex(await al.entryDigest(e)) !== e.hash) fails.push('entry ' + w + ': digest ' + hex(await al.entryDigest(e)) + ', Go ' + e.hash);
		try { await al.checkEntry(key, e, prev); } catch (err) { fails.push('entry ' + w + ' refused: ' + err.message); }
		prev = { seq: e.seq, hash: e.hash };
	}
	for (const b of v.bad) {
		try {
			await al.checkEntry(key, JSON.parse(b.wire), b.prev);
			fails.push('entry with ' + b.why + ' accepted: ' + b.wire);
		} catch (err) {
			if (!(err instanceof al.AuditError)) fails.push('entry with ' + b.why + ' refused with the wrong error: ' + err);
		}
	}
	return fails;
})`

// TestAuditEntriesMatchGo: the page checks an entry as audit.Verify does
// (encoding v2 digest, Ed25519 signature with the key in the log's
// verifier string, chain links). Every entry Go sealed, with every string
// Go escapes, a time with nanoseconds or in another zone, verifies; the
// same entries with another signature, another key's, any field edited,
// or a hash or signature spelt otherwise are refused, as Go refuses them.
func TestAuditEntriesMatchGo(t *testing.T) {
	v := makeEntryVectors(t)
	for _, f := range runVectors(t, "auditentries", v, entryJS) {
		t.Error(f)
	}
	if len(v.Good) < 4 || len(v.Bad) < 40 {
		t.Fatalf("too few vectors: %d good, %d bad", len(v.Good), len(v.Bad))
	}
}

// runVectors serves the app with a page that loads auditlog.js and the
// vectors (as JSON), and returns what check — a JS function of the
// vectors resolving to a list of failures — found wrong.
func runVectors(t *testing.T, name string, vectors any, check string) []string {
	t.Helper()
	b := newBrowser(t, name, browserOpts{})
	data, err := json.Marshal(vectors)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler(nil))
	mux.HandleFunc("/auditlog-test", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(auditlogPage))
	})
	mux.HandleFunc("/vectors", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(data)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	b.navigate(srv.URL + "/auditlog-test")
	b.waitJS(10*time.Second, "auditlog.js to load", `window.ready === true`, `document.body.textContent`)
	fails := evalJS[[]string](b, `fetch('/vectors').then((r) => r.json()).then(`+check+`)`)
	b.checkConsole()
	return fails
}
