package group

import (
	"errors"
	"testing"

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
