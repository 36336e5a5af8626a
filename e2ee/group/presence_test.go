package group

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/oakmeet/oakmeet/e2ee/identity"

	"github.com/oakmeet/oakmeet/e2ee/keymsg"
)

// A presence a member shares reaches every other member, verified as that
// member's; a forged one, one relayed as another's, one of another
// meeting, an older one replayed and one of a removed participant do not
// change what the others hold.
func TestPresenceReachesTheOthers(t *testing.T) {
	n := threeMembers(t)
	alice, bob, carol := n.members["alice"], n.members["bob"], n.members["carol"]
	if _, ok := bob.Presence("alice"); ok {
		t.Fatal("a presence before any was sent")
	}
	first, err := alice.SharePresence(1, true, true, false, false)
	if err != nil {
		t.Fatal(err)
	}
	muted, err := alice.SharePresence(2, false, true, true, false)
	if err != nil {
		t.Fatal(err)
	}
	n.send("alice", []Outgoing{first, muted})
	n.run()
	if len(n.errs) != 0 {
		t.Fatalf("errors: %v", n.errs)
	}
	want := PeerPresence{Seq: 2, Mic: false, Camera: true, Hand: true}
	for _, m := range []*Member{bob, carol} {
		got, ok := m.Presence("alice")
		got.identity = ""
		if !ok || got != want {
			t.Fatalf("%s holds %+v, %v", m.cfg.Participant, got, ok)
		}
	}

	if _, err := bob.HandleMessage("alice", first.Payload); !errors.Is(err, ErrReplay) {
		t.Fatalf("an older presence replayed: %v", err)
	}
	forged, _ := keymsg.NewPresence(keymsg.Presence{Meeting: "meeting-1", Participant: "alice", Seq: 9, Mic: true}, testIdentity(t, "mallory"))
	fb, _ := keymsg.Encode(forged)
	if _, err := bob.HandleMessage("alice", fb); !errors.Is(err, keymsg.ErrBadSignature) {
		t.Fatalf("forged presence: %v", err)
	}
	if _, err := bob.HandleMessage("carol", muted.Payload); !errors.Is(err, ErrSenderMismatch) {
		t.Fatalf("alice's presence from carol: %v", err)
	}
	other, _ := keymsg.NewPresence(keymsg.Presence{Meeting: "meeting-2", Participant: "alice", Seq: 9, Mic: true}, alice.cfg.Identity)
	ob, _ := keymsg.Encode(other)
	if _, err := bob.HandleMessage("alice", ob); !errors.Is(err, ErrWrongMeeting) {
		t.Fatalf("another meeting's presence: %v", err)
	}
	if _, err := bob.Remove("alice", alice.cfg.Identity.Public()); err != nil {
		t.Fatal(err)
	}
	later, _ := alice.SharePresence(3, true, true, false, false)
	if _, err := bob.HandleMessage("alice", later.Payload); !errors.Is(err, ErrRemoved) {
		t.Fatalf("a removed participant's presence: %v", err)
	}
	if got, _ := bob.Presence("alice"); got.Seq != 2 || got.Mic {
		t.Fatalf("bob holds %+v after the refusals", got)
	}
	if _, err := alice.SharePresence(0, true, true, false, false); err == nil {
		t.Fatal("a presence of seq 0 shared")
	}
}

// lastAnnouncement is the latest announcement from sent in n.
func lastAnnouncement(t *testing.T, n *simNet, from string) []byte {
	t.Helper()
	for i := len(n.log) - 1; i >= 0; i-- {
		d := n.log[i]
		if d.from != from {
			continue
		}
		if m, err := keymsg.Decode(d.payload); err == nil && m.Type() == "announce" {
			return d.payload
		}
	}
	t.Fatalf("no announcement of %s", from)
	return nil
}

func encodedPresence(t *testing.T, p keymsg.Presence, id *identity.Identity) []byte {
	t.Helper()
	s, err := keymsg.NewPresence(p, id)
	if err != nil {
		t.Fatal(err)
	}
	b, err := keymsg.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A server that announces a participant id afresh with a key of its own
// cannot sign presence for it: only the key the sending epoch's roster
// (the security code) names counts. Swapping the real announcement back
// does not start the seq over, so an older presence still replays as
// nothing.
func TestPresenceNeedsTheKeyOfTheSecurityCode(t *testing.T) {
	n := threeMembers(t)
	alice, bob := n.members["alice"], n.members["bob"]
	first, _ := alice.SharePresence(1, true, true, true, false)
	second, _ := alice.SharePresence(2, false, true, false, false)
	for _, o := range []Outgoing{first, second} {
		if _, err := bob.HandleMessage("alice", o.Payload); err != nil {
			t.Fatal(err)
		}
	}
	real := lastAnnouncement(t, n, "alice")
	mallory := testIdentity(t, "mallory")
	fake, _ := keymsg.NewAnnouncement("meeting-1", "alice", "", mallory, bob.Entry().HPKE)
	fb, _ := keymsg.Encode(fake)
	bob.HandleMessage("alice", fb) // whether it is taken or not, it must not count for presence
	forged := encodedPresence(t, keymsg.Presence{Meeting: "meeting-1", Participant: "alice", Seq: 3, Mic: true, Hand: true}, mallory)
	if _, err := bob.HandleMessage("alice", forged); !errors.Is(err, keymsg.ErrBadSignature) {
		t.Fatalf("presence signed with the key the server announced: %v", err)
	}
	if _, err := bob.HandleMessage("alice", real); err != nil {
		t.Fatalf("alice's own announcement again: %v", err)
	}
	if _, err := bob.HandleMessage("alice", first.Payload); !errors.Is(err, ErrReplay) {
		t.Fatalf("alice's older presence after the key swap: %v", err)
	}
	if got, ok := bob.Presence("alice"); !ok || got.Seq != 2 || got.Mic || got.Hand {
		t.Fatalf("bob shows %+v, %v for alice", got, ok)
	}
}

// A newcomer's presence that comes before the sending epoch names it is
// kept and shown once that epoch is in use, not before; presence of one
// the sending epoch stops naming is no longer shown.
func TestPresenceWaitsForTheSendingEpoch(t *testing.T) {
	n := threeMembers(t)
	bob := n.members["bob"]
	dave := n.newMember("dave")
	n.arrive(dave)
	n.run()
	if id := func() []byte { bob.mu.Lock(); defer bob.mu.Unlock(); return bob.keyedIdentity("dave") }(); id != nil {
		t.Fatal("dave in bob's sending epoch before any time passed")
	}
	early, _ := dave.SharePresence(1, false, true, true, false)
	if _, err := bob.HandleMessage("dave", early.Payload); !errors.Is(err, ErrNotInKeys) {
		t.Fatalf("presence of one not in the sending epoch: %v", err)
	}
	if _, ok := bob.Presence("dave"); ok {
		t.Fatal("shown before the sending epoch names dave")
	}
	n.settle()
	n.converged()
	if got, ok := bob.Presence("dave"); !ok || got.Seq != 1 || !got.Hand {
		t.Fatalf("bob shows %+v, %v for dave once keyed", got, ok)
	}

	carol := n.members["carol"]
	mine, _ := carol.SharePresence(1, true, true, false, false)
	if _, err := bob.HandleMessage("carol", mine.Payload); err != nil {
		t.Fatal(err)
	}
	for _, m := range n.members {
		if m == carol {
			continue
		}
		out, err := m.Remove("carol", carol.cfg.Identity.Public())
		if err != nil {
			t.Fatal(err)
		}
		n.send(m.Participant(), out)
	}
	delete(n.members, "carol")
	n.order = slices.DeleteFunc(n.order, func(p string) bool { return p == "carol" })
	for _, m := range n.members {
		n.send(m.Participant(), mustRoster(t, m, n.order))
	}
	n.settle()
	for range 5 {
		n.clock.Advance(DefaultAnnounceRetry)
		n.tick()
		n.settle()
	}
	n.converged()
	if _, ok := bob.Presence("carol"); ok {
		t.Fatal("carol's presence shown after the sending epoch dropped her")
	}
}

func mustRoster(t *testing.T, m *Member, order []string) []Outgoing {
	t.Helper()
	out, err := m.OnRosterChange(order)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Throw-away ids cannot push out the seq of someone present: they wait
// (bounded) for an epoch that never names them, and when the seqs kept
// are at their bound with everyone named, a new id is refused rather than
// anyone present forgotten.
func TestPresenceSeqOfThosePresentIsNeverForgotten(t *testing.T) {
	n := threeMembers(t)
	alice, bob := n.members["alice"], n.members["bob"]
	first, _ := alice.SharePresence(1, true, true, true, false)
	second, _ := alice.SharePresence(2, false, true, false, false)
	for _, o := range []Outgoing{first, second} {
		if _, err := bob.HandleMessage("alice", o.Payload); err != nil {
			t.Fatal(err)
		}
	}
	mallory := testIdentity(t, "mallory")
	base := []string{"alice", "bob", "carol"}
	full := 0
	for batch := range 5 {
		var ids []string
		for i := range 1000 {
			ids = append(ids, fmt.Sprintf("f%d-%d", batch, i))
		}
		bob.OnRosterChange(append(slices.Clone(base), ids...))
		for _, id := range ids {
			a, _ := keymsg.NewAnnouncement("meeting-1", id, "", mallory, bob.Entry().HPKE)
			ab, _ := keymsg.Encode(a)
			bob.HandleMessage(id, ab)
			_, err := bob.HandleMessage(id, encodedPresence(t, keymsg.Presence{Meeting: "meeting-1", Participant: id, Seq: 1}, mallory))
			if errors.Is(err, ErrPresenceFull) {
				full++
			}
		}
		bob.OnRosterChange(base)
	}
	if full == 0 {
		t.Fatal("5000 throw-away ids' presence all kept")
	}
	if _, err := bob.HandleMessage("alice", first.Payload); !errors.Is(err, ErrReplay) {
		t.Fatalf("alice's older presence after the flood: %v", err)
	}

	// The seqs at their bound, every one of someone the view lists.
	bob.mu.Lock()
	view := slices.Clone(base)
	for i := len(bob.presence.seq); i < maxPresence; i++ {
		p := fmt.Sprintf("v%d", i)
		view = append(view, p)
		bob.presence.seq[p] = 1
	}
	bob.view = view
	newcomer := &keymsg.Presence{Meeting: "meeting-1", Participant: "zed", Seq: 1}
	err := bob.acceptPresence("zed", newcomer, mallory.Public())
	_, kept := bob.presence.seq["alice"]
	bob.mu.Unlock()
	if !errors.Is(err, ErrPresenceFull) || !kept {
		t.Fatalf("a new id with the seqs full: %v; alice's seq kept: %v", err, kept)
	}
	bob.OnRosterChange(base)
	bob.mu.Lock()
	err = bob.acceptPresence("zed", newcomer, mallory.Public())
	_, kept = bob.presence.seq["alice"]
	bob.mu.Unlock()
	if err != nil || !kept {
		t.Fatalf("a new id once others left the view: %v; alice's seq kept: %v", err, kept)
	}
}
