package group

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/e2ee/keymsg"
	"github.com/oakmeet/oakmeet/e2ee/mediaframe"
	"github.com/oakmeet/oakmeet/e2ee/securitycode"
	"github.com/oakmeet/oakmeet/e2ee/sframe"
)

func threeMembers(t *testing.T) *simNet {
	n := newSimNet(t)
	n.join("alice")
	n.join("bob")
	n.join("carol")
	n.converged()
	return n
}

func lastEpochPayload(t *testing.T, n *simNet, from string) []byte {
	t.Helper()
	for i := len(n.log) - 1; i >= 0; i-- {
		d := n.log[i]
		if d.from != from {
			continue
		}
		if m, err := keymsg.Decode(d.payload); err == nil && m.Type() == "epoch" {
			return d.payload
		}
	}
	t.Fatalf("no epoch message from %s", from)
	return nil
}

func TestThreeMembersConverge(t *testing.T) {
	n := newSimNet(t)
	a := n.join("alice")
	// The first epoch takes the numbering over from nothing: a jump
	// (docs/E2EE.md §5.3); the joins after it follow on.
	first := a.Epoch()
	if first < takeoverJump || first >= 2*takeoverJump {
		t.Fatalf("first epoch %d, want a jump in [%d, %d)", first, takeoverJump, 2*takeoverJump)
	}
	n.join("bob")
	n.join("carol")
	n.converged()
	if a.Leader() != "alice" || n.members["carol"].Leader() != "alice" {
		t.Fatalf("leader %q", a.Leader())
	}
	if len(n.errs) != 0 {
		t.Fatalf("errors in a clean run: %v", n.errs)
	}
	code, _ := a.SecurityCode()
	if want := securitycode.Compute("meeting-1", "", a.Roster()); code != want {
		t.Fatalf("code %v, want %v", code, want)
	}
	// Each join re-keys: three epochs so far.
	if got := a.Epoch(); got != first+2 {
		t.Fatalf("epoch %d, want %d", got, first+2)
	}
	f := protect(t, n.members["bob"])
	h, _, err := sframe.ParseHeader(f[mediaframe.VP8KeyFramePrefix:])
	if err != nil {
		t.Fatal(err)
	}
	if h.KID != KID(first+2, 1) {
		t.Fatalf("bob's KID %#x, want epoch %d index 1", h.KID, first+2)
	}
	if who, ok := a.SenderOf(h.KID); !ok || who != "bob" {
		t.Fatalf("SenderOf = %q, %v", who, ok)
	}
}

func TestLeaverCannotDecryptAfterRekey(t *testing.T) {
	n := threeMembers(t)
	before, _ := n.members["alice"].SecurityCode()
	oldEpoch := n.members["alice"].Epoch()
	carol := n.leave("carol")
	// The leader re-keys inside OnRosterChange: no timer is involved, so the
	// caller's 2-second promise is the whole delay.
	epoch := n.converged()
	if epoch <= oldEpoch {
		t.Fatalf("no re-key after a leave: epoch %d", epoch)
	}
	after, _ := n.members["alice"].SecurityCode()
	if after == before {
		t.Fatal("code unchanged after a leave")
	}
	for _, name := range []string{"alice", "bob"} {
		if _, err := carol.Unprotect(nil, mediaframe.VP8, protect(t, n.members[name])); !errors.Is(err, sframe.ErrUnknownKID) {
			t.Fatalf("carol decrypts %s's frame after the re-key: %v", name, err)
		}
	}
	// Even given the new epoch message, carol has no copy of its secret.
	if _, err := carol.HandleMessage("alice", lastEpochPayload(t, n, "alice")); !errors.Is(err, ErrNotInRoster) {
		t.Fatalf("carol accepts the new epoch: %v", err)
	}
	if carol.Epoch() != oldEpoch {
		t.Fatal("carol's epoch moved")
	}
	if _, err := carol.Unprotect(nil, mediaframe.VP8, protect(t, n.members["bob"])); err == nil {
		t.Fatal("carol decrypts bob's frame")
	}
	if _, recv := carol.MediaStats(); recv.Dropped != 3 || recv.NoKey != 3 || recv.Passed != 2 {
		t.Fatalf("carol's stats %+v", recv)
	}
}

func TestForgedEpochRejected(t *testing.T) {
	n := threeMembers(t)
	alice, bob := n.members["alice"], n.members["bob"]
	epoch := alice.Epoch()
	mallory := testIdentity(t, "mallory")
	secret := bytes.Repeat([]byte{0x66}, keymsg.SecretSize)
	roster := alice.Roster()

	// 1. Alice's roster, signed with another key.
	forged, err := keymsg.NewEpoch("meeting-1", epoch+1, roster, secret, alice.cfg.Identity)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := keymsg.Encode(forged)
	tbsForged := *forged
	tbsForged.Epoch = epoch + 2 // alice's signature no longer covers it
	b2, _ := keymsg.Encode(&tbsForged)

	// 2. Mallory claims to be alice with her own identity: the entry is
	// self-consistent, but bob verified alice's real announcement.
	fake, _ := keymsg.NewAnnouncement("meeting-1", "alice", "", mallory, roster[1].HPKE)
	impostor, err := keymsg.NewEpoch("meeting-1", epoch+1, append([]keymsg.Entry{fake.Entry}, roster[1:]...), secret, mallory)
	if err != nil {
		t.Fatal(err)
	}
	b3, _ := keymsg.Encode(impostor)

	// 3. Carol, a real member but not the leader, makes an epoch.
	carol := n.members["carol"]
	croster := []keymsg.Entry{roster[2], roster[0], roster[1]}
	notLeader, err := keymsg.NewEpoch("meeting-1", epoch+1, croster, secret, carol.cfg.Identity)
	if err != nil {
		t.Fatal(err)
	}
	b4, _ := keymsg.Encode(notLeader)

	tests := []struct {
		name    string
		from    string
		payload []byte
		want    error
	}{
		{"epoch changed after signing", "alice", b2, keymsg.ErrBadSignature},
		{"relayed as if from carol", "carol", b, ErrSenderMismatch},
		{"impostor leader", "alice", b3, ErrRosterMismatch},
		{"signed by a non-leader", "carol", b4, ErrUnexpectedLeader},
		{"garbage", "alice", []byte(`{"v":2,"type":"epoch"}`), keymsg.ErrMalformed},
		{"other version", "alice", []byte(`{"v":1,"type":"epoch"}`), keymsg.ErrVersion},
	}
	for _, tc := range tests {
		if _, err := bob.HandleMessage(tc.from, tc.payload); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if bob.Epoch() != epoch {
			t.Fatalf("%s: bob moved to epoch %d", tc.name, bob.Epoch())
		}
	}
	// The group goes on: the next periodic re-key is accepted by everyone.
	n.clock.Advance(DefaultRekeyInterval)
	n.tick()
	if got := n.converged(); got <= epoch {
		t.Fatalf("epoch %d after the forgeries and a re-key", got)
	}
}

func TestReplayedEpochRejected(t *testing.T) {
	n := threeMembers(t)
	old := lastEpochPayload(t, n, "alice")
	n.clock.Advance(DefaultRekeyInterval)
	n.tick()
	epoch := n.converged()
	bob := n.members["bob"]
	out, err := bob.HandleMessage("alice", old)
	if !errors.Is(err, ErrStaleEpoch) || bob.Epoch() != epoch {
		t.Fatalf("replay: %v, epoch %d want %d", err, bob.Epoch(), epoch)
	}
	if len(out) != 0 {
		t.Fatalf("replay of the leader's own message answered with %d messages", len(out))
	}
	// The replayed frames of the old epoch are not the question here; new
	// frames still flow.
	n.converged()
}

func TestSwappedHPKEKeyChangesCodeOrFails(t *testing.T) {
	n := newSimNet(t)
	mallory := testIdentity(t, "mallory")
	malloryKey, _ := keymsg.KEM().GenerateKey()
	// A malicious relay replaces carol's announcement, as seen by alice and
	// bob, with one carrying mallory's keys.
	n.intercept = func(d *delivery) bool {
		if d.from != "carol" || d.to == "carol" {
			return true
		}
		if m, err := keymsg.Decode(d.payload); err == nil && m.Type() == "announce" {
			fake, _ := keymsg.NewAnnouncement("meeting-1", "carol", "", mallory, malloryKey.PublicKey().Bytes())
			d.payload, _ = keymsg.Encode(fake)
		}
		return true
	}
	n.join("alice")
	n.join("bob")
	carol := n.join("carol")
	alice := n.members["alice"]

	// Carol is not in the roster alice keyed: she gets no key and no code.
	if carol.Epoch() != 0 {
		t.Fatal("carol accepted an epoch keyed to someone else's HPKE key")
	}
	if !slices.ContainsFunc(n.errs["carol"], func(err error) bool { return errors.Is(err, ErrNotInRoster) }) {
		t.Fatalf("carol's errors: %v", n.errs["carol"])
	}
	// Alice keyed mallory's keys under carol's name; the real carol never
	// acks that epoch, so it is never committed and nobody sends under it.
	st := alice.Status()
	if st.Newest == st.Epoch || !slices.Equal(st.AwaitingAcks, []string{"carol"}) {
		t.Fatalf("alice's status %+v: the epoch with mallory's key should wait for carol", st)
	}
	if e, _ := SplitKID(kidOf(t, protect(t, alice))); e != st.Epoch {
		t.Fatalf("alice sends under epoch %d, not the committed %d", e, st.Epoch)
	}
	// And its code is not the one of the roster carol really has.
	fakeRoster := alice.newest().roster
	honest := slices.Clone(fakeRoster)
	honest[2] = carol.Entry()
	if securitycode.Compute("meeting-1", "", fakeRoster) == securitycode.Compute("meeting-1", "", honest) {
		t.Fatal("a swapped key did not change the code")
	}

	// Swapping only the HPKE key inside a real roster breaks the signatures.
	e, _ := keymsg.Decode(lastEpochPayload(t, n, "alice"))
	msg := e.(*keymsg.Epoch)
	msg.Roster[1].HPKE = malloryKey.PublicKey().Bytes()
	b, _ := keymsg.Encode(msg)
	if _, err := carol.HandleMessage("alice", b); !errors.Is(err, keymsg.ErrBadSignature) {
		t.Fatalf("swapped HPKE key: %v", err)
	}
}

func TestLeaderHandover(t *testing.T) {
	n := threeMembers(t)
	before, _ := n.members["bob"].SecurityCode()
	oldEpoch := n.members["bob"].Epoch()
	alice := n.leave("alice")
	if n.members["bob"].Leader() != "bob" || n.members["carol"].Leader() != "bob" {
		t.Fatal("bob does not lead after alice left")
	}
	epoch := n.converged()
	if epoch <= oldEpoch {
		t.Fatalf("no re-key on handover: %d", epoch)
	}
	if got := n.members["carol"].Roster()[0].Participant; got != "bob" {
		t.Fatalf("epoch signed by %q", got)
	}
	after, _ := n.members["bob"].SecurityCode()
	if after == before {
		t.Fatal("code unchanged after the leader left")
	}
	if _, err := alice.Unprotect(nil, mediaframe.VP8, protect(t, n.members["carol"])); err == nil {
		t.Fatal("the old leader decrypts after leaving")
	}
	// Someone joining later is keyed by the new leader.
	n.join("dave")
	n.converged()
}

func TestPeriodicRekeyKeepsCodeAndGrace(t *testing.T) {
	n := threeMembers(t)
	alice, bob := n.members["alice"], n.members["bob"]
	code, _ := alice.SecurityCode()
	epoch := alice.Epoch()
	oldFrame := protect(t, alice)

	n.clock.Advance(DefaultRekeyInterval - time.Second)
	n.tick()
	if alice.Epoch() != epoch {
		t.Fatal("re-keyed before the interval")
	}
	n.clock.Advance(time.Second)
	n.tick()
	if got := n.converged(); got != epoch+1 {
		t.Fatalf("epoch %d after the interval, want %d", got, epoch+1)
	}
	if c, _ := bob.SecurityCode(); c != code {
		t.Fatal("periodic re-key changed the code")
	}
	// A frame of the old epoch still in flight decrypts within the grace
	// window, and not after it.
	n.clock.Advance(DefaultGrace - time.Second)
	n.tick()
	if _, err := bob.Unprotect(nil, mediaframe.VP8, oldFrame); err != nil {
		t.Fatalf("old-epoch frame within grace: %v", err)
	}
	n.clock.Advance(time.Second)
	n.tick()
	// Carol has not seen oldFrame, so only the missing key can refuse it.
	if _, err := n.members["carol"].Unprotect(nil, mediaframe.VP8, oldFrame); !errors.Is(err, sframe.ErrUnknownKID) {
		t.Fatalf("old-epoch frame after grace: %v", err)
	}
}

// TestRetiredEpochsBounded: however fast epochs follow each other, only the
// keys of the last maxRetired replaced epochs are kept, even within the
// grace window.
func TestRetiredEpochsBounded(t *testing.T) {
	n := newSimNet(t)
	for _, name := range []string{"alice", "bob"} {
		m, err := NewMember(Config{Meeting: "meeting-1", Participant: name, Identity: testIdentity(t, name),
			Now: n.clock.Now, RekeyInterval: time.Second, Grace: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		n.joinMember(m)
	}
	alice, bob := n.members["alice"], n.members["bob"]
	frames := map[uint64][]byte{} // by the epoch they were sent in
	for range maxRetired + 2 {
		frames[alice.Epoch()] = protect(t, alice)
		n.clock.Advance(time.Second)
		n.tick()
	}
	current := n.converged()
	for epoch, f := range frames {
		_, err := bob.Unprotect(nil, mediaframe.VP8, f)
		if kept := current-epoch <= maxRetired; kept && err != nil || !kept && !errors.Is(err, sframe.ErrUnknownKID) {
			t.Errorf("frame of epoch %d at epoch %d: %v (kept: %v)", epoch, current, err, kept)
		}
	}
}

func TestHandoverRaceConverges(t *testing.T) {
	n := threeMembers(t)
	epoch := n.members["alice"].Epoch()
	// Alice's periodic re-key reaches carol but not bob, and then alice
	// leaves: bob takes over not knowing epoch+1 exists.
	var held []delivery
	n.intercept = func(d *delivery) bool {
		if d.from == "alice" && d.to == "bob" {
			held = append(held, *d)
			return false
		}
		return true
	}
	n.clock.Advance(DefaultRekeyInterval)
	n.tick()
	// Carol installed (and acked) epoch+1; bob never saw it, so alice
	// cannot commit it.
	if n.members["carol"].Status().Newest != epoch+1 || n.members["bob"].Status().Newest != epoch {
		t.Fatal("setup: carol should be ahead of bob")
	}
	n.intercept = nil
	n.leave("alice")
	// Bob takes the numbering over: his first epoch jumps over every number
	// alice may have used unknown to him (epoch+1 here, with another
	// secret), so carol takes it at once and no KID names two keys.
	got := n.converged()
	if got < epoch+takeoverJump || got >= epoch+2*takeoverJump {
		t.Fatalf("converged on epoch %d, want a jump from %d", got, epoch)
	}
	// Alice's held message finally reaches bob: stale, and harmless.
	for _, d := range held {
		if _, err := n.members["bob"].HandleMessage(d.from, d.payload); err == nil {
			t.Fatal("bob accepted alice's late epoch")
		}
	}
	n.converged()
}

func TestRestartedMemberGetsFreshKID(t *testing.T) {
	n := threeMembers(t)
	oldKID := kidOf(t, protect(t, n.members["bob"]))
	n.leave("bob")
	// Bob's client restarts: same participant id and identity, new state.
	n.joinMember(n.newMember("bob"))
	n.converged()
	newKID := kidOf(t, protect(t, n.members["bob"]))
	oldE, _ := SplitKID(oldKID)
	newE, _ := SplitKID(newKID)
	if newE <= oldE {
		t.Fatalf("restarted sender reuses epoch %d (KID %#x, was %#x)", newE, newKID, oldKID)
	}
}

func TestRestartedLeaderCatchesUp(t *testing.T) {
	n := threeMembers(t)
	n.clock.Advance(DefaultRekeyInterval)
	n.tick()
	epoch := n.members["bob"].Epoch()
	// Alice's client restarts and the roster keeps her first: a leader with
	// no epoch, whose first one would be stale to everyone else.
	n.joinMember(n.newMember("alice"))
	got := n.converged()
	if got <= epoch {
		t.Fatalf("converged on epoch %d, not above %d", got, epoch)
	}
}

func kidOf(t *testing.T, f []byte) uint64 {
	t.Helper()
	h, _, err := sframe.ParseHeader(f[mediaframe.PrefixLen(mediaframe.VP8, f):])
	if err != nil {
		t.Fatal(err)
	}
	return h.KID
}

func TestLateAnnouncementIsKeyed(t *testing.T) {
	n := newSimNet(t)
	n.join("alice")
	// Dave's announcement is lost; he is in the roster but cannot be keyed.
	n.intercept = func(d *delivery) bool { return d.from != "dave" }
	dave := n.join("dave")
	if dave.Epoch() != 0 {
		t.Fatal("dave keyed without an announcement")
	}
	if _, err := dave.Protect(nil, mediaframe.Opus, []byte{0x78, 1, 2}); !errors.Is(err, mediaframe.ErrNoKey) {
		t.Fatalf("Protect without a key: %v", err)
	}
	if sent, _ := dave.MediaStats(); sent.NoKey != 1 || sent.Dropped != 1 {
		t.Fatalf("dave's stats %+v", sent)
	}
	n.intercept = nil
	// Tick re-announces while dave has no epoch.
	n.clock.Advance(DefaultAnnounceRetry)
	n.tick()
	n.converged()
}

func TestMessagesForOtherMeetingsRefused(t *testing.T) {
	n := threeMembers(t)
	bob := n.members["bob"]
	other, _ := keymsg.NewAnnouncement("meeting-2", "alice", "", testIdentity(t, "alice"), bob.Entry().HPKE)
	b, _ := keymsg.Encode(other)
	if _, err := bob.HandleMessage("alice", b); !errors.Is(err, ErrWrongMeeting) {
		t.Errorf("announcement: %v", err)
	}
	s, _ := keymsg.Encode(&keymsg.Sync{Meeting: "meeting-2", Epoch: 99, Leader: "x"})
	if _, err := n.members["alice"].HandleMessage("bob", s); !errors.Is(err, ErrWrongMeeting) {
		t.Errorf("sync: %v", err)
	}
	a, _ := keymsg.NewAnnouncement("meeting-1", "carol", "", testIdentity(t, "carol"), bob.Entry().HPKE)
	b, _ = keymsg.Encode(a)
	if _, err := bob.HandleMessage("alice", b); !errors.Is(err, ErrSenderMismatch) {
		t.Errorf("announcement relayed from another sender: %v", err)
	}
	if out, err := bob.HandleMessage("bob", []byte("not even JSON")); err != nil || out != nil {
		t.Errorf("own echo: %v", err)
	}
	n.converged()
}

func TestMemberZeroAllocs(t *testing.T) {
	n := threeMembers(t)
	alice, bob := n.members["alice"], n.members["bob"]
	dst := make([]byte, 0, 1024)
	if a := testing.AllocsPerRun(100, func() {
		if _, err := alice.Protect(dst[:0], mediaframe.VP8, testFrame); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("Protect allocates %.1f per frame", a)
	}
	frames := make([][]byte, 128)
	for i := range frames {
		frames[i] = protect(t, alice)
	}
	i := 0
	if a := testing.AllocsPerRun(100, func() {
		if _, err := bob.Unprotect(dst[:0], mediaframe.VP8, frames[i]); err != nil {
			t.Fatal(err)
		}
		i++
	}); a != 0 {
		t.Errorf("Unprotect allocates %.1f per frame", a)
	}
}

func TestNewMemberRejectsBadConfig(t *testing.T) {
	id := testIdentity(t, "x")
	for name, cfg := range map[string]Config{
		"no identity":    {Meeting: "m", Participant: "p"},
		"no meeting":     {Participant: "p", Identity: id},
		"no participant": {Meeting: "m", Identity: id},
		"bad suite":      {Meeting: "m", Participant: "p", Identity: id, Suite: 0x77},
	} {
		if _, err := NewMember(cfg); err == nil {
			t.Errorf("%s: NewMember accepted", name)
		}
	}
}

func TestSyncCannotExhaustEpochs(t *testing.T) {
	n := threeMembers(t)
	alice := n.members["alice"]
	epoch := alice.Epoch()
	for _, tc := range []struct {
		from   string
		epoch  uint64
		rekeys bool
	}{
		{"bob", epoch - 1, false},           // behind alice: nothing to do
		{"bob", epoch, false},               // alice's own epoch
		{"bob", keymsg.MaxEpoch - 1, false}, // an absurd jump
		{"mallory", epoch + 5, false},       // not a participant
		{"bob", epoch + 5, true},            // a real gap: re-key above it
	} {
		s, _ := keymsg.Encode(&keymsg.Sync{Meeting: "meeting-1", Epoch: tc.epoch, Leader: "alice"})
		before := alice.Status().Newest
		out, err := alice.HandleMessage(tc.from, s)
		if err != nil {
			t.Fatal(err)
		}
		// The new epoch is made at once; it is sent under once bob and
		// carol ack it.
		// Someone holds another leader's epoch: alice jumps above it, as
		// on any takeover of the numbering (docs/E2EE.md §5.3).
		after := alice.Status().Newest
		jumped := after >= tc.epoch+takeoverJump && after < tc.epoch+2*takeoverJump
		if moved := after != before; moved != tc.rekeys || (moved && !jumped) {
			t.Fatalf("sync %d from %s: epoch %d -> %d", tc.epoch, tc.from, before, after)
		}
		n.send("alice", out)
		n.run()
	}
	n.converged()
}
