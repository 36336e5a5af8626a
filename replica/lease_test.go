package replica

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/cluster"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const ttl = 2 * time.Second

func at(d time.Duration) time.Time { return t0.Add(d) }

func TestLeaseCreateRenewAndStepDownWhenUnreachable(t *testing.T) {
	m := newMachine("a", ttl)
	if o, _ := m.next(at(0)); o.kind != opNone {
		t.Fatalf("acts before reading the key: %v", o.kind)
	}
	m.observe(false, 0, cluster.Lease{}, at(0))
	o, _ := m.next(at(0))
	if o.kind != opCreate || o.lease.Replica != "a" || o.lease.Term != 1 || o.lease.TTLMs != 2000 {
		t.Fatalf("absent key: %+v", o)
	}
	m.result(o, at(0), written, 7, at(10*time.Millisecond))
	if !m.leader(at(10 * time.Millisecond)) {
		t.Fatal("not leading after the create")
	}
	o, wake := m.next(at(100 * time.Millisecond))
	if o.kind != opNone || !wake.Equal(at(ttl/4)) {
		t.Fatalf("renews too early: %v wake %v", o.kind, wake.Sub(t0))
	}
	o, _ = m.next(at(ttl / 4))
	if o.kind != opRenew || o.rev != 7 || o.lease.Term != 1 {
		t.Fatalf("renewal: %+v", o)
	}
	// The renewal cannot reach NATS: still leading until 0.8 TTL after
	// the last successful one was sent (the create, at 0), and not a
	// moment after.
	m.result(o, at(ttl/4), unreachable, 0, at(ttl/2))
	if !m.leader(at(ttl*4/5 - time.Nanosecond)) {
		t.Fatal("stepped down before its deadline")
	}
	for now := at(ttl / 2); now.Before(at(ttl * 4 / 5)); {
		o, wake := m.next(now)
		if o.kind == opRenew {
			m.result(o, now, unreachable, 0, now)
			continue
		}
		if wake.After(at(ttl * 4 / 5)) {
			t.Fatalf("sleeps past its deadline: %v", wake.Sub(t0))
		}
		now = wake
	}
	if m.leader(at(ttl * 4 / 5)) {
		t.Fatal("still leading at its deadline")
	}
	// A renewal whose answer comes after the deadline does not bring
	// leadership back.
	m.result(op{kind: opRenew, rev: 7, lease: o.lease}, at(ttl*3/4), written, 8, at(ttl*4/5))
	if m.leader(at(ttl * 4 / 5)) {
		t.Fatal("an answer after the deadline made it leader again")
	}
}

func TestLeaseFollowerTakesOverOnlyAfterTTLUnchanged(t *testing.T) {
	m := newMachine("b", ttl)
	other := cluster.Lease{Replica: "a", Term: 3, TTLMs: 2000}
	m.observe(true, 5, other, at(0))
	if m.holder(at(0)) != "a" {
		t.Fatalf("holder %q", m.holder(at(0)))
	}
	o, wake := m.next(at(time.Second))
	if o.kind != opNone || !wake.Equal(at(ttl)) {
		t.Fatalf("before TTL: %v wake %v", o.kind, wake.Sub(t0))
	}
	// A renewal restarts the count, by our clock.
	m.observe(true, 6, other, at(1500*time.Millisecond))
	if o, _ := m.next(at(ttl)); o.kind != opNone {
		t.Fatalf("takes a renewed lease: %v", o.kind)
	}
	if o, _ := m.next(at(1500*time.Millisecond + ttl - time.Nanosecond)); o.kind != opNone {
		t.Fatal("takes before TTL")
	}
	o, _ = m.next(at(1500*time.Millisecond + ttl))
	if o.kind != opTake || o.rev != 6 || o.lease.Term != 4 || o.lease.Replica != "b" {
		t.Fatalf("take: %+v", o)
	}
	if m.holder(at(1500*time.Millisecond+ttl)) != "" {
		t.Fatal("an expired lease still names its holder")
	}
	// Another replica won the race: we wait for what the watch says.
	m.result(o, at(3500*time.Millisecond), conflict, 0, at(3510*time.Millisecond))
	if m.leader(at(3510 * time.Millisecond)) {
		t.Fatal("leads after a lost race")
	}
	if o, _ := m.next(at(3510 * time.Millisecond)); o.kind != opNone {
		t.Fatalf("tries again at once: %v", o.kind)
	}
	m.observe(true, 7, cluster.Lease{Replica: "c", Term: 4, TTLMs: 2000}, at(3520*time.Millisecond))
	if o, _ := m.next(at(3600 * time.Millisecond)); o.kind != opNone || m.holder(at(3600*time.Millisecond)) != "c" {
		t.Fatalf("after c took it: %v holder %q", o.kind, m.holder(at(3600*time.Millisecond)))
	}
}

func TestLeaseHolderTTLIsTheLeases(t *testing.T) {
	m := newMachine("b", 100*time.Millisecond)
	m.observe(true, 5, cluster.Lease{Replica: "a", Term: 1, TTLMs: 2000}, at(0))
	if o, _ := m.next(at(time.Second)); o.kind != opNone {
		t.Fatal("took over on its own TTL, not the holder's")
	}
	if o, _ := m.next(at(ttl)); o.kind != opTake {
		t.Fatalf("after the holder's TTL: %v", o.kind)
	}
}

func TestLeaseOwnIDTakenBackAtOnce(t *testing.T) {
	m := newMachine("a", ttl)
	m.observe(true, 9, cluster.Lease{Replica: "a", Term: 4, TTLMs: 2000}, at(0))
	o, _ := m.next(at(0))
	if o.kind != opTake || o.rev != 9 || o.lease.Term != 5 {
		t.Fatalf("restart of the holder: %+v", o)
	}
	m.result(o, at(0), written, 10, at(0))
	if !m.leader(at(0)) || m.term != 5 {
		t.Fatal("not leading after taking its lease back")
	}
}

func TestLeaseDeletedKeyIsCreatedWithAHigherTerm(t *testing.T) {
	m := newMachine("b", ttl)
	m.observe(true, 5, cluster.Lease{Replica: "a", Term: 3, TTLMs: 2000}, at(0))
	m.observe(false, 6, cluster.Lease{}, at(10*time.Millisecond))
	o, _ := m.next(at(10 * time.Millisecond))
	if o.kind != opCreate || o.lease.Term != 4 {
		t.Fatalf("after a delete: %+v", o)
	}
}

func TestLeaseStepsDownOnConflictOrForeignWrite(t *testing.T) {
	lead := func() *machine {
		m := newMachine("a", ttl)
		m.observe(false, 0, cluster.Lease{}, at(0))
		o, _ := m.next(at(0))
		m.result(o, at(0), written, 1, at(0))
		return m
	}
	m := lead()
	o, _ := m.next(at(ttl / 4))
	m.result(o, at(ttl/4), conflict, 0, at(ttl/4))
	if m.leader(at(ttl / 4)) {
		t.Fatal("leads after a renewal conflict")
	}

	m = lead()
	m.observe(true, 2, cluster.Lease{Replica: "b", Term: 2}, at(100*time.Millisecond))
	if m.leader(at(100 * time.Millisecond)) {
		t.Fatal("leads after another replica wrote the lease")
	}

	m = lead()
	m.observe(false, 2, cluster.Lease{}, at(100*time.Millisecond))
	if m.leader(at(100 * time.Millisecond)) {
		t.Fatal("leads after the lease was deleted")
	}

	// A renewal whose answer was lost shows up in the watch: still ours,
	// at its new revision, with the old deadline.
	m = lead()
	o, _ = m.next(at(ttl / 4))
	m.result(o, at(ttl/4), unreachable, 0, at(ttl/2))
	m.observe(true, 2, o.lease, at(ttl/2))
	if !m.leader(at(ttl/2)) || m.ourRev != 2 || !m.deadline().Equal(at(ttl*4/5)) {
		t.Fatalf("lost answer: leader %v rev %d deadline %v", m.leader(at(ttl/2)), m.ourRev, m.deadline().Sub(t0))
	}
	o, _ = m.next(at(ttl/2 + ttl/20))
	if o.kind != opRenew || o.rev != 2 {
		t.Fatalf("renews at %+v", o)
	}
	// An old revision seen late changes nothing.
	m.observe(true, 1, cluster.Lease{Replica: "a", Term: 1}, at(ttl/2))
	if !m.leader(at(ttl / 2)) {
		t.Fatal("an older revision seen late took the lease away")
	}
	rel, ok := m.release(at(ttl / 2))
	if !ok || rel.rev != 2 || !rel.lease.Released || rel.lease.Term != 1 {
		t.Fatalf("release: %+v %v", rel, ok)
	}
	if m.leader(at(ttl / 2)) {
		t.Fatal("leads after release")
	}
	// Another replica takes a released lease at once, with a higher term.
	b := newMachine("b", ttl)
	b.observe(true, 3, rel.lease, at(ttl))
	if o, _ := b.next(at(ttl)); o.kind != opTake || o.rev != 3 || o.lease.Term != 2 {
		t.Fatalf("after a release: %+v", o)
	}
	if h := b.holder(at(ttl)); h != "" {
		t.Fatalf("holder of a released lease: %q", h)
	}
}

// The machines of several replicas against a simulated KV with random
// delays, lost answers, partitions and crashes: at no time do two lead.
func TestLeaseNeverTwoLeadersSimulated(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 50
	}
	for seed := range seeds {
		sim := newSim(uint64(seed), 3)
		sim.run(t, 60*time.Second)
		if t.Failed() {
			t.Fatalf("seed %d", seed)
		}
		if sim.terms == 0 {
			t.Fatalf("seed %d: nobody ever led", seed)
		}
	}
}

type simEvent struct {
	at   time.Time
	seq  int
	kind int
	i    int
	// a write and its outcome
	o    op
	sent time.Time
	res  outcome
	rev  uint64
	// a watch delivery
	present bool
	lease   cluster.Lease
}

const (
	evStep = iota
	evApply
	evAnswer
	evWatch
)

type eventQueue []*simEvent

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*simEvent)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type simReplica struct {
	m         *machine
	busy      bool // a write is out; the driver waits for it
	deferred  []*simEvent
	crashed   bool
	cutUntil  time.Time // partitioned from NATS until then
	lastWatch time.Time // watch deliveries stay in order
	wake      time.Time
}

type sim struct {
	rnd  *rand.Rand
	q    eventQueue
	seq  int
	reps []*simReplica
	kv   struct {
		present bool
		rev     uint64
		lease   cluster.Lease
	}
	terms int
}

func newSim(seed uint64, n int) *sim {
	s := &sim{rnd: rand.New(rand.NewPCG(seed, 1))}
	for i := range n {
		s.reps = append(s.reps, &simReplica{m: newMachine(fmt.Sprintf("r%d", i), ttl)})
	}
	return s
}

func (s *sim) push(e *simEvent) {
	s.seq++
	e.seq = s.seq
	heap.Push(&s.q, e)
}

func (s *sim) delay(maxD time.Duration) time.Duration {
	return time.Duration(s.rnd.Int64N(int64(maxD) + 1))
}

func (s *sim) cut(i int, now time.Time) bool { return now.Before(s.reps[i].cutUntil) }

func (s *sim) run(t *testing.T, length time.Duration) {
	for i := range s.reps {
		s.watch(i, at(s.delay(50*time.Millisecond)))
		s.push(&simEvent{at: at(0), kind: evStep, i: i})
	}
	for s.q.Len() > 0 {
		e := heap.Pop(&s.q).(*simEvent)
		if e.at.After(at(length)) {
			return
		}
		now := e.at
		// Trouble now and then: a partition or a crash.
		if s.rnd.IntN(200) == 0 {
			i := s.rnd.IntN(len(s.reps))
			s.reps[i].cutUntil = now.Add(s.delay(3 * ttl))
		}
		if s.rnd.IntN(2000) == 0 {
			i := s.rnd.IntN(len(s.reps))
			if alive := s.alive(); alive > 1 {
				s.reps[i].crashed = true
			}
		}
		s.handle(e, now)
		leaders := 0
		for _, r := range s.reps {
			if !r.crashed && r.m.leader(now) {
				leaders++
			}
		}
		if leaders > 1 {
			t.Errorf("%v: %d leaders", now.Sub(t0), leaders)
			return
		}
	}
}

func (s *sim) alive() int {
	n := 0
	for _, r := range s.reps {
		if !r.crashed {
			n++
		}
	}
	return n
}

// watch delivers the KV's state to replica i (unless it is cut off).
func (s *sim) watch(i int, when time.Time) {
	r := s.reps[i]
	if s.cut(i, when) {
		return
	}
	when = maxTime(when, r.lastWatch)
	r.lastWatch = when
	s.push(&simEvent{at: when, kind: evWatch, i: i, present: s.kv.present, rev: s.kv.rev, lease: s.kv.lease})
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (s *sim) handle(e *simEvent, now time.Time) {
	r := s.reps[e.i]
	if r.crashed {
		return
	}
	switch e.kind {
	case evApply:
		// The write reaches the KV: compare-and-set on the revision.
		ok := false
		if e.o.kind == opCreate {
			ok = !s.kv.present
		} else {
			ok = s.kv.present && s.kv.rev == e.o.rev
		}
		res, rev := conflict, uint64(0)
		if ok {
			s.kv.rev++
			s.kv.present, s.kv.lease = true, e.o.lease
			res, rev = written, s.kv.rev
			for j := range s.reps {
				s.watch(j, now.Add(s.delay(ttl/2)))
			}
		}
		limit := ttl / 4
		if e.o.kind == opRenew {
			limit = min(limit, r.m.deadline().Sub(e.sent))
		}
		answerAt := now.Add(s.delay(ttl / 8))
		if answerAt.Sub(e.sent) > limit || s.cut(e.i, answerAt) || s.rnd.IntN(20) == 0 {
			res, answerAt = unreachable, e.sent.Add(max(limit, time.Millisecond))
		}
		s.push(&simEvent{at: maxTime(answerAt, now), kind: evAnswer, i: e.i, o: e.o, sent: e.sent, res: res, rev: rev})
		return
	case evAnswer:
		wasLeader := r.m.leading
		r.m.result(e.o, e.sent, e.res, e.rev, now)
		if !wasLeader && r.m.leading {
			s.terms++
		}
		r.busy = false
		for _, d := range r.deferred {
			observeSim(r.m, d, now)
		}
		r.deferred = nil
	case evWatch:
		if r.busy {
			r.deferred = append(r.deferred, e)
			return
		}
		observeSim(r.m, e, now)
	case evStep:
		if !e.at.Equal(r.wake) && e.seq != 0 && r.busy {
			return
		}
	}
	if r.busy {
		return
	}
	o, wake := r.m.next(now)
	if o.kind != opNone {
		r.busy = true
		limit := ttl / 4
		if o.kind == opRenew {
			limit = min(limit, r.m.deadline().Sub(now))
		}
		if s.cut(e.i, now) {
			s.push(&simEvent{at: now.Add(max(limit, time.Millisecond)), kind: evAnswer, i: e.i, o: o, sent: now, res: unreachable})
			return
		}
		// The write may reach the KV after the writer gave up on it.
		s.push(&simEvent{at: now.Add(s.delay(ttl / 3)), kind: evApply, i: e.i, o: o, sent: now})
		return
	}
	if !wake.IsZero() {
		r.wake = wake
		s.push(&simEvent{at: wake, kind: evStep, i: e.i})
	}
}

func observeSim(m *machine, e *simEvent, now time.Time) {
	m.observe(e.present, e.rev, e.lease, now)
}
