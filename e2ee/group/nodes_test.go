package group

import (
	"errors"
	"testing"

	"github.com/oakmeet/oakmeet/e2ee/keymsg"
)

// certOf stands for the certificate text of the node name is on: group
// carries it without reading it.
func certOf(name string) string { return "cert-of-the-node-of-" + name }

func (n *simNet) joinOnNode(name string) *Member {
	n.t.Helper()
	m, err := NewMember(Config{Meeting: "meeting-1", Participant: name, Name: displayName(name), Identity: testIdentity(n.t, name),
		Now: n.clock.Now, NodeCert: certOf(name)})
	if err != nil {
		n.t.Fatal(err)
	}
	return n.joinMember(m)
}

// nodesSeen is who member sees on which node, by participant.
func nodesSeen(m *Member) map[string]string {
	out := map[string]string{}
	for _, p := range m.People() {
		out[p.Participant] = p.NodeCert
	}
	return out
}

func isNodeMsg(payload []byte) bool {
	msg, err := keymsg.Decode(payload)
	return err == nil && msg.Type() == "node"
}

// Everyone learns everyone's node: old members from the newcomer's
// introduction, the newcomer from their answers; and each node message
// follows an announcement to the same recipient.
func TestNodeMessageReachesNewcomersAndOldMembers(t *testing.T) {
	n := newSimNet(t)
	n.joinOnNode("alice")
	n.joinOnNode("bob")
	n.converged()
	n.joinOnNode("carol")
	n.converged()
	for _, who := range []string{"alice", "bob", "carol"} {
		seen := nodesSeen(n.members[who])
		for _, p := range []string{"alice", "bob", "carol"} {
			if seen[p] != certOf(p) {
				t.Errorf("%s sees %s on %q, want %q", who, p, seen[p], certOf(p))
			}
		}
	}
	if len(n.errs) != 0 {
		t.Fatalf("errors in a clean run: %v", n.errs)
	}
	// Right after each announcement, to the same recipient: the previous
	// message from the same sender to the same recipient is one.
	last := map[[2]string][]byte{}
	nodeMsgs := 0
	for _, d := range n.log {
		pair := [2]string{d.from, d.to}
		if isNodeMsg(d.payload) {
			nodeMsgs++
			msg, err := keymsg.Decode(last[pair])
			if err != nil || msg.Type() != "announce" {
				t.Fatalf("node message %s→%s not right after an announcement to the same recipient", d.from, d.to)
			}
		}
		last[pair] = d.payload
	}
	if nodeMsgs == 0 {
		t.Fatal("no node messages")
	}

	// A leaver's node is forgotten.
	n.leave("bob")
	n.converged()
	if seen := nodesSeen(n.members["alice"]); seen["bob"] != "" {
		t.Fatalf("alice still sees bob's node %q after he left", seen["bob"])
	}
	// Nor is it kept: a leaver's node messages do not pile up.
	alice := n.members["alice"]
	alice.mu.Lock()
	_, kept := alice.nodes["bob"]
	alice.mu.Unlock()
	if kept {
		t.Fatal("alice keeps bob's node message after he left")
	}
}

// A member without a node certificate sends no node message, and is seen
// on no node.
func TestNoNodeCertNoNodeMessage(t *testing.T) {
	n := newSimNet(t)
	n.joinOnNode("alice")
	n.join("bob")
	n.converged()
	for _, d := range n.log {
		if d.from == "bob" && isNodeMsg(d.payload) {
			t.Fatal("bob sent a node message without a certificate")
		}
	}
	if seen := nodesSeen(n.members["alice"]); seen["bob"] != "" {
		t.Fatalf("alice sees bob on %q", seen["bob"])
	}
	if seen := nodesSeen(n.members["bob"]); seen["alice"] != certOf("alice") || seen["bob"] != "" {
		t.Fatalf("bob sees %v", seen)
	}
}

// A node message not signed by the participant's own identity is ignored,
// whether it comes after the announcement or overtakes it; one that
// overtakes a genuine announcement is kept until the identity is known.
func TestForgedNodeMessageIgnored(t *testing.T) {
	n := threeMembers(t)
	alice, bob := n.members["alice"], n.members["bob"]
	mallory := testIdentity(t, "mallory")
	forged, err := keymsg.NewNode("meeting-1", "alice", "cert-of-a-blocked-node", mallory)
	if err != nil {
		t.Fatal(err)
	}
	fb, _ := keymsg.Encode(forged)
	if _, err := bob.HandleMessage("alice", fb); !errors.Is(err, keymsg.ErrBadSignature) {
		t.Fatalf("forged node message: %v", err)
	}
	if got := nodesSeen(bob)["alice"]; got != "" {
		t.Fatalf("bob sees alice on %q", got)
	}
	genuine, _ := keymsg.NewNode("meeting-1", "alice", certOf("alice"), alice.cfg.Identity)
	gb, _ := keymsg.Encode(genuine)
	if _, err := bob.HandleMessage("alice", gb); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.HandleMessage("alice", fb); err == nil {
		t.Fatal("a forged node message replaced a verified one")
	}
	if got := nodesSeen(bob)["alice"]; got != certOf("alice") {
		t.Fatalf("bob sees alice on %q", got)
	}
	// Relayed as someone else's: refused.
	if _, err := bob.HandleMessage("carol", gb); !errors.Is(err, ErrSenderMismatch) {
		t.Fatalf("alice's node message from carol: %v", err)
	}
	other, _ := keymsg.NewNode("meeting-2", "alice", certOf("alice"), alice.cfg.Identity)
	ob, _ := keymsg.Encode(other)
	if _, err := bob.HandleMessage("alice", ob); !errors.Is(err, ErrWrongMeeting) {
		t.Fatalf("another meeting's node message: %v", err)
	}

	// Before dave's announcement reaches bob, a node message for dave:
	// forged, it is dropped once dave's identity is known; genuine, it
	// counts then.
	for _, tc := range []struct {
		name   string
		signer string
		want   string
	}{{"forged", "mallory", ""}, {"genuine", "dave", "cert-of-dave"}} {
		t.Run(tc.name, func(t *testing.T) {
			n := threeMembers(t)
			bob := n.members["bob"]
			early, _ := keymsg.NewNode("meeting-1", "dave", "cert-of-dave", testIdentity(t, tc.signer))
			eb, _ := keymsg.Encode(early)
			if _, err := bob.HandleMessage("dave", eb); err != nil {
				t.Fatalf("an early node message: %v", err)
			}
			if got := nodesSeen(bob)["dave"]; got != "" {
				t.Fatalf("dave seen on %q before his identity is known", got)
			}
			n.join("dave") // announces, without a node message of his own
			n.converged()
			if got := nodesSeen(bob)["dave"]; got != tc.want {
				t.Fatalf("bob sees dave on %q, want %q", got, tc.want)
			}
		})
	}
}

// A removed participant's node is not shown, and its node messages are
// refused.
func TestRemovedParticipantsNodeForgotten(t *testing.T) {
	n := newSimNet(t)
	n.joinOnNode("alice")
	n.joinOnNode("bob")
	n.converged()
	alice, bob := n.members["alice"], n.members["bob"]
	if _, err := alice.Remove("bob", bob.cfg.Identity.Public()); err != nil {
		t.Fatal(err)
	}
	if got := nodesSeen(alice)["bob"]; got != "" {
		t.Fatalf("alice sees the removed bob on %q", got)
	}
	nb, _ := keymsg.NewNode("meeting-1", "bob", certOf("bob"), bob.cfg.Identity)
	b, _ := keymsg.Encode(nb)
	if _, err := alice.HandleMessage("bob", b); !errors.Is(err, ErrRemoved) {
		t.Fatalf("a removed participant's node message: %v", err)
	}
}
