package keymsg

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/oakmeet/oakmeet/e2ee/identity"
)

// testCheckpoint stands for a signed checkpoint of the transparency log:
// keymsg carries it without reading it.
const testCheckpoint = "oakmeet.audit/0123456789abcdef\n42\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n\n— oakmeet.audit/0123456789abcdef AbCdEf0123456789\n"

func TestCheckpointRoundTrip(t *testing.T) {
	alice := newTestMember(t, "m1", "alice", 1)
	c, err := NewCheckpoint("m1", "alice", testCheckpoint, alice.id)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	if len(fields) != 6 || fields["v"] != float64(2) || fields["type"] != "checkpoint" || fields["meeting"] != "m1" ||
		fields["participant"] != "alice" || fields["checkpoint"] != testCheckpoint || fields["sig"] != enc(c.Signature) {
		t.Fatalf("wire form %s", b)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	back := got.(*Checkpoint)
	if back.Meeting != "m1" || back.Participant != "alice" || back.Checkpoint != testCheckpoint || !bytes.Equal(back.Signature, c.Signature) {
		t.Fatalf("decoded %+v", back)
	}
	if err := back.Verify(alice.id.Public()); err != nil {
		t.Fatal(err)
	}
}

// The signed bytes, byte for byte as docs/E2EE.md gives them.
func TestCheckpointTBS(t *testing.T) {
	got := checkpointTBS("m1", "alice", "CP")
	var want []byte
	want = append(want, "oakmeet-e2ee-v2 checkpoint"...)
	want = append(want, 0)
	for _, f := range []string{"m1", "alice", "CP"} {
		want = binary.BigEndian.AppendUint16(want, uint16(len(f)))
		want = append(want, f...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("TBS %x, want %x", got, want)
	}
	const golden = "6f616b6d6565742d653265652d763220636865636b706f696e74" + "00" + "0002" + "6d31" + "0005" + "616c696365" + "0002" + "4350"
	if hex.EncodeToString(got) != golden {
		t.Fatalf("TBS %x, want %s", got, golden)
	}
}

func TestCheckpointVerifyRejects(t *testing.T) {
	alice := newTestMember(t, "m1", "alice", 1)
	mallory := newTestMember(t, "m1", "mallory", 9)
	c, err := NewCheckpoint("m1", "alice", testCheckpoint, alice.id)
	if err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Checkpoint){
		"other meeting":     func(c *Checkpoint) { c.Meeting = "m2" },
		"other participant": func(c *Checkpoint) { c.Participant = "bob" },
		"other checkpoint":  func(c *Checkpoint) { c.Checkpoint = strings.Replace(c.Checkpoint, "42", "41", 1) },
		"flipped sig bit":   func(c *Checkpoint) { c.Signature = bytes.Clone(c.Signature); c.Signature[5] ^= 1 },
	} {
		bad := *c
		mutate(&bad)
		if err := bad.Verify(alice.id.Public()); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := c.Verify(mallory.id.Public()); !errors.Is(err, ErrBadSignature) {
		t.Errorf("another member's key: %v", err)
	}
	if err := c.Verify(nil); !errors.Is(err, ErrBadSignature) {
		t.Errorf("no key: %v", err)
	}
	for name, text := range map[string]string{
		"empty":        "",
		"too long":     strings.Repeat("x", MaxCheckpointLen+1),
		"invalid utf8": "\xff\xfe",
	} {
		if _, err := NewCheckpoint("m1", "alice", text, alice.id); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s checkpoint: %v", name, err)
		}
	}
	for name, wire := range map[string]string{
		"unknown field": `{"v":2,"type":"checkpoint","meeting":"m1","participant":"alice","checkpoint":"x","sig":"` + enc(c.Signature) + `","extra":1}`,
		"short sig":     `{"v":2,"type":"checkpoint","meeting":"m1","participant":"alice","checkpoint":"x","sig":"AAAA"}`,
		"no checkpoint": `{"v":2,"type":"checkpoint","meeting":"m1","participant":"alice","sig":"` + enc(c.Signature) + `"}`,
	} {
		if _, err := Decode([]byte(wire)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// checkpointVector is testdata/checkpoint.json: a checkpoint message with
// the identity seed that signed it (Ed25519 signs deterministically, so
// the file is the same each time it is made), for the browser's
// implementation to test against.
type checkpointVector struct {
	Comment      string          `json:"comment"`
	IdentitySeed string          `json:"identity_seed"`
	Identity     string          `json:"identity"`
	TBS          string          `json:"tbs"`
	Message      json.RawMessage `json:"message"`
}

func TestCheckpointVector(t *testing.T) {
	const path = "testdata/checkpoint.json"
	id, err := identity.FromSeed(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCheckpoint("m1", "alice", testCheckpoint, id)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	want := checkpointVector{
		Comment: "A checkpoint message of participant alice in meeting m1. identity_seed is the Ed25519 seed (RFC 8032) of alice's identity key; " +
			"tbs is the hex of the signed bytes: label \"oakmeet-e2ee-v2 checkpoint\", 0x00, then meeting, participant and checkpoint, each as a 2-byte big-endian length and its UTF-8 bytes.",
		IdentitySeed: hex.EncodeToString(bytes.Repeat([]byte{1}, 32)),
		Identity:     enc(id.Public()),
		TBS:          hex.EncodeToString(checkpointTBS(c.Meeting, c.Participant, c.Checkpoint)),
		Message:      msg,
	}
	if *update {
		b, _ := json.MarshalIndent(want, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got checkpointVector
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.TBS != want.TBS || got.Identity != want.Identity || !bytes.Equal(compact(t, got.Message), compact(t, want.Message)) {
		t.Fatalf("%s does not match what this package makes (run with -update after a deliberate change)", path)
	}
	m, err := Decode(compact(t, got.Message))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.(*Checkpoint).Verify(ed25519.PublicKey(id.Public())); err != nil {
		t.Fatal(err)
	}
}

func compact(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
