package group

import (
	"container/heap"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/e2ee/identity"
	"github.com/oakmeet/oakmeet/e2ee/keymsg"
)

// TestChurn runs the key schedule through seeded churn (docs/E2EE.md §6.9):
//
//	go test -race -count=1 -run TestChurn ./e2ee/group               # 2,000 seeds
//	go test -count=1 -run TestChurn ./e2ee/group -seed 1234 -v       # one seed, traced
//	go test -count=1 -run TestChurn ./e2ee/group -seeds 20000 -first 5000
var (
	churnSeed  = flag.Uint64("seed", 0, "run only this churn seed, with a trace of what happened")
	churnSeeds = flag.Int("seeds", 2000, "how many churn seeds TestChurn runs")
	churnFirst = flag.Uint64("first", 1, "the first churn seed TestChurn runs")
)

// Bounds of one seed's run.
const (
	churnSteps    = 40                     // steps of churn, each a few tens of ms
	maxEvents     = 3                      // churn events per seed, at most
	churnStepMax  = 100 * time.Millisecond // how far the clock moves per step, at most
	settleLimit   = 60 * time.Second       // from the end of churn to convergence, at most
	settleStep    = 50 * time.Millisecond  // clock steps while settling
	maxMembers    = 7                      // participants at once
	firstMembers  = 2                      // at the start, at least
	joinSpacingMx = 150 * time.Millisecond // between the first members' joins
)

func TestChurn(t *testing.T) {
	if *churnSeed != 0 {
		w := runChurn(*churnSeed, true)
		for _, line := range w.trace {
			t.Log(line)
		}
		if w.fail != nil {
			t.Fatalf("seed %d: %v%s", *churnSeed, w.fail, w.describe())
		}
		t.Logf("seed %d: %+v", *churnSeed, w.stats)
		return
	}
	n := *churnSeeds
	if testing.Short() {
		n = min(n, 200)
	}
	seeds := make(chan uint64)
	var mu sync.Mutex
	var failed []string
	var total churnStats
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for seed := range seeds {
				w := runChurn(seed, false)
				mu.Lock()
				total.add(w.stats)
				if w.fail != nil {
					failed = append(failed, fmt.Sprintf("seed %d: %v\n  rerun: go test -count=1 -run TestChurn ./e2ee/group -seed %d -v", seed, w.fail, seed))
				}
				mu.Unlock()
			}
		})
	}
	for s := range uint64(n) {
		mu.Lock()
		stop := len(failed) >= 5
		mu.Unlock()
		if stop {
			break
		}
		seeds <- *churnFirst + s
	}
	close(seeds)
	wg.Wait()
	for _, f := range failed {
		t.Error(f)
	}
	t.Logf("%d seeds from %d: %+v", n, *churnFirst, total)
}

func (s *churnStats) add(o churnStats) {
	s.epochs += o.epochs
	s.frames += o.frames
	s.decrypted += o.decrypted
	s.noKey += o.noKey
	s.joins += o.joins
	s.leaves += o.leaves
	s.crashes += o.crashes
	s.messages += o.messages
	s.settled += o.settled
}

func drawParams(rng *rand.Rand) churnParams {
	p := churnParams{
		maxDelay:   time.Duration(1+rng.IntN(300)) * time.Millisecond,
		mediaDelay: time.Duration(1+rng.IntN(200)) * time.Millisecond,
		fifo:       rng.IntN(2) == 0,
		dupRate:    []float64{0, 0.05, 0.1}[rng.IntN(3)],
		dropRate:   []float64{0, 0.05, 0.2}[rng.IntN(3)],
		glitchRate: []float64{0, 0.1}[rng.IntN(2)],
	}
	if rng.IntN(8) == 0 {
		p.cfg.RekeyInterval = time.Duration(2+rng.IntN(3)) * time.Second
	}
	if rng.IntN(3) == 0 {
		p.cfg.JoinBatch = time.Duration(20+rng.IntN(200)) * time.Millisecond
	}
	return p
}

// runChurn runs one seed: a few members join, then churn (joins, leaves,
// crashes and restarts, the leader leaving, glitched views) with frames
// sent all along, then quiet until every member agrees.
func runChurn(seed uint64, tracing bool) *churnWorld {
	rng := rand.New(rand.NewPCG(seed, 0x6f616b6d656574))
	w := &churnWorld{
		seed: seed, rng: rng, tracing: tracing,
		clock:   &fakeClock{t: simStart},
		p:       drawParams(rng),
		members: map[string]*Member{},
		lastAt:  map[string]time.Time{},
		due:     map[*Member]time.Time{},
		minted:  map[[keymsg.DigestSize]byte]minted{},
		ids:     map[string]*identity.Identity{},
	}
	w.logf("params %+v", w.p)
	for range firstMembers + rng.IntN(2) {
		w.join("")
		w.run(w.delay(joinSpacingMx))
	}
	// A few events per seed keep one seed cheap under -race; thousands of
	// seeds make up the combinations.
	rate := float64(1+rng.IntN(maxEvents)) / churnSteps
	for range churnSteps {
		if w.fail != nil {
			return w
		}
		if w.rng.Float64() < rate {
			w.churnEvent()
		}
		w.run(w.delay(churnStepMax))
		if w.rng.IntN(2) == 0 && len(w.order) > 0 {
			w.sendFrame(w.members[w.order[w.rng.IntN(len(w.order))]])
		}
	}
	w.settle()
	return w
}

// run lets d pass, delivering and ticking as things fall due, checking the
// key invariant after each moment.
func (w *churnWorld) run(d time.Duration) {
	end := w.clock.Now().Add(d)
	for w.fail == nil {
		next := end
		if len(w.queue) > 0 && w.queue[0].at.Before(next) {
			next = w.queue[0].at
		}
		for _, p := range w.order {
			if t, ok := w.due[w.members[p]]; ok && t.Before(next) {
				next = t
			}
		}
		if now := w.clock.Now(); next.After(now) {
			w.clock.Advance(next.Sub(now))
		}
		w.deliver()
		w.tickDue()
		w.checkKeys()
		if !w.clock.Now().Before(end) && (len(w.queue) == 0 || w.queue[0].at.After(end)) {
			return
		}
	}
}

func (w *churnWorld) churnEvent() {
	switch r := w.rng.IntN(15); {
	case r < 5 && len(w.order) < maxMembers:
		w.join("")
	case r < 8 && len(w.order) > 1:
		w.leave(w.order[w.rng.IntN(len(w.order))], true)
	case r < 10 && len(w.order) > 1:
		w.leave(w.order[0], true) // the leader, maybe mid re-key
	case r < 13 && len(w.order) > 0:
		w.restart(w.order[w.rng.IntN(len(w.order))])
	case r < 15 && len(w.order) > 0:
		w.showView(w.members[w.order[w.rng.IntN(len(w.order))]])
	}
}

func (w *churnWorld) newMember(pid string, id *identity.Identity) *Member {
	cfg := w.p.cfg
	cfg.Meeting, cfg.Participant, cfg.Name, cfg.Identity, cfg.Now = "meeting-1", pid, displayName(pid), id, w.clock.Now
	cfg.Rand = rngReader{w.rng}
	m, err := NewMember(cfg)
	if err != nil {
		w.failf("NewMember: %v", err)
	}
	return m
}

// join adds a new participant (a fresh id when pid is "") at the end of
// the join order: it announces to everyone present, then every member is
// shown the new roster.
func (w *churnWorld) join(pid string) {
	if pid == "" {
		w.nextID++
		pid = fmt.Sprintf("p%d", w.nextID)
		id, err := identity.Generate()
		if err != nil {
			w.failf("identity: %v", err)
			return
		}
		w.ids[pid] = id
	}
	m := w.newMember(pid, w.ids[pid])
	w.stats.joins++
	w.logf("%s joins", pid)
	w.order = append(w.order, pid)
	w.members[pid] = m
	w.send(pid, []Outgoing{m.Announce()})
	w.rosterChanged()
}

// leave takes pid out of the meeting; a graceful leaver is kept as one a
// server still forwards key messages and frames to.
func (w *churnWorld) leave(pid string, keep bool) {
	m := w.members[pid]
	w.stats.leaves++
	w.logf("%s leaves (leader %v)", pid, w.order[0] == pid)
	delete(w.members, pid)
	w.order = slices.DeleteFunc(w.order, func(p string) bool { return p == pid })
	if keep {
		// The latest leaver keeps listening: enough to catch a key
		// kept too long, and each costs every message's handling again.
		w.leavers = append(w.leavers, leaver{m: m, left: w.clock.Now()})
		if len(w.leavers) > 1 {
			w.leavers = w.leavers[1:]
		}
	}
	w.rosterChanged()
}

// restart crashes pid's client and brings a new one up: under the same
// participant id in its place in the join order (the server's replaces),
// with the same or a new identity, or as a new participant at the end.
func (w *churnWorld) restart(pid string) {
	w.stats.crashes++
	switch w.rng.IntN(3) {
	case 0:
		w.logf("%s restarts as a new participant", pid)
		w.leave(pid, false)
		w.stats.leaves--
		w.join("")
		w.stats.joins--
		return
	case 1:
		id, err := identity.Generate()
		if err != nil {
			w.failf("identity: %v", err)
			return
		}
		w.ids[pid] = id
	}
	w.logf("%s restarts in place", pid)
	m := w.newMember(pid, w.ids[pid])
	w.members[pid] = m
	w.send(pid, []Outgoing{m.Announce()})
	w.showView(m)
}

// settle ends churn: every member is shown the true roster and nothing is
// lost any more; within settleLimit every member must agree on one epoch
// and code naming exactly the participants, read every other member's
// frames, and no leaver may read them.
func (w *churnWorld) settle() {
	if w.fail != nil {
		return
	}
	w.p.dropRate, w.p.glitchRate = 0, 0
	w.logf("churn ends; order %v", w.order)
	if len(w.order) == 0 {
		return
	}
	w.rosterChanged()
	start := w.clock.Now()
	deadline := start.Add(settleLimit)
	for w.clock.Now().Before(deadline) && w.fail == nil {
		w.run(settleStep)
		if w.agreed() == "" {
			w.stats.settled = w.clock.Now().Sub(start)
			w.checkFinal()
			return
		}
	}
	if w.fail == nil {
		w.failf("no agreement %v after churn ended: %s%s", settleLimit, w.agreed(), w.describe())
	}
}

// agreed says how the members disagree, or "" if they do not.
func (w *churnWorld) agreed() string {
	first := w.members[w.order[0]]
	epoch := first.Epoch()
	code, ok := first.SecurityCode()
	if !ok {
		return first.Participant() + " has no epoch"
	}
	for _, p := range w.order {
		m := w.members[p]
		c, _ := m.SecurityCode()
		if m.Epoch() != epoch || c != code {
			return fmt.Sprintf("%s at epoch %d, %s at %d", p, m.Epoch(), first.Participant(), epoch)
		}
		roster := m.Roster()
		if len(roster) != len(w.order) {
			return fmt.Sprintf("%s's roster has %d entries for %d participants", p, len(roster), len(w.order))
		}
		// A view that showed two participants swapped when the leader
		// keyed them leaves them so in the roster: the order is the
		// leader's, and everyone agrees on it through the code.
		for _, q := range w.order {
			if !slices.ContainsFunc(roster, w.members[q].Entry().SameKeys) {
				return fmt.Sprintf("%s's roster lacks %s's current keys", p, q)
			}
		}
		if roster[0].Participant != w.order[0] {
			return fmt.Sprintf("%s's roster is led by %s, the meeting by %s", p, roster[0].Participant, w.order[0])
		}
	}
	return ""
}

// checkFinal exchanges a frame between every two members and shows one to
// every leaver, delivered at once.
func (w *churnWorld) checkFinal() {
	for _, from := range w.order {
		w.p.mediaDelay = 0
		sent := w.stats.frames
		w.sendFrame(w.members[from])
		if w.stats.frames == sent {
			w.failf("after agreement %s sends nothing", from)
		}
		for len(w.queue) > 0 && w.fail == nil {
			e := heap.Pop(&w.queue).(*simEvent)
			if e.kind != evMedia || e.frame.sender != w.members[from] || !e.frame.sentAt.Equal(w.clock.Now()) {
				continue
			}
			before := w.stats.decrypted
			w.receiveFrame(e.target, e.frame)
			if !w.isLeaver(e.target) && w.stats.decrypted == before && w.fail == nil {
				w.failf("after agreement %s cannot read %s's frame%s", e.target.Participant(), from, w.describe())
			}
		}
	}
	if w.fail == nil {
		w.logf("agreed at epoch %d: %s", w.members[w.order[0]].Epoch(), strings.Join(w.order, " "))
	}
}

// rngReader makes epoch number jumps follow the seed.
type rngReader struct{ rng *rand.Rand }

func (r rngReader) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(r.rng.Uint32())
	}
	return len(b), nil
}
