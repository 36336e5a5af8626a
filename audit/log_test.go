package audit

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// testLog is a deployment's log as the control plane keeps it: chains
// sealed with one key, every entry a leaf of one tree, checkpoints signed
// by the same key.
type testLog struct {
	t        testing.TB
	key      ed25519.PrivateKey
	signer   note.Signer
	verifier note.Verifier
	vkey     string
	tree     Tree
	entries  []Entry
	chains   map[string]*Chain
	clock    time.Time
}

func newTestLog(t testing.TB, seed byte) *testLog {
	t.Helper()
	key := testKey(seed)
	pub := key.Public().(ed25519.PublicKey)
	origin := DefaultOrigin(pub)
	signer, err := NewSigner(origin, key)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := VerifierKey(origin, pub)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return &testLog{t: t, key: key, signer: signer, verifier: v, vkey: vkey, chains: map[string]*Chain{}, clock: t0}
}

// add seals e as the next entry of meeting's chain and of the log.
func (l *testLog) add(meeting string, e Entry) Entry {
	c := l.chains[meeting]
	if c == nil {
		c = NewChain(l.key, meeting, Head{})
		l.chains[meeting] = c
	}
	l.clock = l.clock.Add(time.Millisecond)
	if e.Time.IsZero() {
		e.Time = l.clock
	}
	e.Index = int64(len(l.entries))
	e = c.Seal(e)
	leaf, err := LeafData(&e)
	if err != nil {
		l.t.Fatal(err)
	}
	l.tree.Append(leaf)
	l.entries = append(l.entries, e)
	return e
}

// create starts a meeting the way the control plane does.
func (l *testLog) create(meeting string) {
	l.add(meeting, Entry{Kind: KindMeetingCreated, PolicyHash: "policy-" + meeting + "-1", Reason: "created"})
}

// fill adds n entries across meetings (created first) and the deployment
// chain, in a fixed pseudo-random order, with policy changes.
func (l *testLog) fill(n int, meetings []string, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	policy := map[string]int{}
	for _, m := range meetings {
		if _, ok := l.chains[m]; !ok {
			l.create(m)
			policy[m] = 1
		} else {
			policy[m] = l.currentPolicy(m)
		}
	}
	for range n {
		if rng.IntN(20) == 0 {
			l.add("", Entry{Kind: KindNodeDown, Node: fmt.Sprintf("node-%d", rng.IntN(9))})
			continue
		}
		m := meetings[rng.IntN(len(meetings))]
		if rng.IntN(30) == 0 {
			policy[m]++
			l.add(m, Entry{Kind: KindPolicyChange, PolicyHash: fmt.Sprintf("policy-%s-%d", m, policy[m])})
			continue
		}
		l.add(m, Entry{Kind: KindPlacement, Participant: fmt.Sprintf("p%d", rng.IntN(50)), Node: "node-fra-1", NodeCountry: "DE",
			PolicyHash: fmt.Sprintf("policy-%s-%d", m, policy[m]), Reason: "closest allowed node"})
	}
}

func (l *testLog) currentPolicy(m string) int {
	n := 0
	for _, e := range l.entries {
		if e.Meeting == m && (e.Kind == KindMeetingCreated || e.Kind == KindPolicyChange) {
			n++
		}
	}
	return n
}

func (l *testLog) size() int64 { return int64(len(l.entries)) }

// cp is the checkpoint of the first n entries.
func (l *testLog) cp(n int64) Checkpoint {
	l.t.Helper()
	root, err := l.tree.Root(n)
	if err != nil {
		l.t.Fatal(err)
	}
	return Checkpoint{Origin: l.signer.Name(), Size: n, Root: root}
}

// checkpoint signs the tree of the first n entries.
func (l *testLog) checkpoint(n int64) []byte {
	l.t.Helper()
	signed, err := SignCheckpoint(l.signer, l.cp(n))
	if err != nil {
		l.t.Fatal(err)
	}
	return signed
}

// full is the control plane's full export at size n.
func (l *testLog) full(n int64) Export {
	es := slices.Clone(l.entries[:n])
	return Export{
		Header:  Header{VerifierKey: l.vkey, Exported: t0, Checkpoint: string(l.checkpoint(n))},
		Entries: es,
		Trailer: SignHeads(l.key, l.cp(n), "", Heads(es)),
	}
}

// pack is a meeting's evidence pack at size n, with consistency steps to
// the sizes of held.
func (l *testLog) pack(meeting string, n int64, held ...int64) Export {
	l.t.Helper()
	x := Export{Header: Header{VerifierKey: l.vkey, Meeting: meeting, Exported: t0, Checkpoint: string(l.checkpoint(n))}}
	for _, e := range l.entries[:n] {
		if e.Meeting != meeting {
			continue
		}
		p, err := l.tree.ProveInclusion(e.Index, n)
		if err != nil {
			l.t.Fatal(err)
		}
		x.Entries = append(x.Entries, e)
		x.Proofs = append(x.Proofs, p)
	}
	for _, h := range held {
		from, to := min(h, n), max(h, n)
		if from == to {
			continue
		}
		p, err := l.tree.ProveConsistency(from, to)
		if err != nil {
			l.t.Fatal(err)
		}
		x.Consistency = append(x.Consistency, ConsistencyStep{From: from, To: to, Proof: p})
	}
	x.Trailer = SignHeads(l.key, l.cp(n), meeting, Heads(x.Entries))
	return x
}

func encode(t testing.TB, x Export) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteExport(&buf, x); err != nil {
		t.Fatalf("WriteExport: %v", err)
	}
	return buf.Bytes()
}

// verify verifies data with the log's pinned key and held checkpoints.
func (l *testLog) verify(data []byte, held ...[]byte) (Summary, error) {
	return VerifyExport(bytes.NewReader(data), VerifyOptions{Log: l.verifier, Checkpoints: held})
}

// hashes turns a tree proof into its hash slice for flipping.
func flipHash(h tlog.Hash, bit int) tlog.Hash {
	h[bit/8%tlog.HashSize] ^= 1 << (bit % 8)
	return h
}
