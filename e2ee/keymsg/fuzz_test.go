package keymsg

import (
	"reflect"
	"testing"
)

// Why FuzzDecode ran about six inputs in 15 s: when the fuzzer finds an
// input with new coverage it minimizes it, which for an input of n bytes
// costs up to about n²/2 runs of the target. Its body verified an epoch's
// four Ed25519 signatures (~170 µs, more under coverage instrumentation)
// besides decoding, and the seeds were 1.2 KB epochs, so after each finding
// the worker minimized for the whole -fuzzminimizetime (60 s by default)
// and counted no executions. FuzzDecode now does only the cheap work
// (decode, encode, decode: tens of µs), FuzzVerify does the signature checks
// from the smallest real messages, and scripts/fuzz.sh bounds minimization
// by a number of runs (-fuzzminimizetime 1000x): ~25,000 execs/s each.

// FuzzDecode checks that Decode never panics and that whatever it accepts
// encodes back to a message that decodes identically. Seeds: testdata/fuzz/FuzzDecode
// (the messages of testdata/example.json and the other kinds).
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"v":2,"type":"epoch","roster":null}`))
	f.Add([]byte(`{"v":2,"type":"node","meeting":"m1","participant":"bob","cert":"","sig":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, err := Decode(b)
		if err != nil {
			if msg != nil {
				t.Fatalf("error %v with message %v", err, msg)
			}
			return
		}
		again, err := Encode(msg)
		if err != nil {
			t.Fatalf("decoded message does not encode: %v", err)
		}
		msg2, err := Decode(again)
		if err != nil || !reflect.DeepEqual(msg2, msg) {
			t.Fatalf("round trip changed the message: %v / %v, %v", msg, msg2, err)
		}
	})
}

// FuzzVerify checks that verifying any decodable message never panics,
// whatever its contents. Each decodable input
// costs one to four Ed25519 verifications, so this target runs a few
// thousand inputs per second rather than tens of thousands.
func FuzzVerify(f *testing.F) {
	alice := newTestMember(f, "m1", "alice", 1)
	bob := newTestMember(f, "m1", "bob", 2)
	m, err := NewEpoch("m1", 7, []Entry{alice.ann.Entry}, make([]byte, SecretSize), alice.id)
	if err != nil {
		f.Fatal(err)
	}
	a, c := newTestAckCommit(f, m, []testMember{alice, bob})
	node, err := NewNode("m1", "bob", "oakmeet-node-cert-v1.e30.c2ln", bob.id)
	if err != nil {
		f.Fatal(err)
	}
	presence, err := NewPresence(Presence{Meeting: "m1", Participant: "bob", Seq: 1, Mic: true}, bob.id)
	if err != nil {
		f.Fatal(err)
	}
	for _, msg := range []Message{m, bob.ann, a, c, node, presence} {
		b, err := Encode(msg)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, err := Decode(b)
		if err != nil {
			return
		}
		switch msg := msg.(type) {
		case *Epoch:
			_ = msg.Verify()
		case *Announcement:
			_ = msg.Verify()
		case *Ack:
			_ = msg.Verify(bob.id.Public())
		case *Commit:
			_ = msg.Verify(alice.id.Public())
		case *Node:
			_ = msg.Verify(bob.id.Public())
		case *Checkpoint:
			_ = msg.Verify(alice.id.Public())
		case *Presence:
			_ = msg.Verify(bob.id.Public())
		}
	})
}
