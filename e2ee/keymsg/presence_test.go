package keymsg

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/oakmeet/oakmeet/e2ee/identity"
)

func TestPresenceRoundTrip(t *testing.T) {
	alice := newTestMember(t, "m1", "alice", 1)
	p, err := NewPresence(Presence{Meeting: "m1", Participant: "alice", Seq: 3, Mic: false, Camera: true, Hand: true}, alice.id)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	if len(fields) != 10 || fields["v"] != float64(2) || fields["type"] != "presence" || fields["meeting"] != "m1" ||
		fields["participant"] != "alice" || fields["seq"] != float64(3) || fields["mic"] != false || fields["camera"] != true ||
		fields["hand"] != true || fields["screen"] != false || fields["sig"] != enc(p.Signature) {
		t.Fatalf("wire form %s", b)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	back := got.(*Presence)
	if !(back.Meeting == p.Meeting && back.Participant == p.Participant && back.Seq == 3 && !back.Mic && back.Camera && back.Hand && !back.Screen && bytes.Equal(back.Signature, p.Signature)) {
		t.Fatalf("decoded %+v", back)
	}
	if err := back.Verify(alice.id.Public()); err != nil {
		t.Fatal(err)
	}
}

// The signed bytes, byte for byte as docs/E2EE.md gives them.
func TestPresenceTBS(t *testing.T) {
	p := Presence{Meeting: "m1", Participant: "alice", Seq: 258, Mic: true, Hand: true}
	const golden = "6f616b6d6565742d653265652d76322070726573656e6365" + "00" + "0002" + "6d31" + "0005" + "616c696365" +
		"0000000000000102" + "01" + "00" + "01" + "00"
	if got := hex.EncodeToString(p.tbs()); got != golden {
		t.Fatalf("TBS %s, want %s", got, golden)
	}
}

func TestPresenceVerifyRejects(t *testing.T) {
	alice := newTestMember(t, "m1", "alice", 1)
	mallory := newTestMember(t, "m1", "mallory", 9)
	p, err := NewPresence(Presence{Meeting: "m1", Participant: "alice", Seq: 5, Mic: true, Camera: true}, alice.id)
	if err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Presence){
		"other meeting":     func(p *Presence) { p.Meeting = "m2" },
		"other participant": func(p *Presence) { p.Participant = "bob" },
		"other seq":         func(p *Presence) { p.Seq = 6 },
		"mic off":           func(p *Presence) { p.Mic = false },
		"camera off":        func(p *Presence) { p.Camera = false },
		"hand up":           func(p *Presence) { p.Hand = true },
		"screen on":         func(p *Presence) { p.Screen = true },
		"flipped sig bit":   func(p *Presence) { p.Signature = bytes.Clone(p.Signature); p.Signature[5] ^= 1 },
	} {
		bad := *p
		mutate(&bad)
		if err := bad.Verify(alice.id.Public()); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := p.Verify(mallory.id.Public()); !errors.Is(err, ErrBadSignature) {
		t.Errorf("another member's key: %v", err)
	}
	if err := p.Verify(nil); !errors.Is(err, ErrBadSignature) {
		t.Errorf("no key: %v", err)
	}
	for name, in := range map[string]Presence{
		"seq 0":          {Meeting: "m1", Participant: "alice"},
		"seq too high":   {Meeting: "m1", Participant: "alice", Seq: MaxPresenceSeq + 1},
		"no meeting":     {Participant: "alice", Seq: 1},
		"no participant": {Meeting: "m1", Seq: 1},
		"long id":        {Meeting: "m1", Participant: strings.Repeat("a", MaxIDLen+1), Seq: 1},
	} {
		if _, err := NewPresence(in, alice.id); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	sig := enc(p.Signature)
	for name, wire := range map[string]string{
		"unknown field": `{"v":2,"type":"presence","meeting":"m1","participant":"alice","seq":5,"mic":true,"camera":true,"hand":false,"screen":false,"sig":"` + sig + `","extra":1}`,
		"no hand":       `{"v":2,"type":"presence","meeting":"m1","participant":"alice","seq":5,"mic":true,"camera":true,"screen":false,"sig":"` + sig + `"}`,
		"mic not bool":  `{"v":2,"type":"presence","meeting":"m1","participant":"alice","seq":5,"mic":1,"camera":true,"hand":false,"screen":false,"sig":"` + sig + `"}`,
		"seq 0":         `{"v":2,"type":"presence","meeting":"m1","participant":"alice","seq":0,"mic":true,"camera":true,"hand":false,"screen":false,"sig":"` + sig + `"}`,
		"negative seq":  `{"v":2,"type":"presence","meeting":"m1","participant":"alice","seq":-1,"mic":true,"camera":true,"hand":false,"screen":false,"sig":"` + sig + `"}`,
		"seq 2^48":      `{"v":2,"type":"presence","meeting":"m1","participant":"alice","seq":281474976710656,"mic":true,"camera":true,"hand":false,"screen":false,"sig":"` + sig + `"}`,
		"short sig":     `{"v":2,"type":"presence","meeting":"m1","participant":"alice","seq":5,"mic":true,"camera":true,"hand":false,"screen":false,"sig":"AAAA"}`,
		"null screen":   `{"v":2,"type":"presence","meeting":"m1","participant":"alice","seq":5,"mic":true,"camera":true,"hand":false,"screen":null,"sig":"` + sig + `"}`,
	} {
		if m, err := Decode([]byte(wire)); !errors.Is(err, ErrMalformed) || m != nil {
			t.Errorf("%s: %v, %v", name, m, err)
		}
	}
}

// presenceVector is testdata/presence.json: a presence message with the
// identity seed that signed it (Ed25519 is deterministic), for the
// browser's implementation to test against.
type presenceVector struct {
	Comment      string          `json:"comment"`
	IdentitySeed string          `json:"identity_seed"`
	Identity     string          `json:"identity"`
	TBS          string          `json:"tbs"`
	Message      json.RawMessage `json:"message"`
}

func TestPresenceVector(t *testing.T) {
	const path = "testdata/presence.json"
	seed := bytes.Repeat([]byte{1}, 32)
	id, err := identity.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPresence(Presence{Meeting: "m1", Participant: "alice", Seq: 7, Mic: false, Camera: true, Hand: true, Screen: false}, id)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	want := presenceVector{
		Comment: "A presence message of participant alice in meeting m1: seq 7, microphone off, camera on, hand raised, no screen. identity_seed is the Ed25519 seed (RFC 8032) of alice's identity key; " +
			"tbs is the hex of the signed bytes: label \"oakmeet-e2ee-v2 presence\", 0x00, meeting and participant each as a 2-byte big-endian length and its UTF-8 bytes, seq as 8 bytes big-endian, then one byte each (0x01 true, 0x00 false) for mic, camera, hand and screen.",
		IdentitySeed: hex.EncodeToString(seed),
		Identity:     enc(id.Public()),
		TBS:          hex.EncodeToString(p.tbs()),
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
	var got presenceVector
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
	if err := m.(*Presence).Verify(ed25519.PublicKey(id.Public())); err != nil {
		t.Fatal(err)
	}
}
