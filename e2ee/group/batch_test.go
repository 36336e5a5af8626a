package group

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/e2ee/keymsg"
	"github.com/oakmeet/oakmeet/e2ee/mediaframe"
	"github.com/oakmeet/oakmeet/e2ee/securitycode"
)

// TestJoinBurstIsBatched: 50 joins within a second make a handful of
// epochs, not 50, and everyone ends up decrypting everyone.
func TestJoinBurstIsBatched(t *testing.T) {
	n := newSimNet(t)
	alice := n.join("alice")
	first := alice.Status().Newest
	for i := range 50 {
		n.arrive(n.newMember(fmt.Sprintf("p%02d", i)))
		n.clock.Advance(20 * time.Millisecond)
		n.tickOnce()
	}
	n.settle()
	epochs := alice.Status().Newest - first
	t.Logf("50 joins in 1 s: %d epochs", epochs)
	if epochs > 5 {
		t.Fatalf("%d epochs for 50 joins within 1 s", epochs)
	}
	n.converged()
	for _, p := range n.order {
		if st := n.members[p].Status(); st.Epoch != st.Newest || len(st.Unheard) != 0 || len(st.AwaitingAcks) != 0 {
			t.Fatalf("%s's status %+v after the burst", p, st)
		}
	}
}

// TestJoinBatchMax: joins that keep coming still get an epoch within
// JoinBatchMax of the first one waiting.
func TestJoinBatchMax(t *testing.T) {
	n := newSimNet(t)
	alice := n.join("alice")
	before := alice.Status().Newest
	start := n.clock.Now()
	for i := 0; n.clock.Now().Sub(start) < DefaultJoinBatchMax+DefaultJoinBatch; i++ {
		if alice.Status().Newest != before {
			break
		}
		n.arrive(n.newMember(fmt.Sprintf("p%02d", i)))
		n.clock.Advance(DefaultJoinBatch / 2)
		n.tickOnce()
	}
	if alice.Status().Newest == before {
		t.Fatal("no epoch while joins kept coming")
	}
	if waited := n.clock.Now().Sub(start); waited > DefaultJoinBatchMax+DefaultJoinBatch/2 {
		t.Fatalf("first epoch after %v of joins", waited)
	}
}

// TestLeaveIsNotBatched: a leave re-keys at once, whatever joins wait.
func TestLeaveIsNotBatched(t *testing.T) {
	n := threeMembers(t)
	before := n.members["alice"].Status().Newest
	n.arrive(n.newMember("dave")) // starts a batch
	n.leave("carol")              // and this cuts it short
	if got := n.members["alice"].Status().Newest; got == before {
		t.Fatal("no epoch at once on a leave")
	}
}

func TestNextTick(t *testing.T) {
	n := threeMembers(t)
	alice := n.members["alice"]
	now := n.clock.Now()
	if next := alice.NextTick(); next.Before(now.Add(50*time.Millisecond)) || next.After(now.Add(time.Second)) {
		t.Fatalf("NextTick %v from %v, want within [50 ms, 1 s]", next.Sub(now), now)
	}
	n.arrive(n.newMember("dave"))
	if next := alice.NextTick(); next.Sub(now) != DefaultJoinBatch {
		t.Fatalf("NextTick %v after a join, want the batch's %v", next.Sub(now), DefaultJoinBatch)
	}
}

// TestSecurityCodeFollowsNamesAndPolicy: the code is over the names in the
// signed roster and the policy hash; SetPolicyHash changes it at once,
// the same for everyone, and a member who comes back under another name
// changes it too.
func TestSecurityCodeFollowsNamesAndPolicy(t *testing.T) {
	n := threeMembers(t)
	code := func() securitycode.Code {
		t.Helper()
		n.converged()
		c, _ := n.members["alice"].SecurityCode()
		return c
	}
	base := code()
	if got := n.members["bob"].Roster()[1].Name; got != "Bob" {
		t.Fatalf("bob's name in the roster %q", got)
	}
	for _, p := range n.order {
		n.members[p].SetPolicyHash("policy-2")
	}
	withPolicy := code()
	if withPolicy == base {
		t.Fatal("the policy hash does not change the code")
	}
	if withPolicy != securitycode.Compute("meeting-1", "policy-2", n.members["carol"].Roster()) {
		t.Fatal("code is not over the roster and the policy")
	}
	// One member with another policy hash sees another code: comparing
	// codes shows it.
	n.members["carol"].SetPolicyHash("policy-3")
	if c, _ := n.members["carol"].SecurityCode(); c == withPolicy {
		t.Fatal("different policies, same code")
	}
	n.members["carol"].SetPolicyHash("policy-2")

	// Bob leaves and comes back as "Robert": his new keys and name are in
	// the code; People shows the new name.
	n.leave("bob")
	m, err := NewMember(Config{Meeting: "meeting-1", Participant: "bob", Name: "Robert", PolicyHash: "policy-2",
		Identity: testIdentity(t, "bob"), Now: n.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	n.joinMember(m)
	renamed := code()
	if renamed == withPolicy {
		t.Fatal("code unchanged after a rename")
	}
	if p := person(t, n.members["alice"], "bob"); p.Name != "Robert" || !p.InKeys || !p.Heard {
		t.Fatalf("alice sees bob as %+v", p)
	}
	// The name alone moves the code: the same keys under the old name give
	// another one.
	roster := slices.Clone(n.members["alice"].Roster())
	for i := range roster {
		if roster[i].Participant == "bob" {
			roster[i].Name = "Bob"
		}
	}
	if securitycode.Compute("meeting-1", "policy-2", roster) == renamed {
		t.Fatal("the display name is not in the code")
	}
}

// TestLostCommitRecovered: a member that missed the commit re-sends its
// ack every AnnounceRetry, and the leader answers with the commit.
func TestLostCommitRecovered(t *testing.T) {
	n := threeMembers(t)
	dropped := 0
	n.intercept = func(d *delivery) bool {
		if msg, err := keymsg.Decode(d.payload); err == nil && msg.Type() == "commit" && d.to == "bob" {
			dropped++
			return false
		}
		return true
	}
	n.clock.Advance(DefaultRekeyInterval)
	n.tickOnce()
	n.intercept = nil
	bob := n.members["bob"]
	if st := bob.Status(); dropped == 0 || st.Epoch == st.Newest {
		t.Fatalf("setup: %d commits dropped, bob at %+v", dropped, st)
	}
	n.clock.Advance(DefaultAnnounceRetry)
	n.tick()
	if st := bob.Status(); st.Epoch != st.Newest {
		t.Fatalf("bob still waits for the commit: %+v", st)
	}
	n.converged()
}

// TestUncommittedEpochsBounded: epochs that never get committed (an ack
// that never comes) do not pile up: at most maxUncommitted wait, and the
// keys of those dropped are gone.
func TestUncommittedEpochsBounded(t *testing.T) {
	n := threeMembers(t)
	n.intercept = func(d *delivery) bool { return !(d.from == "carol" && d.to == "alice") }
	for range maxUncommitted + 3 {
		n.clock.Advance(DefaultRekeyInterval)
		n.tick()
	}
	bob := n.members["bob"]
	st := bob.Status()
	if st.Newest-st.Epoch != maxUncommitted+3 {
		t.Fatalf("setup: bob at %+v", st)
	}
	if got := bob.uncommitted(); got != maxUncommitted {
		t.Fatalf("bob holds %d uncommitted epochs, want %d", got, maxUncommitted)
	}
	for e := st.Epoch + 1; e <= st.Newest; e++ {
		kept := e > st.Newest-maxUncommitted
		if has := bob.receiver.HasKey(KID(e, 0)); has != kept {
			t.Errorf("epoch %d: alice's key held %v, want %v", e, has, kept)
		}
	}
	n.intercept = nil
	n.clock.Advance(DefaultAnnounceRetry)
	n.tick()
	n.converged()
}

// TestMediaDuringKeyChanges: frames go through Protect and Unprotect on
// other goroutines while epochs change (run with -race).
func TestMediaDuringKeyChanges(t *testing.T) {
	n := threeMembers(t)
	alice, bob := n.members["alice"], n.members["bob"]
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		dst := make([]byte, 0, 1024)
		got := 0
		for {
			select {
			case <-stop:
				done <- got
				return
			default:
			}
			if f, err := alice.Protect(dst[:0], mediaframe.VP8, testFrame); err == nil {
				if _, err := bob.Unprotect(nil, mediaframe.VP8, f); err == nil {
					got++
				}
			}
		}
	}()
	for i := range 5 {
		n.clock.Advance(DefaultRekeyInterval)
		n.tick()
		n.arrive(n.newMember(fmt.Sprintf("x%d", i)))
		n.settle()
	}
	close(stop)
	if got := <-done; got == 0 {
		t.Fatal("no frame got through while keys changed")
	}
	n.converged()
}
