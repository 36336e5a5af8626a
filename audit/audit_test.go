package audit

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// testKey derives a fixed key so failures reproduce.
func testKey(seed byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed + byte(i)
	}
	return ed25519.NewKeyFromSeed(s)
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 500, time.UTC)

// interleaved seals entries of two meetings and the deployment chain, mixed
// the way a live log mixes them.
func interleaved(key ed25519.PrivateKey) []Entry {
	chains := map[string]*Chain{}
	order := []string{"m1", "m2", "m1", "", "m2", "m1", "", "m2", "m1"}
	var out []Entry
	for i, m := range order {
		c := chains[m]
		if c == nil {
			c = NewChain(key, m, Head{})
			chains[m] = c
		}
		out = append(out, c.Seal(Entry{
			Index:       int64(i),
			Time:        t0.Add(time.Duration(i) * time.Second),
			Kind:        KindPlacement,
			Participant: fmt.Sprintf("p%d", i),
			Node:        "node-fra-1",
			NodeCountry: "DE",
			PolicyHash:  "ph",
			Reason:      "closest allowed node",
		}))
	}
	return out
}

func TestSealLinksEntries(t *testing.T) {
	key := testKey(1)
	c := NewChain(key, "m1", Head{})
	if c.Head() != (Head{}) {
		t.Fatalf("new chain head = %+v, want zero", c.Head())
	}
	loc := time.FixedZone("CET", 3600)
	e1 := c.Seal(Entry{Time: t0.In(loc), Kind: KindMeetingCreated, Meeting: "ignored", Seq: 99, PrevHash: "x"})
	e2 := c.Seal(Entry{Time: t0, Kind: KindPlacement})
	if e1.Meeting != "m1" || e1.Seq != 1 || e1.PrevHash != GenesisHash {
		t.Errorf("first entry = %+v, want meeting m1, seq 1, genesis prev_hash", e1)
	}
	if e1.Time.Location() != time.UTC || !e1.Time.Equal(t0) {
		t.Errorf("time = %v, want %v in UTC", e1.Time, t0)
	}
	if e2.Seq != 2 || e2.PrevHash != e1.Hash {
		t.Errorf("second entry seq %d prev %s, want 2 and %s", e2.Seq, e2.PrevHash, e1.Hash)
	}
	if c.Head() != e2.Head() {
		t.Errorf("head = %+v, want %+v", c.Head(), e2.Head())
	}
	// A writer restarting from storage resumes the chain from its last entry.
	resumed := NewChain(key, "m1", e2.Head())
	e3 := resumed.Seal(Entry{Time: t0, Kind: KindDisconnect})
	if err := Verify(key.Public().(ed25519.PublicKey), []Entry{e1, e2, e3}); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

const pinnedDigest = "5c61e496bfa4acd1a0e0c3beb86d9ff16e1cec437d85717fc16b7969d8f6d1ad"

// TestCanonicalEncoding pins the documented encoding by building it by hand,
// so a change to the hashing code that breaks old logs fails here.
func TestCanonicalEncoding(t *testing.T) {
	e := Entry{
		Seq: 7, Index: 1234, Time: time.Date(2026, 3, 1, 12, 0, 0, 500000000, time.UTC), Kind: "placement", Meeting: "m1",
		Participant: "p", Node: "n", NodeCountry: "DE", PolicyHash: "ph", Reason: "r", PrevHash: GenesisHash,
	}
	var b []byte
	field := func(s string) {
		b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	field("oakmeet-audit-entry/2")
	b = binary.BigEndian.AppendUint64(b, 7)
	b = binary.BigEndian.AppendUint64(b, 1234)
	for _, s := range []string{"2026-03-01T12:00:00.5Z", "placement", "m1", "p", "n", "DE", "ph", "r", GenesisHash} {
		field(s)
	}
	want := sha256.Sum256(b)
	if got := entryDigest(&e); got != want {
		t.Fatalf("digest = %x, want %x", got, want)
	}
	// Pinned as well, so that the test and the code cannot change together.
	if got := hex.EncodeToString(want[:]); got != pinnedDigest {
		t.Fatalf("digest = %s, want %s", got, pinnedDigest)
	}
	// The index is signed: an entry cannot be moved in the log.
	moved := e
	moved.Index++
	if entryDigest(&moved) == entryDigest(&e) {
		t.Fatal("changing the index kept the digest")
	}
	// Length prefixes keep field boundaries: moving a byte between adjacent
	// fields changes the hash.
	moved = e
	moved.Participant, moved.Node = "pn", ""
	if entryDigest(&moved) == entryDigest(&e) {
		t.Fatal("moving a byte between fields kept the digest")
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	key := testKey(1)
	pub := key.Public().(ed25519.PublicKey)
	other := testKey(2)
	base := interleaved(key)

	tests := []struct {
		name     string
		mutate   func([]Entry) []Entry
		wantLine int
	}{
		{"untouched", func(es []Entry) []Entry { return es }, 0},
		{"empty", func([]Entry) []Entry { return nil }, 0},
		{"edit reason", func(es []Entry) []Entry { es[2].Reason = "x"; return es }, 3},
		{"edit node", func(es []Entry) []Entry { es[4].Node = "node-pek-1"; return es }, 5},
		{"edit country", func(es []Entry) []Entry { es[0].NodeCountry = "CN"; return es }, 1},
		{"edit time", func(es []Entry) []Entry { es[5].Time = es[5].Time.Add(time.Nanosecond); return es }, 6},
		{"edit kind", func(es []Entry) []Entry { es[3].Kind = KindRefusal; return es }, 4},
		{"edit participant", func(es []Entry) []Entry { es[1].Participant = ""; return es }, 2},
		{"edit policy hash", func(es []Entry) []Entry { es[7].PolicyHash = "other"; return es }, 8},
		{"move to other chain", func(es []Entry) []Entry { es[0].Meeting = "m3"; return es }, 1},
		{"edit seq", func(es []Entry) []Entry { es[2].Seq = 3; return es }, 3},
		{"edit prev_hash", func(es []Entry) []Entry { es[2].PrevHash = es[0].Hash[:63] + "0"; return es }, 3},
		{"upper-case hash", func(es []Entry) []Entry {
			es[8].Hash = fmt.Sprintf("%X", mustHex(t, es[8].Hash))
			return es
		}, 9},
		{"re-hashed without key", func(es []Entry) []Entry {
			es[2].Reason = "x"
			sum := entryDigest(&es[2])
			es[2].Hash = hex.EncodeToString(sum[:])
			return es
		}, 3},
		{"bad sig", func(es []Entry) []Entry { es[6].Sig = es[5].Sig; return es }, 7},
		{"sig not base64", func(es []Entry) []Entry { es[6].Sig = "!!"; return es }, 7},
		{"line break in sig", func(es []Entry) []Entry { es[6].Sig = es[6].Sig[:10] + "\n" + es[6].Sig[10:]; return es }, 7},
		{"remove first", func(es []Entry) []Entry { return es[1:] }, 2},
		{"remove middle", func(es []Entry) []Entry { return append(es[:2:2], es[3:]...) }, 5},
		{"swap in chain", func(es []Entry) []Entry { es[2], es[5] = es[5], es[2]; return es }, 3},
		{"duplicate", func(es []Entry) []Entry { return append(es[:3:3], es[2:]...) }, 4},
		{"insert forged", func(es []Entry) []Entry {
			forged := NewChain(other, "m1", es[2].Head()).Seal(Entry{Time: t0, Kind: KindPlacement})
			return append(es[:3:3], append([]Entry{forged}, es[3:]...)...)
		}, 4},
		{"whole chain by other key", func(es []Entry) []Entry {
			return append(es, NewChain(other, "m9", Head{}).Seal(Entry{Time: t0, Kind: KindPlacement}))
		}, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es := tt.mutate(append([]Entry(nil), base...))
			err := Verify(pub, es)
			if tt.wantLine == 0 {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("Verify = %v, want *VerifyError", err)
			}
			if ve.Line != tt.wantLine {
				t.Errorf("error names line %d, want %d: %v", ve.Line, tt.wantLine, err)
			}
			if got := es[ve.Line-1]; ve.Seq != got.Seq || ve.Meeting != got.Meeting || ve.Reason == "" {
				t.Errorf("error %+v does not describe entry %+v", ve, got)
			}
		})
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerifyWrongKey(t *testing.T) {
	es := interleaved(testKey(1))
	var ve *VerifyError
	if err := Verify(testKey(2).Public().(ed25519.PublicKey), es); !errors.As(err, &ve) || ve.Line != 1 {
		t.Fatalf("Verify with another key = %v, want *VerifyError at line 1", err)
	}
	if err := Verify(ed25519.PublicKey{1, 2, 3}, es); err == nil {
		t.Fatal("Verify accepted a short public key")
	}
}

func TestSealInvalidUTF8SurvivesJSON(t *testing.T) {
	key := testKey(1)
	e := NewChain(key, "m\xff", Head{}).Seal(Entry{Time: t0, Kind: "k\xfe", Reason: "bad \xc3"})
	line, err := encodeLine(&e)
	if err != nil {
		t.Fatal(err)
	}
	var back Entry
	if err := decodeLine(line[:len(line)-1], &back); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if !reflect.DeepEqual(back, e) {
		t.Fatalf("round trip changed the entry:\n got %+v\nwant %+v", back, e)
	}
	if err := Verify(key.Public().(ed25519.PublicKey), []Entry{back}); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func TestHeads(t *testing.T) {
	es := interleaved(testKey(1))
	got := Heads(es)
	want := map[string]Head{"m1": es[8].Head(), "m2": es[7].Head(), "": es[6].Head()}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Heads = %v, want %v", got, want)
	}
}

func BenchmarkSeal(b *testing.B) {
	c := NewChain(testKey(1), "m1", Head{})
	e := Entry{Time: t0, Kind: KindPlacement, Participant: "p1", Node: "node-fra-1", NodeCountry: "DE", PolicyHash: "ph", Reason: "closest allowed node"}
	b.ReportAllocs()
	for b.Loop() {
		c.Seal(e)
	}
}
