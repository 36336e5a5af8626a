package system

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/e2ee/group"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/signal"
	"github.com/oakmeet/oakmeet/testcluster"
)

// keyHolder keeps the key schedule members of a meeting's bots, by name,
// so a test can watch their state while they run.
type keyHolder struct {
	mu sync.Mutex
	m  map[string]*group.Member
	id map[string]string // participant id by name
}

func newKeyHolder() *keyHolder {
	return &keyHolder{m: map[string]*group.Member{}, id: map[string]string{}}
}

// watch fills in cfg's OnKeys for the bot name.
func (k *keyHolder) watch(cfg bot.Config) bot.Config {
	name := cfg.Name
	cfg.OnKeys = func(pid string, m *group.Member) {
		k.mu.Lock()
		k.m[name], k.id[name] = m, pid
		k.mu.Unlock()
	}
	return cfg
}

func (k *keyHolder) member(name string) (*group.Member, string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.m[name], k.id[name]
}

// person is what name's member knows of the participant pid.
func (k *keyHolder) person(name, pid string) (group.Person, bool) {
	m, _ := k.member(name)
	if m == nil {
		return group.Person{}, false
	}
	i := slices.IndexFunc(m.People(), func(p group.Person) bool { return p.Participant == pid })
	if i < 0 {
		return group.Person{}, false
	}
	return m.People()[i], true
}

// sendsWith reports whether every named member sends under an epoch whose
// roster is exactly the named participants.
func (k *keyHolder) sendsWith(names ...string) bool {
	var want []string
	for _, n := range names {
		_, id := k.member(n)
		if id == "" {
			return false
		}
		want = append(want, id)
	}
	slices.Sort(want)
	for _, n := range names {
		m, _ := k.member(n)
		var in []string
		for _, p := range m.People() {
			if p.InKeys {
				in = append(in, p.Participant)
			}
		}
		slices.Sort(in)
		if !slices.Equal(in, want) {
			return false
		}
	}
	return true
}

func flagged(rep *bot.Report, pid, flag string) bool {
	for _, p := range rep.People {
		if p.ParticipantID == pid {
			return slices.Contains(p.Flags, flag)
		}
	}
	return false
}

// A node that shows an extra participant, a "ghost" with keys of its own,
// to the leader alone: the leader seals the ghost into a new epoch, but no
// other member has heard the ghost announce itself, so none acknowledges
// that epoch, it is never committed, nobody sends under it, and the ghost
// decrypts nothing. The members who hold the epoch flag the ghost.
func TestGhostShownToTheLeaderAloneGetsNoMedia(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, nil)
	lie := startLiar(t, c, testcluster.NodeSpec{ID: "de-liar", Country: "DE", Region: "eu-central-1"})
	c.WaitHealthy(1)
	m := hostedMeeting(t, c)
	keys := newKeyHolder()
	cfg := func(name string, publish bool) bot.Config {
		return keys.watch(bot.Config{Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: m.fingerprint,
			Name: name, Country: "DE", LoopbackOnly: true, NoPublish: !publish, Linger: 200 * time.Millisecond})
	}
	// The leader joins first: the roster is ordered by join time.
	stopA := startBots(t, cfg("a", true))
	testcluster.WaitFor(t, 15*time.Second, "a in", func() bool { _, id := keys.member("a"); return id != "" })
	stopB := startBots(t, cfg("b", true))
	stopC := startBots(t, cfg("c", false))
	testcluster.WaitFor(t, 20*time.Second, "a, b and c keyed together", func() bool { return keys.sendsWith("a", "b", "c") })
	_, leader := keys.member("a")
	epochBefore, _ := keys.member("b")
	before := epochBefore.Epoch()

	var mu sync.Mutex
	ghost := ""
	lie.setCensor(func(to string, msg signal.Message) (signal.Message, bool) {
		mu.Lock()
		defer mu.Unlock()
		if msg.Type == signal.TypeParticipantJoined && msg.Participant.Name == "ghost" {
			ghost = msg.Participant.ID
		}
		if to == leader || ghost == "" || to == ghost {
			return msg, true
		}
		switch msg.Type {
		case signal.TypeParticipantJoined, signal.TypeParticipantLeft:
			return msg, msg.Participant.ID != ghost
		case signal.TypeRelay, signal.TypeChat:
			return msg, msg.From != ghost
		case signal.TypeTrackPublished, signal.TypeTrackUnpublished:
			return msg, msg.Track.Participant != ghost
		}
		return msg, true
	})
	stopGhost := startBots(t, cfg("ghost", false))
	testcluster.WaitFor(t, 20*time.Second, "the leader's epoch with the ghost reaches b and c", func() bool {
		_, gid := keys.member("ghost")
		pb, okb := keys.person("b", gid)
		pc, okc := keys.person("c", gid)
		return gid != "" && okb && okc && pb.Pending && pc.Pending
	})
	// Media goes on for a while under the epoch without the ghost; the
	// epoch with it stays uncommitted however long the leader waits.
	mark := nodeBytes(c.API, m.ID)["de-liar"]
	waitTraffic(t, c.API, m.ID, map[string]uint64{"de-liar": mark}, 4*mediaWhile, 20*time.Second)
	_, gid := keys.member("ghost")
	for _, n := range []string{"a", "b", "c"} {
		if p, ok := keys.person(n, gid); ok && p.InKeys {
			t.Errorf("%s sends under an epoch with the ghost: %+v", n, p)
		}
	}
	if p, _ := keys.person("c", gid); p.Listed || p.Heard {
		t.Errorf("c's view of the ghost: %+v", p)
	}
	// The leader waits for acknowledgements that do not come: the ghost's
	// epoch stays its newest, above the one it sends under.
	if lm, _ := keys.member("a"); lm.Status().Newest <= lm.Status().Epoch || len(lm.Status().AwaitingAcks) == 0 {
		t.Errorf("the leader's keys %+v: want an uncommitted newest epoch awaiting acks", lm.Status())
	}
	// b reports first, while the ghost is still about: once it leaves, the
	// leader re-keys without it and nobody holds it any more.
	reps := stopB()
	ghostRep := stopGhost()[0]
	reps = append(append(stopA(), reps...), stopC()...)

	if ghostRep == nil {
		t.Fatal("the ghost did not report")
	}
	var nokey int64
	for _, tr := range ghostRep.Tracks {
		if tr.Frames != 0 {
			t.Errorf("the ghost decrypted %d frames from %s", tr.Frames, tr.ParticipantID)
		}
		nokey += tr.NoKey
	}
	if nokey == 0 {
		t.Errorf("the ghost received no ciphertext at all: the test shows nothing (%+v)", ghostRep.Tracks)
	}
	for i, rep := range reps {
		if rep == nil {
			t.Fatalf("bot %d did not report", i)
		}
		for _, k := range rep.KeyChanges {
			if slices.Contains(k.Roster, gid) {
				t.Errorf("%s sent under epoch %d with the ghost in it", rep.ParticipantID, k.Epoch)
			}
		}
		if rep.Epoch < before {
			t.Errorf("%s went back to epoch %d", rep.ParticipantID, rep.Epoch)
		}
	}
	// b holds the leader's epoch naming someone the server does not list
	// to it and who never announced themselves to it.
	if !flagged(reps[1], gid, bot.FlagNotListed) || !flagged(reps[1], gid, bot.FlagNotHeard) {
		t.Errorf("b does not flag the ghost: %+v", reps[1].People)
	}
	if v, _ := framesFrom(reps[1], reps[0].ParticipantID); v == 0 {
		t.Errorf("b got no video from a while the ghost was about")
	}
}

// A node that hides a real participant from one member's list: that
// member still holds the signed roster with them in it, and flags them.
func TestHiddenParticipantIsFlagged(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, nil)
	lie := startLiar(t, c, testcluster.NodeSpec{ID: "de-liar", Country: "DE", Region: "eu-central-1"})
	c.WaitHealthy(1)
	m := hostedMeeting(t, c)
	keys := newKeyHolder()
	cfg := func(name string) bot.Config {
		return keys.watch(bot.Config{Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: m.fingerprint,
			Name: name, Country: "DE", LoopbackOnly: true, NoPublish: name != "a", Linger: 200 * time.Millisecond})
	}
	// a joins first and leads; the node lies to b, a member.
	stopA := startBots(t, cfg("a"))
	testcluster.WaitFor(t, 15*time.Second, "a in", func() bool { _, id := keys.member("a"); return id != "" })
	stopB := startBots(t, cfg("b"))
	testcluster.WaitFor(t, 20*time.Second, "a and b keyed", func() bool { return keys.sendsWith("a", "b") })
	_, victim := keys.member("b")
	lie.setCensor(func(to string, msg signal.Message) (signal.Message, bool) {
		if to != victim {
			return msg, true
		}
		switch msg.Type {
		case signal.TypeParticipantJoined, signal.TypeParticipantLeft:
			return msg, msg.Participant.Name != "hidden"
		}
		return msg, true
	})
	stopH := startBots(t, cfg("hidden"))
	testcluster.WaitFor(t, 20*time.Second, "everyone keyed with the hidden one", func() bool { return keys.sendsWith("a", "b", "hidden") })
	_, hid := keys.member("hidden")
	if p, ok := keys.person("b", hid); !ok || p.Listed || !p.InKeys {
		t.Errorf("b's view of the hidden participant: %+v %v", p, ok)
	}
	// b reports while the hidden one is still in the keys.
	rep := stopB()[0]
	stopH()
	stopA()
	if rep == nil || !flagged(rep, hid, bot.FlagNotListed) {
		t.Errorf("b does not flag the hidden participant: %+v", rep)
	}
	if rep != nil && flagged(rep, hid, bot.FlagNotHeard) {
		t.Errorf("b flags the hidden participant as unheard, but its announcements pass: %+v", rep.People)
	}
}
