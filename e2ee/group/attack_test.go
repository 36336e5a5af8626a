package group

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/e2ee/keymsg"
	"github.com/oakmeet/oakmeet/e2ee/mediaframe"
	"github.com/oakmeet/oakmeet/e2ee/sframe"
)

// Tests of a server that lies: it shows members different rosters and
// delivers some participants' messages to some members only.

func person(t *testing.T, m *Member, p string) Person {
	t.Helper()
	for _, ps := range m.People() {
		if ps.Participant == p {
			return ps
		}
	}
	t.Fatalf("%s's People has no %s: %+v", m.Participant(), p, m.People())
	return Person{}
}

// epochsNaming returns the numbers of every epoch message in the log whose
// roster names participant.
func epochsNaming(n *simNet, participant string) map[uint64]bool {
	out := map[uint64]bool{}
	for _, d := range n.log {
		if msg, err := keymsg.Decode(d.payload); err == nil {
			if e, ok := msg.(*keymsg.Epoch); ok && e.Index(participant) >= 0 {
				out[e.Epoch] = true
			}
		}
	}
	return out
}

// ghostOnlyTheLeaderSees is a meeting of alice (leading), bob and carol
// where the server shows a ghost, a member of its own, to alice alone and
// passes the ghost's messages to her only; the ghost has just arrived.
func ghostOnlyTheLeaderSees(t *testing.T) (*simNet, *Member) {
	t.Helper()
	n := threeMembers(t)
	n.viewOf = func(member string, order []string) []string {
		if member == "alice" || member == "ghost" {
			return order
		}
		return slices.DeleteFunc(order, func(p string) bool { return p == "ghost" })
	}
	n.intercept = func(d *delivery) bool { return d.from != "ghost" || d.to == "alice" }
	ghost := n.newMember("ghost")
	n.arrive(ghost)
	return n, ghost
}

// TestGhostOnlyTheLeaderSees: the server connects a real member (its own
// identity and keys) and lists it to the leader alone. The leader keys it,
// but nobody else has heard from it, so nobody acks, the epoch is never
// committed, and no one sends a frame the ghost can read.
func TestGhostOnlyTheLeaderSees(t *testing.T) {
	n, ghost := ghostOnlyTheLeaderSees(t)
	honest := []string{"alice", "bob", "carol"}

	var frames [][]byte
	check := func(when string) {
		t.Helper()
		ghostEpochs := epochsNaming(n, "ghost")
		for _, p := range honest {
			m := n.members[p]
			f, err := m.Protect(nil, mediaframe.VP8, testFrame)
			if err != nil {
				t.Fatalf("%s: %s cannot send: %v", when, p, err)
			}
			if e, _ := SplitKID(kidOf(t, f)); ghostEpochs[e] {
				t.Fatalf("%s: %s sends under epoch %d, which names the ghost", when, p, e)
			}
			if slices.ContainsFunc(m.Roster(), func(e keymsg.Entry) bool { return e.Participant == "ghost" }) {
				t.Fatalf("%s: %s's sending roster names the ghost", when, p)
			}
			frames = append(frames, f)
		}
		for _, f := range frames {
			if _, err := ghost.Unprotect(nil, mediaframe.VP8, f); err == nil {
				t.Fatalf("%s: the ghost decrypts an honest member's frame", when)
			}
		}
	}
	n.settle()
	if len(epochsNaming(n, "ghost")) == 0 {
		t.Fatal("setup: the leader never keyed the ghost")
	}
	check("after the ghost appeared")
	// Time passes: acks, announcements and periodic re-keys go round.
	for range 20 {
		n.clock.Advance(time.Minute)
		n.tick()
		check("minutes later")
	}

	st := n.members["alice"].Status()
	if len(st.AwaitingAcks) == 0 || st.Newest == st.Epoch {
		t.Fatalf("alice's status %+v: an uncommitted epoch should wait for acks", st)
	}
	for _, p := range []string{"bob", "carol"} {
		g := person(t, n.members[p], "ghost")
		if g.Heard || g.Listed || g.InKeys || !g.Pending {
			t.Errorf("%s sees the ghost as %+v, want pending, not heard, not listed", p, g)
		}
		if !slices.Contains(n.members[p].Status().Unheard, "ghost") {
			t.Errorf("%s's status does not name the unheard ghost", p)
		}
	}
	if g := person(t, n.members["alice"], "ghost"); !g.Listed || !g.Heard || g.InKeys || !g.Pending {
		t.Errorf("alice sees the ghost as %+v", g)
	}

	// Not even the leader can make the others send under it: a commit it
	// signs for the ghost's epoch is noted, but the epoch is not ready for
	// them, so they stay where they are.
	alice := n.members["alice"]
	for _, st := range alice.epochs {
		if st.committed || !ghostIn(st.roster) {
			continue
		}
		c, err := keymsg.NewCommit("meeting-1", st.number, st.digest[:], alice.cfg.Identity)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := keymsg.Encode(c)
		n.send("alice", []Outgoing{{Payload: b}})
	}
	n.run()
	n.settle()
	check("after a forged commit")

	// The server gives up the ghost: the next epoch leaves it out and is
	// committed, and media flows among the honest members.
	n.viewOf, n.intercept = nil, nil
	n.leave("ghost")
	n.converged()
	check("after the ghost left")
}

func ghostIn(roster []keymsg.Entry) bool {
	return slices.ContainsFunc(roster, func(e keymsg.Entry) bool { return e.Participant == "ghost" })
}

// TestHiddenParticipant: the server hides carol from bob's list. Carol is
// still in the keys, bob's People says so, and media flows.
func TestHiddenParticipant(t *testing.T) {
	n := newSimNet(t)
	n.viewOf = func(member string, order []string) []string {
		if member != "bob" {
			return order
		}
		return slices.DeleteFunc(order, func(p string) bool { return p == "carol" })
	}
	n.join("alice")
	n.join("bob")
	n.join("carol")
	n.converged()
	c := person(t, n.members["bob"], "carol")
	if !c.InKeys || c.Listed || !c.Heard || c.Name != "Carol" {
		t.Fatalf("bob sees carol as %+v, want in the keys, not listed", c)
	}
	for _, ps := range n.members["alice"].People() {
		if !ps.InKeys || !ps.Listed || !ps.Heard || ps.Pending || ps.Removed {
			t.Errorf("alice sees %+v in an honest view", ps)
		}
	}
}

// TestRemoval: every honest member removes dave on the host's statement; the
// server keeps dave connected and delivers him everything. No frame an
// honest member protects after its Remove is readable by dave.
func TestRemoval(t *testing.T) {
	n := threeMembers(t)
	dave := n.join("dave")
	n.converged()
	var after [][]byte
	sendAll := func(who ...string) {
		for _, p := range who {
			f, err := n.members[p].Protect(nil, mediaframe.VP8, testFrame)
			if errors.Is(err, mediaframe.ErrNoKey) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			after = append(after, f)
		}
	}
	var done []string
	for _, p := range []string{"bob", "carol", "alice"} { // the leader last
		out, err := n.members[p].Remove("dave", dave.Entry().Identity)
		if err != nil {
			t.Fatal(err)
		}
		done = append(done, p)
		if p != "alice" {
			if _, err := n.members[p].Protect(nil, mediaframe.VP8, testFrame); !errors.Is(err, mediaframe.ErrNoKey) {
				t.Fatalf("%s sends under an epoch naming a removed member: %v", p, err)
			}
		}
		n.send(p, out)
		n.run()
		sendAll(done...)
	}
	n.settle()
	sendAll(done...)
	for range 5 {
		n.clock.Advance(DefaultAnnounceRetry)
		n.tick()
		sendAll(done...)
	}
	if len(after) < 9 {
		t.Fatalf("only %d frames sent after the removal", len(after))
	}
	for _, f := range after {
		if _, err := dave.Unprotect(nil, mediaframe.VP8, f); !errors.Is(err, sframe.ErrUnknownKID) {
			t.Fatalf("dave reads a frame sent after his removal: %v", err)
		}
	}
	// Everyone else goes on under one epoch without dave.
	for _, p := range done {
		m := n.members[p]
		if slices.ContainsFunc(m.Roster(), func(e keymsg.Entry) bool { return e.Participant == "dave" }) {
			t.Fatalf("%s's sending roster names dave", p)
		}
		if d := person(t, m, "dave"); !d.Removed || d.InKeys || !d.Listed {
			t.Errorf("%s sees dave as %+v", p, d)
		}
		for _, q := range done {
			if p != q {
				mustExchange(t, m, n.members[q])
			}
		}
	}
	// Dave's announcements are refused now.
	if _, err := n.members["bob"].HandleMessage("dave", dave.announce); !errors.Is(err, ErrRemoved) {
		t.Errorf("announcement of a removed member: %v", err)
	}
}

// TestRemovalIsTheCallersToVerify: Remove trusts its caller, who checks the
// host's signature. A member nobody tells to remove (a forged statement,
// refused by the caller) keeps the participant; a member told to remove
// never acks or sends under an epoch that names them, even one its leader
// commits.
func TestRemovalIsTheCallersToVerify(t *testing.T) {
	n := threeMembers(t)
	dave := n.join("dave")
	n.converged()
	// A forged removal reaches everyone; every caller refuses it, so no
	// Remove: dave stays in the keys.
	n.clock.Advance(DefaultRekeyInterval)
	n.tick()
	if d := person(t, n.members["bob"], "dave"); !d.InKeys || d.Removed {
		t.Fatalf("dave after a forged removal: %+v", d)
	}
	n.converged()

	// Bob alone got (and verified) the host's removal; alice did not.
	bob, alice := n.members["bob"], n.members["alice"]
	if _, err := bob.Remove("dave", nil); err != nil {
		t.Fatal(err)
	}
	n.clock.Advance(DefaultRekeyInterval)
	n.tick()
	naming := epochsNaming(n, "dave")
	newest := alice.Status().Newest
	if !naming[newest] {
		t.Fatal("setup: alice's new epoch should still name dave")
	}
	for _, d := range n.log {
		if msg, err := keymsg.Decode(d.payload); err == nil && d.from == "bob" {
			if a, ok := msg.(*keymsg.Ack); ok && a.Epoch == newest {
				t.Fatalf("bob acked epoch %d, which names removed dave", newest)
			}
		}
	}
	if st := alice.Status(); !slices.Contains(st.AwaitingAcks, "bob") {
		t.Fatalf("alice's status %+v should await bob", st)
	}
	// Even a commit signed by the leader does not make bob send under it.
	st := alice.newest()
	c, err := keymsg.NewCommit("meeting-1", st.number, st.digest[:], alice.cfg.Identity)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := keymsg.Encode(c)
	if _, err := bob.HandleMessage("alice", b); err != nil {
		t.Fatal(err)
	}
	n.run()
	if bob.Epoch() == newest {
		t.Fatal("bob adopted an epoch naming a removed member on the leader's commit")
	}
	if _, err := bob.Protect(nil, mediaframe.VP8, testFrame); !errors.Is(err, mediaframe.ErrNoKey) {
		t.Fatalf("bob sends while his epochs name removed dave: %v", err)
	}
	// Once alice removes dave too, bob sends again, without dave.
	out, err := alice.Remove("dave", dave.Entry().Identity)
	if err != nil {
		t.Fatal(err)
	}
	n.send("alice", out)
	n.run()
	n.settle()
	mustExchange(t, bob, alice)
	if _, err := dave.Unprotect(nil, mediaframe.VP8, protect(t, bob)); err == nil {
		t.Fatal("dave reads bob's frame")
	}
}

// TestJoinerCannotDecryptEarlierFrames: a newcomer is keyed by a fresh
// epoch, so frames sent before it joined stay closed to it.
func TestJoinerCannotDecryptEarlierFrames(t *testing.T) {
	n := threeMembers(t)
	before := [][]byte{protect(t, n.members["alice"]), protect(t, n.members["bob"])}
	dave := n.join("dave")
	n.converged()
	for _, f := range before {
		if _, err := dave.Unprotect(nil, mediaframe.VP8, f); !errors.Is(err, sframe.ErrUnknownKID) {
			t.Fatalf("dave decrypts a frame sent before he joined: %v", err)
		}
	}
}

// TestAnnouncementFloodBounded: past twice the roster limit, announcements
// of participants the server does not list are refused, so a flood cannot
// grow a member's memory without bound.
func TestAnnouncementFloodBounded(t *testing.T) {
	n := threeMembers(t)
	bob := n.members["bob"]
	id := testIdentity(t, "flood")
	key, _ := keymsg.KEM().GenerateKey()
	var last error
	for i := range 2 * keymsg.MaxRoster {
		p := fmt.Sprintf("x%04d", i)
		a, err := keymsg.NewAnnouncement("meeting-1", p, "", id, key.PublicKey().Bytes())
		if err != nil {
			t.Fatal(err)
		}
		b, _ := keymsg.Encode(a)
		_, last = bob.HandleMessage(p, b)
	}
	if last == nil || len(bob.heard) > 2*keymsg.MaxRoster {
		t.Fatalf("bob holds %d announcements; the last: %v", len(bob.heard), last)
	}
	n.converged()
}

// TestParticipantAppearingLaterIsHeard: carol joins while the relay has no
// link between her and bob (each is missing from the other's list, and her
// announcement to everyone does not reach him). When the link comes up,
// each announces to the newcomer in its list, and the group converges with
// no retry timer.
func TestParticipantAppearingLaterIsHeard(t *testing.T) {
	n := newSimNet(t)
	n.join("alice")
	n.join("bob")
	apart := func(a, b string) bool { return a == "bob" && b == "carol" || a == "carol" && b == "bob" }
	n.viewOf = func(member string, order []string) []string {
		return slices.DeleteFunc(order, func(p string) bool { return apart(member, p) })
	}
	n.intercept = func(d *delivery) bool { return !apart(d.from, d.to) }
	n.join("carol")
	if st := n.members["bob"].Status(); st.Epoch == st.Newest || !slices.Contains(st.Unheard, "carol") {
		t.Fatalf("setup: bob's status %+v", st)
	}
	n.viewOf, n.intercept = nil, nil
	start := n.clock.Now()
	n.rosterChanged()
	n.settle()
	if waited := n.clock.Now().Sub(start); waited >= DefaultAnnounceRetry/2 {
		t.Fatalf("converging took a retry (%v)", waited)
	}
	n.converged()
}
