package keymsg

import (
	"bytes"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/oakmeet/oakmeet/e2ee/identity"
)

type testMember struct {
	id   *identity.Identity
	priv hpke.PrivateKey
	ann  *Announcement
}

// newTestMember makes participant pid, whose display name is pid
// capitalised ("alice" is "Alice").
func newTestMember(t testing.TB, meeting, pid string, n byte) testMember {
	t.Helper()
	id, err := identity.FromSeed(bytes.Repeat([]byte{n}, 32))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := KEM().NewPrivateKey(bytes.Repeat([]byte{n + 100}, 32))
	if err != nil {
		t.Fatal(err)
	}
	ann, err := NewAnnouncement(meeting, pid, strings.ToUpper(pid[:1])+pid[1:], id, priv.PublicKey().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return testMember{id, priv, ann}
}

func newTestEpoch(t testing.TB) (*Epoch, []testMember, []byte) {
	t.Helper()
	ms := []testMember{newTestMember(t, "m1", "alice", 1), newTestMember(t, "m1", "bob", 2), newTestMember(t, "m1", "carol", 3)}
	secret := bytes.Repeat([]byte{0xee}, SecretSize)
	roster := []Entry{ms[0].ann.Entry, ms[1].ann.Entry, ms[2].ann.Entry}
	m, err := NewEpoch("m1", 7, roster, secret, ms[0].id)
	if err != nil {
		t.Fatal(err)
	}
	return m, ms, secret
}

func TestAnnouncementRoundTrip(t *testing.T) {
	a := newTestMember(t, "m1", "alice", 1).ann
	b, err := Encode(a)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"v", "type", "meeting", "participant", "name", "identity", "hpke", "sig"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("wire form lacks %q: %s", k, b)
		}
	}
	if len(fields) != 8 || fields["type"] != "announce" || fields["v"] != float64(2) || fields["name"] != "Alice" {
		t.Errorf("wire form %s", b)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	back := got.(*Announcement)
	if back.Meeting != "m1" || !back.Same(a.Entry) || !bytes.Equal(back.Signature, a.Signature) {
		t.Fatalf("decoded %+v, want %+v", back, a)
	}
	if err := back.Verify(); err != nil {
		t.Fatal(err)
	}
}

func TestAnnouncementVerifyRejects(t *testing.T) {
	a := newTestMember(t, "m1", "alice", 1).ann
	other := newTestMember(t, "m1", "mallory", 9).ann
	tests := map[string]func(*Announcement){
		"other meeting":     func(a *Announcement) { a.Meeting = "m2" },
		"other participant": func(a *Announcement) { a.Participant = "bob" },
		"renamed":           func(a *Announcement) { a.Name = "Alicia" },
		"name emptied":      func(a *Announcement) { a.Name = "" },
		"swapped hpke key":  func(a *Announcement) { a.HPKE = other.HPKE },
		"swapped identity":  func(a *Announcement) { a.Identity = other.Identity },
	}
	for name, mutate := range tests {
		c := *a
		mutate(&c)
		if err := c.Verify(); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: Verify = %v, want ErrBadSignature", name, err)
		}
	}
	// A low-order X25519 point (here zero) can be signed but nothing can be
	// sealed to it: it must not get into a roster.
	id, _ := identity.FromSeed(bytes.Repeat([]byte{4}, 32))
	bad, err := NewAnnouncement("m1", "eve", "Eve", id, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Verify(); !errors.Is(err, ErrBadKey) {
		t.Errorf("low-order HPKE key: Verify = %v, want ErrBadKey", err)
	}
	if _, err := NewEpoch("m1", 1, []Entry{newTestMember(t, "m1", "a", 1).ann.Entry, bad.Entry}, make([]byte, 32), newTestMember(t, "m1", "a", 1).id); !errors.Is(err, ErrSeal) {
		t.Errorf("NewEpoch with a low-order key = %v, want ErrSeal", err)
	}
}

func TestEpochRoundTripAndOpen(t *testing.T) {
	m, ms, secret := newTestEpoch(t)
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	back := got.(*Epoch)
	if err := back.Verify(); err != nil {
		t.Fatal(err)
	}
	if back.Epoch != 7 || back.Leader().Participant != "alice" || back.Index("carol") != 2 || back.Index("dave") != -1 {
		t.Fatalf("decoded %+v", back)
	}
	for i, tm := range ms {
		s, err := back.Open(i, tm.priv)
		if err != nil || !bytes.Equal(s, secret) {
			t.Fatalf("member %d Open = %x, %v", i, s, err)
		}
	}
	if _, err := back.Open(0, ms[1].priv); !errors.Is(err, ErrSeal) {
		t.Errorf("opening another member's copy: %v", err)
	}
	if _, err := back.Open(3, ms[0].priv); !errors.Is(err, ErrSeal) {
		t.Errorf("opening a copy that does not exist: %v", err)
	}
}

func TestEpochVerifyRejects(t *testing.T) {
	mallory := newTestMember(t, "m1", "mallory", 9)
	tests := map[string]func(*Epoch){
		"epoch changed":       func(m *Epoch) { m.Epoch++ },
		"meeting changed":     func(m *Epoch) { m.Meeting = "m2" },
		"sealed copy changed": func(m *Epoch) { m.Sealed[1][40] ^= 1 },
		"copies reordered":    func(m *Epoch) { m.Sealed[1], m.Sealed[2] = m.Sealed[2], m.Sealed[1] },
		"entry dropped":       func(m *Epoch) { m.Roster, m.Sealed = m.Roster[:2], m.Sealed[:2] },
		"entry renamed":       func(m *Epoch) { m.Roster[1].Name = "Robert" },
		"hpke key swapped": func(m *Epoch) {
			m.Roster[2].HPKE = mallory.ann.HPKE
		},
		"entry re-signed by another identity": func(m *Epoch) {
			a, _ := NewAnnouncement("m1", "carol", "Carol", mallory.id, mallory.ann.HPKE)
			m.Roster[2] = a.Entry
		},
		"signed by another key": func(m *Epoch) {
			m.Signature = mallory.id.Sign(epochTBS(m.Meeting, m.Epoch, m.Roster, m.Sealed))
		},
	}
	for name, mutate := range tests {
		m, _, _ := newTestEpoch(t)
		mutate(m)
		if err := m.Verify(); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: Verify = %v, want ErrBadSignature", name, err)
		}
	}
}

func TestSealBoundToEpoch(t *testing.T) {
	m, ms, _ := newTestEpoch(t)
	next, err := NewEpoch("m1", 8, m.Roster, bytes.Repeat([]byte{1}, 32), ms[0].id)
	if err != nil {
		t.Fatal(err)
	}
	next.Sealed[1] = m.Sealed[1] // a copy from epoch 7 in epoch 8
	if _, err := next.Open(1, ms[1].priv); !errors.Is(err, ErrSeal) {
		t.Fatalf("copy sealed for epoch 7 opened as epoch 8: %v", err)
	}
}

func TestNewEpochRequiresLeaderFirst(t *testing.T) {
	m, ms, secret := newTestEpoch(t)
	if _, err := NewEpoch("m1", 8, m.Roster, secret, ms[1].id); !errors.Is(err, ErrMalformed) {
		t.Errorf("leader not first: %v", err)
	}
	if _, err := NewEpoch("m1", 8, m.Roster, secret[:16], ms[0].id); !errors.Is(err, ErrMalformed) {
		t.Errorf("short secret: %v", err)
	}
	if _, err := NewEpoch("m1", 0, m.Roster, secret, ms[0].id); !errors.Is(err, ErrMalformed) {
		t.Errorf("epoch 0: %v", err)
	}
}

// newTestAckCommit makes bob's ack of m and alice's commit of it.
func newTestAckCommit(t testing.TB, m *Epoch, ms []testMember) (*Ack, *Commit) {
	t.Helper()
	d := m.Digest()
	a, err := NewAck(m.Meeting, m.Epoch, "bob", d[:], ms[1].id)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCommit(m.Meeting, m.Epoch, d[:], ms[0].id)
	if err != nil {
		t.Fatal(err)
	}
	return a, c
}

func TestDigest(t *testing.T) {
	m, ms, _ := newTestEpoch(t)
	d := m.Digest()
	if d != sha256.Sum256(epochTBS(m.Meeting, m.Epoch, m.Roster, m.Sealed)) {
		t.Fatal("digest is not SHA-256 of the signed bytes")
	}
	other, err := NewEpoch("m1", 7, m.Roster, bytes.Repeat([]byte{0xee}, SecretSize), ms[0].id)
	if err != nil {
		t.Fatal(err)
	}
	if other.Digest() == d {
		t.Error("two sealings of one epoch number have one digest")
	}
	renamed := *m
	renamed.Roster = slices.Clone(m.Roster)
	renamed.Roster[2].Name = "Caroline"
	if renamed.Digest() == d {
		t.Error("a name is not in the digest")
	}
}

func TestAckCommitRoundTripAndVerify(t *testing.T) {
	m, ms, _ := newTestEpoch(t)
	a, c := newTestAckCommit(t, m, ms)
	for _, msg := range []Message{a, c} {
		b, err := Encode(msg)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(back) != fmt.Sprint(msg) {
			t.Fatalf("round trip: %v, want %v", back, msg)
		}
	}
	if err := a.Verify(ms[1].id.Public()); err != nil {
		t.Fatal(err)
	}
	if err := c.Verify(ms[0].id.Public()); err != nil {
		t.Fatal(err)
	}
	ackTests := map[string]func(*Ack){
		"other epoch":       func(a *Ack) { a.Epoch++ },
		"other meeting":     func(a *Ack) { a.Meeting = "m2" },
		"other participant": func(a *Ack) { a.Participant = "carol" },
		"other digest":      func(a *Ack) { a.Digest = bytes.Repeat([]byte{1}, DigestSize) },
	}
	for name, mutate := range ackTests {
		x := *a
		mutate(&x)
		if err := x.Verify(ms[1].id.Public()); !errors.Is(err, ErrBadSignature) {
			t.Errorf("ack, %s: Verify = %v", name, err)
		}
	}
	if err := a.Verify(ms[2].id.Public()); !errors.Is(err, ErrBadSignature) {
		t.Errorf("ack checked with another member's key: %v", err)
	}
	commitTests := map[string]func(*Commit){
		"other epoch":   func(c *Commit) { c.Epoch++ },
		"other meeting": func(c *Commit) { c.Meeting = "m2" },
		"other digest":  func(c *Commit) { c.Digest = bytes.Repeat([]byte{1}, DigestSize) },
	}
	for name, mutate := range commitTests {
		x := *c
		mutate(&x)
		if err := x.Verify(ms[0].id.Public()); !errors.Is(err, ErrBadSignature) {
			t.Errorf("commit, %s: Verify = %v", name, err)
		}
	}
	if err := c.Verify(ms[1].id.Public()); !errors.Is(err, ErrBadSignature) {
		t.Errorf("commit checked with a member's key: %v", err)
	}
	// An ack's signature is never a commit's: the labels differ.
	forged := &Commit{Meeting: a.Meeting, Epoch: a.Epoch, Digest: a.Digest, Signature: a.Signature}
	if err := forged.Verify(ms[1].id.Public()); !errors.Is(err, ErrBadSignature) {
		t.Errorf("an ack's signature passes as a commit: %v", err)
	}
}

func TestVerifyCached(t *testing.T) {
	m, _, _ := newTestEpoch(t)
	known := map[string]bool{}
	for _, e := range m.Roster {
		known[e.CacheKey()] = true
	}
	calls := 0
	isKnown := func(e Entry) bool { calls++; return known[e.CacheKey()] }
	if err := m.VerifyCached(isKnown); err != nil || calls != 3 {
		t.Fatalf("VerifyCached = %v after %d look-ups", err, calls)
	}
	// A changed entry has another cache key, so it is verified (and fails).
	m.Roster[1].Name = "Robert"
	if err := m.VerifyCached(isKnown); !errors.Is(err, ErrBadSignature) {
		t.Errorf("renamed entry passed the cache: %v", err)
	}
	m.Roster[1].Name = "Bob"
	// The leader's signature is always checked.
	m.Signature[0] ^= 1
	if err := m.VerifyCached(isKnown); !errors.Is(err, ErrBadSignature) {
		t.Errorf("bad leader signature with a warm cache: %v", err)
	}
}

func TestSyncRoundTrip(t *testing.T) {
	b, err := Encode(&Sync{Meeting: "m1", Epoch: 12, Leader: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil || *got.(*Sync) != (Sync{Meeting: "m1", Epoch: 12, Leader: "alice"}) {
		t.Fatalf("Decode = %+v, %v", got, err)
	}
}

func TestDecodeRejects(t *testing.T) {
	m, ms, _ := newTestEpoch(t)
	epoch, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	ann, err := Encode(&Announcement{Meeting: "m1", Entry: m.Roster[1]})
	if err != nil {
		t.Fatal(err)
	}
	a, c := newTestAckCommit(t, m, ms)
	ack, err := Encode(a)
	if err != nil {
		t.Fatal(err)
	}
	commit, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	// edit rewrites one top-level field of a valid message.
	edit := func(msg []byte, key string, value any) []byte {
		var f map[string]any
		if err := json.Unmarshal(msg, &f); err != nil {
			t.Fatal(err)
		}
		if value == nil {
			delete(f, key)
		} else {
			f[key] = value
		}
		b, _ := json.Marshal(f)
		return b
	}
	short := enc(make([]byte, 31))
	tests := []struct {
		name string
		msg  []byte
		want error
	}{
		{"not JSON", []byte("hello"), ErrMalformed},
		{"empty", nil, ErrMalformed},
		{"JSON array", []byte("[1,2]"), ErrMalformed},
		{"version 1", edit(ann, "v", 1), ErrVersion},
		{"version 3", edit(ann, "v", 3), ErrVersion},
		{"no version", edit(ann, "v", nil), ErrVersion},
		{"unknown type", edit(ann, "type", "hello"), ErrMalformed},
		{"unknown field", edit(ann, "extra", 1), ErrMalformed},
		{"field of another type", edit(ann, "epoch", 3), ErrMalformed},
		{"trailing data", append(bytes.Clone(ann), []byte(" {}")...), ErrMalformed},
		{"no meeting", edit(ann, "meeting", nil), ErrMalformed},
		{"long meeting", edit(ann, "meeting", strings.Repeat("m", MaxIDLen+1)), ErrMalformed},
		{"no participant", edit(ann, "participant", ""), ErrMalformed},
		{"bad base64", edit(ann, "identity", "!!!"), ErrMalformed},
		{"short identity", edit(ann, "identity", short), ErrMalformed},
		{"short hpke", edit(ann, "hpke", short), ErrMalformed},
		{"no sig", edit(ann, "sig", nil), ErrMalformed},
		{"no name", edit(ann, "name", nil), ErrMalformed},
		{"name null", edit(ann, "name", json.RawMessage("null")), ErrMalformed},
		{"long name", edit(ann, "name", strings.Repeat("n", MaxNameLen+1)), ErrMalformed},
		{"name not a string", edit(ann, "name", 3), ErrMalformed},
		{"roster entry without name", edit(epoch, "roster", []any{map[string]any{"participant": "alice", "identity": enc(m.Roster[0].Identity), "hpke": enc(m.Roster[0].HPKE), "sig": enc(m.Roster[0].Signature)}, toWireEntry(m.Roster[1]), toWireEntry(m.Roster[2])}), ErrMalformed},
		{"ack without digest", edit(ack, "digest", nil), ErrMalformed},
		{"ack short digest", edit(ack, "digest", short), ErrMalformed},
		{"ack without participant", edit(ack, "participant", nil), ErrMalformed},
		{"ack epoch 0", edit(ack, "epoch", 0), ErrMalformed},
		{"ack with a leader field", edit(ack, "leader", "alice"), ErrMalformed},
		{"ack without sig", edit(ack, "sig", nil), ErrMalformed},
		{"commit without digest", edit(commit, "digest", nil), ErrMalformed},
		{"commit with participant", edit(commit, "participant", "bob"), ErrMalformed},
		{"commit short sig", edit(commit, "sig", short), ErrMalformed},
		{"epoch 0", edit(epoch, "epoch", 0), ErrMalformed},
		{"epoch too large", edit(epoch, "epoch", uint64(MaxEpoch+1)), ErrMalformed},
		{"epoch negative", edit(epoch, "epoch", -1), ErrMalformed},
		{"epoch fractional", edit(epoch, "epoch", 1.5), ErrMalformed},
		{"empty roster", edit(edit(epoch, "roster", []any{}), "sealed", []any{}), ErrMalformed},
		{"copy missing", edit(epoch, "sealed", []any{enc(m.Sealed[0])}), ErrMalformed},
		{"short copy", edit(epoch, "sealed", []any{enc(m.Sealed[0]), enc(m.Sealed[1]), short}), ErrMalformed},
		{"duplicate participant", edit(edit(epoch, "roster", []any{toWireEntry(m.Roster[0]), toWireEntry(m.Roster[0])}), "sealed", []any{enc(m.Sealed[0]), enc(m.Sealed[0])}), ErrMalformed},
		{"sync without leader", []byte(`{"v":2,"type":"sync","meeting":"m1","epoch":3}`), ErrMalformed},
		{"too large", append([]byte(`{"v":2,"type":"sync","meeting":"`), bytes.Repeat([]byte("a"), MaxMessageSize)...), ErrMalformed},
	}
	for _, tc := range tests {
		if got, err := Decode(tc.msg); !errors.Is(err, tc.want) || got != nil {
			t.Errorf("%s: Decode = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

// TestLargestRoster: an epoch of MaxRoster entries with the longest ids
// and names encodes and decodes; one whose names need JSON escapes past
// the size limit is refused when made, not only when received.
func TestLargestRoster(t *testing.T) {
	id, _ := identity.FromSeed(bytes.Repeat([]byte{7}, 32))
	key, _ := KEM().NewPrivateKey(bytes.Repeat([]byte{8}, 32))
	build := func(name func(i int) string) *Epoch {
		m := &Epoch{Meeting: strings.Repeat("m", MaxIDLen), Epoch: 1, Signature: bytes.Repeat([]byte{1}, SignatureSize)}
		for i := range MaxRoster {
			p := fmt.Sprintf("%0*d", MaxIDLen, i)
			a, err := NewAnnouncement(m.Meeting, p, name(i), id, key.PublicKey().Bytes())
			if err != nil {
				t.Fatal(err)
			}
			m.Roster = append(m.Roster, a.Entry)
			m.Sealed = append(m.Sealed, make([]byte, SealedSize))
		}
		return m
	}
	b, err := Encode(build(func(int) string { return strings.Repeat("n", MaxNameLen) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("largest plain epoch: %d bytes", len(b))
	if _, err := Decode(b); err != nil {
		t.Fatal(err)
	}
	if _, err := Encode(build(func(int) string { return strings.Repeat("<", MaxNameLen) })); !errors.Is(err, ErrMalformed) {
		t.Fatalf("an epoch past the size limit: %v", err)
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	for _, m := range []Message{
		&Sync{Meeting: "m1", Epoch: 0, Leader: "a"},
		&Announcement{Meeting: "m1"},
		&Epoch{Meeting: "m1", Epoch: 1},
		&Ack{Meeting: "m1", Epoch: 1, Participant: "bob", Digest: make([]byte, 31), Signature: make([]byte, 64)},
		&Commit{Meeting: "m1", Epoch: 1, Digest: make([]byte, 32)},
		nil,
	} {
		if _, err := Encode(m); !errors.Is(err, ErrMalformed) {
			t.Errorf("Encode(%v) = %v, want ErrMalformed", m, err)
		}
	}
}
