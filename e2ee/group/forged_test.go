package group

import (
	"errors"
	"slices"
	"testing"

	"github.com/oakmeet/oakmeet/e2ee/keymsg"
	"github.com/oakmeet/oakmeet/e2ee/mediaframe"
	"github.com/oakmeet/oakmeet/e2ee/sframe"
)

// A server that relays key messages can also make them up. Acks and commits
// are signed by their members' identity keys for that reason: a forged one,
// signed by a key of the server's (here the ghost's), moves nobody.

// ghostHiddenFromCarol is a meeting where the server shows a ghost (a
// member of its own) to alice, the leader, and bob, but not to carol, and
// has let the group settle: the epoch naming the ghost waits for carol's
// ack.
func ghostHiddenFromCarol(t *testing.T) (*simNet, *Member) {
	t.Helper()
	n := threeMembers(t)
	n.viewOf = func(member string, order []string) []string {
		if member == "carol" {
			return slices.DeleteFunc(order, func(p string) bool { return p == "ghost" })
		}
		return order
	}
	n.intercept = func(d *delivery) bool { return d.from != "ghost" || d.to != "carol" }
	ghost := n.newMember("ghost")
	n.arrive(ghost)
	n.settle()
	return n, ghost
}

// The commit's signature is what stops a server from making bob send under
// an epoch carol never acked: a ghost shown to alice (leader) and bob, not
// carol.
func TestForgedCommitIsNotFollowed(t *testing.T) {
	n, ghost := ghostHiddenFromCarol(t)
	bob := n.members["bob"]
	num, dig := newestEpoch(bob)
	c, err := keymsg.NewCommit("meeting-1", num, dig[:], ghost.cfg.Identity) // not the leader's key
	if err != nil {
		t.Fatal(err)
	}
	p, _ := keymsg.Encode(c)
	_, _ = bob.HandleMessage("alice", p)
	f, err := bob.Protect(nil, mediaframe.VP8, testFrame)
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := SplitKID(kidOf(t, f)); epochsNaming(n, "ghost")[e] {
		t.Fatalf("bob sends under epoch %d, which names the ghost carol never heard", e)
	}
}

// The ack's signature is what stops a server from making the leader commit
// an epoch carol never acked.
func TestForgedAckDoesNotMakeTheLeaderCommit(t *testing.T) {
	n, ghost := ghostHiddenFromCarol(t)
	alice := n.members["alice"]
	num, dig := newestEpoch(alice)
	a, err := keymsg.NewAck("meeting-1", num, "carol", dig[:], ghost.cfg.Identity) // forged: not carol's key
	if err != nil {
		t.Fatal(err)
	}
	p, _ := keymsg.Encode(a)
	outs, _ := alice.HandleMessage("carol", p)
	for _, o := range outs {
		_, _ = n.members["bob"].HandleMessage("alice", o.Payload)
	}
	for _, who := range []string{"alice", "bob"} {
		f, err := n.members[who].Protect(nil, mediaframe.VP8, testFrame)
		if err != nil {
			t.Fatal(err)
		}
		if e, _ := SplitKID(kidOf(t, f)); epochsNaming(n, "ghost")[e] {
			t.Fatalf("%s sends under epoch %d, which names the ghost carol never heard", who, e)
		}
	}
}

// A ghost only the leader sees is keyed into an epoch that is never
// committed; bob and carol never heard it, so they hold none of that
// epoch's keys and refuse whatever the ghost sends under it: a server's
// participant cannot speak in the meeting either.
func TestGhostCannotInjectMedia(t *testing.T) {
	n, ghost := ghostOnlyTheLeaderSees(t)
	n.settle()
	ghost.mu.Lock()
	nw := ghost.newest()
	if nw == nil {
		ghost.mu.Unlock()
		t.Fatal("ghost holds no epoch")
	}
	ghost.sender.Store(nw.sender) // a malicious client uses the keys it holds
	ghost.mu.Unlock()
	f, err := ghost.Protect(nil, mediaframe.VP8, testFrame)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"bob", "carol"} {
		if _, err := n.members[p].Unprotect(nil, mediaframe.VP8, f); !errors.Is(err, sframe.ErrUnknownKID) {
			t.Fatalf("%s takes a frame from the ghost it never heard: %v", p, err)
		}
	}
}

// newestEpoch is the number and digest of m's newest installed epoch.
func newestEpoch(m *Member) (uint64, [keymsg.DigestSize]byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	nw := m.newest()
	return nw.number, nw.digest
}
