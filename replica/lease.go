package replica

import (
	"time"

	"github.com/oakmeet/oakmeet/cluster"
)

// The lease is decided by a pure state machine (machine) fed what the key
// looks like and how each write went, at times read from one local
// monotonic clock; the driver (replica.go) does the I/O. No time another
// process wrote is ever compared with ours.

// opKind is the write the machine asks for.
type opKind int

const (
	opNone   opKind = iota
	opCreate        // the key is absent: create it
	opTake          // take the lease: update at rev (a stale or our own old lease)
	opRenew         // renew our lease: update at rev
)

func (k opKind) String() string {
	return [...]string{"none", "create", "take", "renew"}[k]
}

// op is one write: the lease to store and the revision it must replace
// (0 for a create).
type op struct {
	kind  opKind
	rev   uint64
	lease cluster.Lease
}

// outcome is how a write went.
type outcome int

const (
	written     outcome = iota // stored; rev is the new revision
	conflict                   // the revision had moved: someone else wrote
	unreachable                // no answer from NATS (or an error that says nothing of the key)
)

// machine is one replica's view of the lease.
type machine struct {
	id  string
	ttl time.Duration

	// What the key held when last seen.
	known   bool // the key's state was read at least once
	present bool
	rev     uint64
	lease   cluster.Lease
	seenAt  time.Time // when rev was first seen, by our clock
	maxTerm uint64    // the highest term seen, so a new term is always higher

	// Ours, while we hold the lease.
	leading   bool
	ourRev    uint64
	term      uint64
	lastSent  time.Time // send time of the last successful renewal (or take)
	renewFrom time.Time // when the next renewal is due

	// retryAt holds back a write after one failed, until the key is seen
	// to change or the time passes.
	retryAt time.Time
	// heldUntil holds back taking the lease after our control plane
	// failed to start, whatever the key does: another replica may well
	// succeed where we did not.
	heldUntil time.Time
}

func newMachine(id string, ttl time.Duration) *machine {
	return &machine{id: id, ttl: ttl}
}

// deadline is when we stop leading unless a renewal sent before then
// succeeds: the last successful renewal's send time + 0.8 TTL. A follower
// starts its TTL only once it has seen that renewal, which is after it was
// sent, so it cannot take over before we stopped.
func (m *machine) deadline() time.Time {
	return m.lastSent.Add(m.ttl * 4 / 5)
}

// leader says whether we hold the lease at now.
func (m *machine) leader(now time.Time) bool {
	return m.leading && now.Before(m.deadline())
}

// observe takes in the key's state: absent (present false) or a lease at
// rev.
func (m *machine) observe(present bool, rev uint64, l cluster.Lease, now time.Time) {
	if m.known && (present == m.present && rev == m.rev || rev < m.rev) {
		return // seen already, or older than what we know
	}
	m.known, m.present, m.rev, m.seenAt = true, present, rev, now
	m.retryAt = time.Time{}
	if !present {
		m.lease = cluster.Lease{}
	} else {
		m.lease = l
		m.maxTerm = max(m.maxTerm, l.Term)
	}
	if !m.leading {
		return
	}
	switch {
	case present && rev == m.ourRev:
	case present && l.Replica == m.id && l.Term == m.term && rev > m.ourRev:
		// A renewal whose answer was lost: the lease is still ours, at
		// the new revision, but the deadline is not extended by it (its
		// send time is not known).
		m.ourRev = rev
	default:
		// Someone else wrote, or the key was deleted: not ours anymore.
		m.leading = false
	}
}

// expired says whether a lease we saw but do not hold may be taken: its
// revision unchanged for its TTL by our clock.
func (m *machine) expired(now time.Time) bool {
	ttl := m.ttl
	if m.lease.TTLMs > 0 {
		ttl = time.Duration(m.lease.TTLMs) * time.Millisecond
	}
	return !now.Before(m.seenAt.Add(ttl))
}

// holder is the replica the lease names while it is live by our clock ("" =
// none).
func (m *machine) holder(now time.Time) string {
	if m.leader(now) {
		return m.id
	}
	if !m.present || m.lease.Released || m.expired(now) {
		return ""
	}
	return m.lease.Replica
}

// next is the write to make now (opNone: none), and when to ask again if
// nothing is seen before.
func (m *machine) next(now time.Time) (op, time.Time) {
	if m.leading && !m.leader(now) {
		m.leading = false
	}
	if !m.known {
		return op{}, time.Time{}
	}
	if now.Before(m.retryAt) {
		return op{}, m.soonest(m.retryAt)
	}
	if !m.leading && now.Before(m.heldUntil) {
		return op{}, m.heldUntil
	}
	if m.leading {
		if now.Before(m.renewFrom) {
			return op{}, m.soonest(m.renewFrom)
		}
		return op{kind: opRenew, rev: m.ourRev, lease: m.leaseValue(m.term, now)}, time.Time{}
	}
	switch {
	case !m.present:
		return op{kind: opCreate, lease: m.leaseValue(m.maxTerm+1, now)}, time.Time{}
	case m.lease.Released || m.lease.Replica == m.id || m.expired(now):
		return op{kind: opTake, rev: m.rev, lease: m.leaseValue(m.maxTerm+1, now)}, time.Time{}
	}
	ttl := m.ttl
	if m.lease.TTLMs > 0 {
		ttl = time.Duration(m.lease.TTLMs) * time.Millisecond
	}
	return op{}, m.seenAt.Add(ttl)
}

// soonest is t, or our deadline when we lead and it comes first.
func (m *machine) soonest(t time.Time) time.Time {
	if m.leading && m.deadline().Before(t) {
		return m.deadline()
	}
	return t
}

func (m *machine) leaseValue(term uint64, now time.Time) cluster.Lease {
	return cluster.Lease{Replica: m.id, Term: term, TTLMs: m.ttl.Milliseconds(), Renewed: now}
}

// result takes in how the write o, sent at sent, went; rev is the new
// revision when it was written.
func (m *machine) result(o op, sent time.Time, res outcome, rev uint64, now time.Time) {
	switch res {
	case written:
		if o.kind != opRenew && m.leading {
			return // a take that raced our own renewal cannot be: ignore
		}
		if o.kind == opRenew && (!m.leader(now) || o.rev != m.ourRev) {
			// An answer to a renewal of a lease we no longer hold: we
			// stepped down already, and take it back (a new term) once
			// the watch shows it is still ours.
			m.leading = false
			return
		}
		m.leading = true
		m.ourRev, m.term, m.lastSent = rev, o.lease.Term, sent
		m.maxTerm = max(m.maxTerm, o.lease.Term)
		m.renewFrom = sent.Add(m.ttl / 4)
		m.known, m.present, m.rev, m.lease, m.seenAt = true, true, rev, o.lease, now
		m.retryAt = time.Time{}
		if !m.leader(now) {
			m.leading = false // the answer came after our deadline
		}
	case conflict:
		if o.kind == opRenew {
			m.leading = false
		}
		// What won is read from the watch; until it comes, wait a little.
		m.retryAt = now.Add(m.retryDelay())
	case unreachable:
		m.retryAt = now.Add(m.retryDelay())
	}
}

// retryDelay is the pause after a failed write: short against the TTL,
// so a renewal is tried several times before the deadline.
func (m *machine) retryDelay() time.Duration {
	return max(m.ttl/20, time.Millisecond)
}

// holdOff keeps us from taking the lease before until.
func (m *machine) holdOff(until time.Time) {
	m.heldUntil = until
}

// release is the write that gives up our lease at a clean shutdown: the
// lease marked released, at our revision, if we lead. It keeps the term,
// so the next leader's is higher even if it never saw ours.
func (m *machine) release(now time.Time) (op, bool) {
	if !m.leader(now) {
		return op{}, false
	}
	m.leading = false
	l := m.leaseValue(m.term, now)
	l.Released = true
	return op{kind: opRenew, rev: m.ourRev, lease: l}, true
}
