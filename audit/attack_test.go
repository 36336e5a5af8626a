package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// wantCheckpointError asserts err contradicts the checkpoint named name
// and is a failure of check.
func wantCheckpointError(t *testing.T, err error, name string, check error) {
	t.Helper()
	var ce *CheckpointError
	if !errors.As(err, &ce) || ce.Name != name || !errors.Is(err, check) {
		t.Fatalf("error = %v, want a *CheckpointError naming %q and wrapping %v", err, name, check)
	}
	if !strings.Contains(err.Error(), name) {
		t.Fatalf("error %q does not name %q", err, name)
	}
}

func verifyNamed(l *testLog, data []byte, names []string, held ...[]byte) (Summary, error) {
	return VerifyExport(bytes.NewReader(data), VerifyOptions{Log: l.verifier, Checkpoints: held, CheckpointNames: names})
}

// TestHonestLogVerifies: thousands of entries across many chains verify as
// a full export and as meeting packs, against checkpoints held at many
// sizes.
func TestHonestLogVerifies(t *testing.T) {
	l := newTestLog(t, 1)
	var meetings []string
	for i := range 40 {
		meetings = append(meetings, fmt.Sprintf("meeting-%02d", i))
	}
	var held [][]byte
	var sizes []int64
	for range 6 {
		l.fill(500, meetings, uint64(len(held)))
		held = append(held, l.checkpoint(l.size()))
		sizes = append(sizes, l.size())
	}
	if l.size() < 3000 {
		t.Fatalf("only %d entries", l.size())
	}
	sum, err := l.verify(encode(t, l.full(l.size())), held...)
	if err != nil {
		t.Fatalf("full export: %v", err)
	}
	if sum.Entries != int(l.size()) || sum.Chains != len(meetings)+1 || sum.Checkpoints != len(held) {
		t.Fatalf("summary %+v", sum)
	}
	// An older full export is consistent with the checkpoints it covers.
	if _, err := l.verify(encode(t, l.full(sizes[1])), held[:2]...); err != nil {
		t.Fatalf("older full export: %v", err)
	}
	for _, m := range []string{meetings[0], meetings[17], meetings[39]} {
		// A pack at a middle size, with proofs to smaller and larger held sizes.
		x := l.pack(m, sizes[3], sizes...)
		sum, err := l.verify(encode(t, x), held...)
		if err != nil {
			t.Fatalf("pack of %s: %v", m, err)
		}
		if sum.Meeting != m || sum.Entries == 0 || sum.Chains != 1 {
			t.Fatalf("pack summary %+v", sum)
		}
	}
}

// The server cuts entries off the end and signs a new, smaller checkpoint
// and trailer with its real key; a bot held a checkpoint of the longer log.
func TestAttackTruncated(t *testing.T) {
	l := smallLog(t)
	held := l.checkpoint(l.size())
	short := l.size() - 5
	data := encode(t, l.full(short))
	if _, err := l.verify(data); err != nil {
		t.Fatalf("the truncated log is well formed and signed: %v", err)
	}
	_, err := verifyNamed(l, data, []string{"bot.checkpoints#3"}, held)
	wantCheckpointError(t, err, "bot.checkpoints#3", ErrOlder)
	want := fmt.Sprintf("the export has %d entries, the checkpoint bot.checkpoints#3 has %d: an export older than the checkpoint, or of a log truncated since, cannot be checked against it; export again", short, l.size())
	if err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	// A new export of the truncated log is no larger: it fails again.
	if _, err := verifyNamed(l, encode(t, l.full(short)), []string{"bot.checkpoints#3"}, held); !errors.Is(err, ErrOlder) {
		t.Fatalf("new export of the truncated log: %v", err)
	}
	// A checkpoint of a size the truncated log still covers is no help
	// to the attacker and no false alarm.
	if _, err := l.verify(data, l.checkpoint(short-3)); err != nil {
		t.Fatalf("against a smaller checkpoint: %v", err)
	}
}

// An honest export made before a checkpoint someone holds cannot be checked
// against it, and is not called truncated or inconsistent; exported again,
// the same log verifies.
func TestExportOlderThanCheckpoint(t *testing.T) {
	l := smallLog(t)
	n := l.size()
	old := encode(t, l.full(n))
	oldPack := encode(t, l.pack("m1", n))
	l.fill(30, []string{"m1", "m2"}, 9)
	held := l.checkpoint(l.size())
	for name, data := range map[string][]byte{"full": old, "pack": oldPack} {
		_, err := verifyNamed(l, data, []string{"bot.txt#2"}, held)
		wantCheckpointError(t, err, "bot.txt#2", ErrOlder)
		if errors.Is(err, ErrInconsistent) || strings.Contains(err.Error(), "truncated or") || strings.Contains(err.Error(), "rebuilt") {
			t.Fatalf("%s: an older export accused: %v", name, err)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("the checkpoint bot.txt#2 has %d: an export older than the checkpoint", l.size())) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if _, err := verifyNamed(l, encode(t, l.full(l.size())), []string{"bot.txt#2"}, held); err != nil {
		t.Fatalf("exported again: %v", err)
	}
	if _, err := verifyNamed(l, encode(t, l.pack("m1", l.size(), n)), []string{"bot.txt#2"}, held); err != nil {
		t.Fatalf("pack exported again: %v", err)
	}
}

// Two participants are shown two different logs under the same key; each
// is given the other's checkpoint.
func TestAttackFork(t *testing.T) {
	a, b := newTestLog(t, 1), newTestLog(t, 1)
	a.fill(20, []string{"m1", "m2"}, 1)
	b.fill(20, []string{"m1", "m2"}, 1)
	a.add("m1", Entry{Kind: KindPlacement, Node: "node-fra-1", NodeCountry: "DE", PolicyHash: "policy-m1-1"})
	b.add("m1", Entry{Kind: KindPlacement, Node: "node-pek-1", NodeCountry: "CN", PolicyHash: "policy-m1-1"})
	a.fill(10, []string{"m1", "m2"}, 2)
	b.fill(14, []string{"m1", "m2"}, 3)
	cpA, cpB := a.checkpoint(a.size()), b.checkpoint(b.size())
	// Each log verifies on its own.
	for _, l := range []*testLog{a, b} {
		if _, err := l.verify(encode(t, l.full(l.size())), l.checkpoint(l.size())); err != nil {
			t.Fatal(err)
		}
	}
	// b's full export (larger) against a's checkpoint: the prefix differs.
	_, err := verifyNamed(b, encode(t, b.full(b.size())), []string{"alice"}, cpA)
	wantCheckpointError(t, err, "alice", ErrInconsistent)
	// a's full export (smaller) against b's checkpoint: it fails, but
	// on paper it is only older than b's checkpoint; a new export of a's
	// log still does not reach b's size.
	_, err = verifyNamed(a, encode(t, a.full(a.size())), []string{"bob"}, cpB)
	wantCheckpointError(t, err, "bob", ErrOlder)
	// Same size, different trees.
	_, err = verifyNamed(b, encode(t, b.full(a.size())), []string{"alice"}, cpA)
	wantCheckpointError(t, err, "alice", ErrInconsistent)
	// b's pack of m1, with the consistency proof b's server would give
	// from a's size: b's tree, which does not extend a's.
	_, err = verifyNamed(b, encode(t, b.pack("m1", b.size(), a.size())), []string{"alice"}, cpA)
	wantCheckpointError(t, err, "alice", ErrInconsistent)
	// A pack without the proof says what is missing.
	_, err = verifyNamed(b, encode(t, b.pack("m1", b.size())), []string{"alice"}, cpA)
	wantCheckpointError(t, err, "alice", ErrInconsistent)
	if !strings.Contains(err.Error(), "no consistency proof") {
		t.Fatalf("error %q", err)
	}
	// And a checkpoint b's server hands out, checked by a's client
	// directly: no consistency proof links them.
	ca, _ := OpenCheckpoint(cpA, a.verifier)
	cb, _ := OpenCheckpoint(cpB, b.verifier)
	p, _ := b.tree.ProveConsistency(ca.Size, cb.Size)
	if err := CheckConsistency(ca, cb, p); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("CheckConsistency of a fork: %v", err)
	}
}

func TestAttackEditedEntry(t *testing.T) {
	l := smallLog(t)
	x := l.full(l.size())
	for i, e := range x.Entries {
		if e.Kind == KindPlacement {
			x.Entries[i].NodeCountry = "CN"
			_, err := l.verify(encode(t, x))
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Line != i+2 || !errors.Is(err, ErrEntry) || ve.Seq != e.Seq || ve.Meeting != e.Meeting {
				t.Fatalf("edited entry %d: %v", i, err)
			}
			return
		}
	}
	t.Fatal("no placement")
}

func TestAttackReordered(t *testing.T) {
	l := smallLog(t)
	// A pair of entries of different chains, then of the same chain.
	for _, same := range []bool{false, true} {
		y := l.full(l.size())
		i, j := -1, -1
		for a := range y.Entries {
			for b := a + 1; b < len(y.Entries) && i < 0; b++ {
				if (y.Entries[a].Meeting == y.Entries[b].Meeting) == same {
					i, j = a, b
				}
			}
		}
		y.Entries[i], y.Entries[j] = y.Entries[j], y.Entries[i]
		y.Trailer = SignHeads(l.key, l.cp(l.size()), "", Heads(y.Entries))
		_, err := l.verify(encode(t, y))
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.Line != i+2 || !errors.Is(err, ErrOrder) {
			t.Fatalf("swapped %d and %d (same chain %v): %v", i, j, same, err)
		}
		// Indexes rewritten to match: the signatures break.
		y.Entries[i].Index, y.Entries[j].Index = int64(i), int64(j)
		want := ErrEntry // the index is signed
		if same {
			want = ErrChain
		}
		if _, err := l.verify(encode(t, y)); !errors.Is(err, want) {
			t.Fatalf("swapped and renumbered: %v", err)
		}
	}
	// In a pack too.
	p := l.pack("m1", l.size())
	p.Entries[0], p.Entries[1] = p.Entries[1], p.Entries[0]
	p.Proofs[0], p.Proofs[1] = p.Proofs[1], p.Proofs[0]
	if _, err := l.verify(encode(t, p)); !errors.Is(err, ErrChain) {
		t.Fatalf("reordered pack: %v", err)
	}
}

// The whole log re-signed with another key: the pinned key refuses it,
// whether the header names the other key or claims the real one.
func TestAttackOtherKey(t *testing.T) {
	real := smallLog(t)
	fake := newTestLog(t, 2)
	fake.fill(30, []string{"m1", "m2", "m3"}, 1)
	data := encode(t, fake.full(fake.size()))
	_, err := real.verify(data)
	wantCheckpointError(t, err, exportCheckpoint, ErrCheckpoint)

	x := fake.full(fake.size())
	x.Header.VerifierKey = real.vkey
	_, err = real.verify(encode(t, x))
	wantCheckpointError(t, err, exportCheckpoint, ErrCheckpoint)
	if !strings.Contains(err.Error(), "not signed by") {
		t.Fatalf("error %q", err)
	}
	// Trusting the file's key, it verifies: that is all --trust-file-key
	// can say.
	if _, err := VerifyExport(bytes.NewReader(data), VerifyOptions{TrustFileKey: true}); err != nil {
		t.Fatalf("trusting the file's key: %v", err)
	}
	if _, err := VerifyExport(bytes.NewReader(data), VerifyOptions{}); err == nil || !strings.Contains(err.Error(), "key is required") {
		t.Fatalf("no key: %v", err)
	}
	// A checkpoint held from the real log does not open under the fake.
	if _, err := VerifyExport(bytes.NewReader(data), VerifyOptions{TrustFileKey: true, Checkpoints: [][]byte{real.checkpoint(5)}}); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("real checkpoint against the fake key: %v", err)
	}
	// Entries of the fake key inside a real checkpoint's export fail.
	y := real.full(real.size())
	y.Entries[3] = fake.entries[3]
	if _, err := real.verify(encode(t, y)); !errors.Is(err, ErrEntry) {
		t.Fatalf("an entry signed by another key: %v", err)
	}
	// A verifier not made by NewVerifier still pins the key by its name
	// and hash.
	plain, _ := note.NewVerifier(real.vkey)
	if _, err := VerifyExport(bytes.NewReader(data), VerifyOptions{Log: plain}); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("plain verifier: %v", err)
	}
	if _, err := VerifyExport(bytes.NewReader(encode(t, real.full(real.size()))), VerifyOptions{Log: plain}); err != nil {
		t.Fatalf("plain verifier of the real log: %v", err)
	}
}

// The stream deleted and the log rebuilt from scratch with the real key:
// every entry re-sealed, a new tree, new checkpoints.
func TestAttackRebuilt(t *testing.T) {
	old := smallLog(t)
	held := old.checkpoint(old.size())
	mid := old.checkpoint(10)
	rebuilt := newTestLog(t, 1)
	rebuilt.clock = rebuilt.clock.Add(1e9) // the same events, sealed again later
	rebuilt.fill(50, []string{"m1", "m2", "m3"}, 1)
	data := encode(t, rebuilt.full(rebuilt.size()))
	if _, err := rebuilt.verify(data); err != nil {
		t.Fatalf("the rebuilt log is well formed: %v", err)
	}
	_, err := verifyNamed(rebuilt, data, []string{"held.txt#1", "held.txt#2"}, mid, held)
	wantCheckpointError(t, err, "held.txt#1", ErrInconsistent)
	if !strings.Contains(err.Error(), "rebuilt") {
		t.Fatalf("error %q", err)
	}
	// A smaller rebuilt log against the newest held.
	short := newTestLog(t, 1)
	short.fill(3, []string{"m1"}, 9)
	// It cannot be told from an export made before the held checkpoint.
	_, err = verifyNamed(short, encode(t, short.full(short.size())), []string{"latest"}, held)
	wantCheckpointError(t, err, "latest", ErrOlder)
}

func TestAttackPolicyHash(t *testing.T) {
	l := newTestLog(t, 1)
	l.create("m1")
	l.add("m1", Entry{Kind: KindPlacement, PolicyHash: "policy-m1-1"})
	l.add("m1", Entry{Kind: KindPolicyChange, PolicyHash: "policy-m1-2"})
	l.add("m1", Entry{Kind: KindPlacement, PolicyHash: "policy-m1-2"})
	l.add("m1", Entry{Kind: KindPlacement, PolicyHash: "policy-m1-1"}) // decided under the old policy: allowed
	l.add("m1", Entry{Kind: KindDisconnect})                           // no hash: allowed
	l.add("", Entry{Kind: KindNodeDown, PolicyHash: "floor"})          // the deployment chain is exempt
	l.create("m2")
	if _, err := l.verify(encode(t, l.full(l.size()))); err != nil {
		t.Fatalf("honest policy changes: %v", err)
	}
	bad := l.add("m1", Entry{Kind: KindPlacement, PolicyHash: "policy-m2-1"}) // another meeting's policy
	for _, x := range []Export{l.full(l.size()), l.pack("m1", l.size())} {
		_, err := l.verify(encode(t, x))
		var ve *VerifyError
		if !errors.As(err, &ve) || !errors.Is(err, ErrPolicy) || ve.Seq != bad.Seq || ve.Meeting != "m1" {
			t.Fatalf("policy hash without a policy_change: %v", err)
		}
		if !strings.Contains(err.Error(), "policy hash changed without a policy_change entry") {
			t.Fatalf("error %q", err)
		}
	}
	// A chain whose first entry brings a policy hash nobody introduced.
	l2 := newTestLog(t, 1)
	l2.add("m1", Entry{Kind: KindPlacement, PolicyHash: "p"})
	if _, err := l2.verify(encode(t, l2.full(l2.size()))); !errors.Is(err, ErrPolicy) {
		t.Fatalf("first entry with a policy hash: %v", err)
	}
}

// A pack holds only its meeting, each entry proved.
func TestAttackPack(t *testing.T) {
	l := smallLog(t)
	x := l.pack("m1", l.size())
	// An entry of another meeting, with a valid proof.
	var other Entry
	for _, e := range l.entries {
		if e.Meeting == "m2" && e.Index > x.Entries[0].Index && e.Index < x.Entries[1].Index {
			other = e
		}
	}
	if other.Seq == 0 {
		t.Skip("no m2 entry between m1's first two")
	}
	p, _ := l.tree.ProveInclusion(other.Index, l.size())
	y := x
	y.Entries = append([]Entry{x.Entries[0], other}, x.Entries[1:]...)
	y.Proofs = append(append(y.Proofs[:0:0], x.Proofs[0], p), x.Proofs[1:]...)
	if _, err := l.verify(encode(t, y)); !errors.Is(err, ErrWrongMeeting) {
		t.Fatalf("another meeting's entry in a pack: %v", err)
	}
	// A proof for another entry.
	y = l.pack("m1", l.size())
	y.Proofs[1] = y.Proofs[0]
	_, err := l.verify(encode(t, y))
	var ve *VerifyError
	if !errors.As(err, &ve) || !errors.Is(err, ErrNotIncluded) || ve.Seq != y.Entries[1].Seq {
		t.Fatalf("wrong inclusion proof: %v", err)
	}
	// An entry beyond the checkpoint.
	l.add("m1", Entry{Kind: KindDisconnect})
	y = l.pack("m1", l.size())
	y.Header.Checkpoint = string(l.checkpoint(l.size() - 1))
	if _, err := l.verify(encode(t, y)); !errors.Is(err, ErrNotIncluded) {
		t.Fatalf("entry beyond the checkpoint: %v", err)
	}
	// A consistency proof that does not hold.
	old := l.checkpoint(7)
	y = l.pack("m1", l.size(), 7)
	y.Consistency[0].Proof[0] = flipHash(y.Consistency[0].Proof[0], 3)
	_, err = verifyNamed(l, encode(t, y), []string{"old"}, old)
	wantCheckpointError(t, err, "old", ErrInconsistent)
}

func TestWitnessCosignature(t *testing.T) {
	l := smallLog(t)
	wsigner, wverifier := testWitness(t, 5, "witness.example/w1")
	cp := l.checkpoint(l.size())
	cosigned, err := Cosign(cp, l.verifier, wsigner)
	if err != nil {
		t.Fatal(err)
	}
	data := encode(t, l.full(l.size()))
	opts := func(held ...[]byte) VerifyOptions {
		return VerifyOptions{Log: l.verifier, Witnesses: []note.Verifier{wverifier}, Checkpoints: held, CheckpointNames: []string{"w1.latest"}}
	}
	sum, err := VerifyExport(bytes.NewReader(data), opts(cosigned))
	if err != nil {
		t.Fatalf("cosigned: %v", err)
	}
	if len(sum.Witnesses) != 1 || sum.Witnesses[0] != wverifier.Name() {
		t.Fatalf("summary %+v", sum)
	}
	// Cosigned at an older size: still a witness of this log.
	older, _ := Cosign(l.checkpoint(12), l.verifier, wsigner)
	if _, err := VerifyExport(bytes.NewReader(data), opts(older)); err != nil {
		t.Fatalf("older cosigned: %v", err)
	}
	// Missing.
	if _, err := VerifyExport(bytes.NewReader(data), opts(cp)); !errors.Is(err, ErrWitness) {
		t.Fatalf("no cosignature: %v", err)
	}
	if _, err := VerifyExport(bytes.NewReader(data), opts()); !errors.Is(err, ErrWitness) {
		t.Fatalf("no checkpoint: %v", err)
	}
	// Cosigned by another witness under the same name.
	osigner, _ := testWitness(t, 6, "witness.example/w1")
	byOther, _ := Cosign(cp, l.verifier, osigner)
	if _, err := VerifyExport(bytes.NewReader(data), opts(byOther)); !errors.Is(err, ErrWitness) {
		t.Fatalf("cosigned by another key: %v", err)
	}
	// Forged: the witness's signature line of another checkpoint.
	sigLine := func(signed []byte) string {
		for _, line := range strings.SplitAfter(string(signed), "\n") {
			if strings.HasPrefix(line, "— "+wverifier.Name()+" ") {
				return line
			}
		}
		t.Fatal("no witness signature")
		return ""
	}
	forged := []byte(string(cp) + sigLine(older))
	_, err = VerifyExport(bytes.NewReader(data), opts(forged))
	wantCheckpointError(t, err, "w1.latest", ErrWitness)
	if !strings.Contains(err.Error(), "forged") {
		t.Fatalf("error %q", err)
	}
}

func testWitness(t testing.TB, seed byte, name string) (note.Signer, note.Verifier) {
	t.Helper()
	key := testKey(seed)
	s, err := NewSigner(name, key)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := VerifierKey(name, key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// A later pack cut back to an earlier pack's entries, carrying the earlier
// pack's trailer, must not verify against the later checkpoint: the
// trailer is bound to the checkpoint and meeting it was made for.
func TestAttackPackTrailerSplice(t *testing.T) {
	l := newTestLog(t, 1)
	l.create("m1")
	l.add("m1", Entry{Kind: KindPlacement, Participant: "p1", Node: "de-1", NodeCountry: "DE", PolicyHash: "policy-m1-1"})
	early := l.pack("m1", l.size())
	l.fill(20, []string{"m2"}, 3)
	l.add("m1", Entry{Kind: KindPlacement, Participant: "p2", Node: "jp-1", NodeCountry: "JP", PolicyHash: "policy-m1-1"})
	l.fill(20, []string{"m2"}, 4)
	late := l.pack("m1", l.size())
	held := l.checkpoint(l.size())
	if _, err := l.verify(encode(t, late), held); err != nil {
		t.Fatalf("honest later pack: %v", err)
	}
	forged := late
	forged.Entries = late.Entries[:2]
	forged.Proofs = late.Proofs[:2]
	forged.Trailer = early.Trailer
	_, err := l.verify(encode(t, forged), held)
	var ve *VerifyError
	if !errors.As(err, &ve) || !errors.Is(err, ErrTrailer) || ve.Line != 2*len(forged.Entries)+2 {
		t.Fatalf("later pack with the earlier pack's trailer: %v, want a trailer error", err)
	}
	// The heads right, signed for another meeting or for the full log.
	for _, meeting := range []string{"m2", ""} {
		y := late
		y.Trailer = SignHeads(l.key, l.cp(l.size()), meeting, Heads(late.Entries))
		if _, err := l.verify(encode(t, y)); !errors.Is(err, ErrTrailer) {
			t.Fatalf("trailer signed for meeting %q: %v", meeting, err)
		}
	}
	// The heads right, signed for another checkpoint of the same size.
	y := late
	other := l.cp(l.size())
	other.Root[0] ^= 1
	y.Trailer = SignHeads(l.key, other, "m1", Heads(late.Entries))
	if _, err := l.verify(encode(t, y)); !errors.Is(err, ErrTrailer) {
		t.Fatalf("trailer signed for another root: %v", err)
	}
}

// The trailer's signed message is the layout docs/AUDIT.md gives, byte for
// byte, so that other implementations can check it.
func TestHeadsMessageLayout(t *testing.T) {
	var root tlog.Hash
	for i := range root {
		root[i] = byte(i)
	}
	cp := Checkpoint{Origin: "o", Size: 0x0102, Root: root}
	got := headsMessage(cp, "m", map[string]Head{"b": {Seq: 2, Hash: "hb"}, "a": {Seq: 1, Hash: "ha"}})
	u := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	f := func(s string) []byte { return append(u(uint64(len(s))), s...) }
	want := slices.Concat(f("oakmeet-audit-heads/2"), f("o"), u(0x0102), root[:], f("m"), u(2),
		f("a"), u(1), f("ha"), f("b"), u(2), f("hb"))
	if !bytes.Equal(got, want) {
		t.Fatalf("headsMessage =\n%x\nwant\n%x", got, want)
	}
}
