package keymsg

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// testCert stands for a node certificate's text: keymsg carries it
// without reading it.
const testCert = "oakmeet-node-cert-v1.eyJub2RlIjoiZGUtZnJhIn0.c2ln"

func TestNodeRoundTrip(t *testing.T) {
	alice := newTestMember(t, "m1", "alice", 1)
	n, err := NewNode("m1", "alice", testCert, alice.id)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Encode(n)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	if len(fields) != 6 || fields["v"] != float64(2) || fields["type"] != "node" || fields["meeting"] != "m1" ||
		fields["participant"] != "alice" || fields["cert"] != testCert || fields["sig"] != enc(n.Signature) {
		t.Fatalf("wire form %s", b)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	back := got.(*Node)
	if back.Meeting != "m1" || back.Participant != "alice" || back.Cert != testCert || !bytes.Equal(back.Signature, n.Signature) {
		t.Fatalf("decoded %+v", back)
	}
	if err := back.Verify(alice.id.Public()); err != nil {
		t.Fatal(err)
	}
}

// The signed bytes, byte for byte as docs/E2EE.md gives them, so that the
// browser's implementation can be held to the same.
func TestNodeTBS(t *testing.T) {
	got := nodeTBS("m1", "alice", "CERT")
	var want []byte
	want = append(want, "oakmeet-e2ee-v2 node"...)
	want = append(want, 0)
	for _, f := range []string{"m1", "alice", "CERT"} {
		want = binary.BigEndian.AppendUint16(want, uint16(len(f)))
		want = append(want, f...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("TBS %x, want %x", got, want)
	}
	const golden = "6f616b6d6565742d653265652d7632206e6f6465" + "00" + "0002" + "6d31" + "0005" + "616c696365" + "0004" + "43455254"
	if hex.EncodeToString(got) != golden {
		t.Fatalf("TBS %x, want %s", got, golden)
	}
}

func TestNodeVerifyRejects(t *testing.T) {
	alice := newTestMember(t, "m1", "alice", 1)
	mallory := newTestMember(t, "m1", "mallory", 9)
	n, err := NewNode("m1", "alice", testCert, alice.id)
	if err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Node){
		"other meeting":     func(n *Node) { n.Meeting = "m2" },
		"other participant": func(n *Node) { n.Participant = "bob" },
		"other cert":        func(n *Node) { n.Cert = testCert + "x" },
		"flipped sig bit":   func(n *Node) { n.Signature = bytes.Clone(n.Signature); n.Signature[5] ^= 1 },
	} {
		c := *n
		mutate(&c)
		if err := c.Verify(alice.id.Public()); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: Verify = %v, want ErrBadSignature", name, err)
		}
	}
	// Signed by another identity: the server (or anyone) cannot speak for
	// alice.
	forged, err := NewNode("m1", "alice", testCert, mallory.id)
	if err != nil {
		t.Fatal(err)
	}
	if err := forged.Verify(alice.id.Public()); !errors.Is(err, ErrBadSignature) {
		t.Errorf("forged: Verify = %v, want ErrBadSignature", err)
	}
	if err := n.Verify(nil); !errors.Is(err, ErrBadSignature) {
		t.Errorf("no key: Verify = %v", err)
	}
	for name, args := range map[string][3]string{
		"no meeting":     {"", "alice", testCert},
		"no participant": {"m1", "", testCert},
		"no cert":        {"m1", "alice", ""},
		"long cert":      {"m1", "alice", strings.Repeat("c", MaxCertLen+1)},
		"cert not UTF-8": {"m1", "alice", "\xff"},
	} {
		if _, err := NewNode(args[0], args[1], args[2], alice.id); !errors.Is(err, ErrMalformed) {
			t.Errorf("NewNode %s = %v, want ErrMalformed", name, err)
		}
	}
	if _, err := NewNode("m1", "alice", strings.Repeat("c", MaxCertLen), alice.id); err != nil {
		t.Errorf("a cert of MaxCertLen: %v", err)
	}
}

func TestNodeDecodeRejects(t *testing.T) {
	alice := newTestMember(t, "m1", "alice", 1)
	n, err := NewNode("m1", "alice", testCert, alice.id)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := Encode(n)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(key string, value any) []byte {
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
	for name, b := range map[string][]byte{
		"no cert":        edit("cert", nil),
		"empty cert":     edit("cert", ""),
		"long cert":      edit("cert", strings.Repeat("c", MaxCertLen+1)),
		"cert a number":  edit("cert", 3),
		"no participant": edit("participant", nil),
		"no meeting":     edit("meeting", nil),
		"no sig":         edit("sig", nil),
		"short sig":      edit("sig", enc(make([]byte, 63))),
		"bad base64 sig": edit("sig", "!!!"),
		"unknown field":  edit("epoch", 1),
		"identity field": edit("identity", enc(alice.id.Public())),
	} {
		if got, err := Decode(b); !errors.Is(err, ErrMalformed) || got != nil {
			t.Errorf("%s: Decode = %v, %v; want ErrMalformed", name, got, err)
		}
	}
	if got, err := Decode(edit("v", 1)); !errors.Is(err, ErrVersion) || got != nil {
		t.Errorf("version 1: Decode = %v, %v", got, err)
	}
}
