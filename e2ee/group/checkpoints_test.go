package group

import (
	"errors"
	"testing"

	"github.com/oakmeet/oakmeet/e2ee/keymsg"
)

// cpText stands for a signed checkpoint of the transparency log: group
// carries it without reading it.
const cpText = "oakmeet.audit/0123456789abcdef\n7\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n\n— oakmeet.audit/0123456789abcdef AbCdEf01\n"

// A checkpoint a member shares reaches every other member, verified as
// that member's; a forged one, one relayed as another's, one of another
// meeting or of a removed participant does not.
func TestCheckpointsReachTheOthers(t *testing.T) {
	n := threeMembers(t)
	alice, bob, carol := n.members["alice"], n.members["bob"], n.members["carol"]
	out, err := alice.ShareCheckpoint(cpText)
	if err != nil {
		t.Fatal(err)
	}
	if out.To != "" {
		t.Fatalf("a checkpoint addressed to %q, not to everyone", out.To)
	}
	n.send("alice", []Outgoing{out})
	n.run()
	if len(n.errs) != 0 {
		t.Fatalf("errors: %v", n.errs)
	}
	for _, m := range []*Member{bob, carol} {
		got := m.TakeCheckpoints()
		if len(got) != 1 || got[0] != (PeerCheckpoint{Participant: "alice", Checkpoint: cpText}) {
			t.Fatalf("%s took %+v", m.cfg.Participant, got)
		}
		if again := m.TakeCheckpoints(); len(again) != 0 {
			t.Fatalf("%s took them twice: %+v", m.cfg.Participant, again)
		}
	}
	if got := alice.TakeCheckpoints(); len(got) != 0 {
		t.Fatalf("alice took her own: %+v", got)
	}

	forged, _ := keymsg.NewCheckpoint("meeting-1", "alice", cpText, testIdentity(t, "mallory"))
	fb, _ := keymsg.Encode(forged)
	if _, err := bob.HandleMessage("alice", fb); !errors.Is(err, keymsg.ErrBadSignature) {
		t.Fatalf("forged checkpoint message: %v", err)
	}
	if _, err := bob.HandleMessage("carol", out.Payload); !errors.Is(err, ErrSenderMismatch) {
		t.Fatalf("alice's checkpoint message from carol: %v", err)
	}
	other, _ := keymsg.NewCheckpoint("meeting-2", "alice", cpText, alice.cfg.Identity)
	ob, _ := keymsg.Encode(other)
	if _, err := bob.HandleMessage("alice", ob); !errors.Is(err, ErrWrongMeeting) {
		t.Fatalf("another meeting's checkpoint message: %v", err)
	}
	if _, err := bob.Remove("alice", alice.cfg.Identity.Public()); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.HandleMessage("alice", out.Payload); !errors.Is(err, ErrRemoved) {
		t.Fatalf("a removed participant's checkpoint message: %v", err)
	}
	if got := bob.TakeCheckpoints(); len(got) != 0 {
		t.Fatalf("bob took %+v", got)
	}
	if _, err := alice.ShareCheckpoint(""); err == nil {
		t.Fatal("an empty checkpoint shared")
	}
}

// One that overtakes its sender's announcement waits until the identity
// is known: then it counts if genuine, and is dropped if forged.
func TestEarlyCheckpointWaitsForTheIdentity(t *testing.T) {
	for _, tc := range []struct {
		signer string
		want   int
	}{{"mallory", 0}, {"dave", 1}} {
		t.Run(tc.signer, func(t *testing.T) {
			n := threeMembers(t)
			bob := n.members["bob"]
			early, _ := keymsg.NewCheckpoint("meeting-1", "dave", cpText, testIdentity(t, tc.signer))
			eb, _ := keymsg.Encode(early)
			if _, err := bob.HandleMessage("dave", eb); err != nil {
				t.Fatalf("an early checkpoint message: %v", err)
			}
			if got := bob.TakeCheckpoints(); len(got) != 0 {
				t.Fatalf("taken before dave's identity is known: %+v", got)
			}
			n.join("dave")
			n.converged()
			if got := bob.TakeCheckpoints(); len(got) != tc.want {
				t.Fatalf("bob took %+v, want %d", got, tc.want)
			}
		})
	}
}

// The checkpoints not taken are bounded: the oldest go first.
func TestPeerCheckpointsBounded(t *testing.T) {
	n := threeMembers(t)
	alice, bob := n.members["alice"], n.members["bob"]
	for i := range maxPeerCheckpoints + 5 {
		out, err := alice.ShareCheckpoint(cpText + string(rune('a'+i%26)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.HandleMessage("alice", out.Payload); err != nil {
			t.Fatal(err)
		}
	}
	got := bob.TakeCheckpoints()
	if len(got) != maxPeerCheckpoints || got[len(got)-1].Checkpoint != cpText+string(rune('a'+(maxPeerCheckpoints+4)%26)) {
		t.Fatalf("took %d, the last %q", len(got), got[len(got)-1].Checkpoint)
	}
}
