package group

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/oakmeet/oakmeet/e2ee/keymsg"
	"github.com/oakmeet/oakmeet/e2ee/securitycode"
	"github.com/oakmeet/oakmeet/e2ee/sframe"
)

// epochState is an installed epoch: its receive keys are in the receiver,
// this member's own sender is ready, and it waits for (or has had) its
// commit.
type epochState struct {
	number uint64
	digest [keymsg.DigestSize]byte
	leader keymsg.Entry // who made and signed it
	roster []keymsg.Entry
	index  int // this member's position in roster
	at     time.Time
	kids   []uint64 // the receiver keys it has, or will have once ready
	sender *sframe.Sender
	// bases are the other senders' base keys (by kids) until the epoch is
	// ready here: only then do they go to the receiver, so that nobody this
	// member has not heard from (a ghost the server shows to the leader
	// alone) can make frames it accepts.
	bases  [][]byte
	keysIn bool

	committed  bool // this member sends under it (or did)
	commitSeen bool // its leader's commit arrived; committed once ready here too
	ackedAt    time.Time

	// For an epoch this member made: who acked it, and its encoded commit.
	acks   map[string]bool
	commit []byte

	readyGen   uint64
	readyKnown bool
	readyVal   bool

	codePolicy string
	code       securitycode.Code
	codeKnown  bool
}

func (st *epochState) own(m *Member) bool { return st.leader.SameKeys(m.self) }

// securityCode is the code of st under the current policy hash, computed
// once per policy.
func (m *Member) securityCode(st *epochState) securitycode.Code {
	if !st.codeKnown || st.codePolicy != m.policyHash {
		st.code = securitycode.Compute(m.cfg.Meeting, m.policyHash, st.roster)
		st.codePolicy, st.codeKnown = m.policyHash, true
	}
	return st.code
}

func (m *Member) newest() *epochState {
	if len(m.epochs) == 0 {
		return nil
	}
	return m.epochs[len(m.epochs)-1]
}

func (m *Member) newestNumber() uint64 {
	if st := m.newest(); st != nil {
		return st.number
	}
	return 0
}

func (m *Member) epochByNumber(n uint64) *epochState {
	for _, st := range m.epochs {
		if st.number == n {
			return st
		}
	}
	return nil
}

// handleEpoch installs, defers or refuses an epoch message.
func (m *Member) handleEpoch(from string, e *keymsg.Epoch, now time.Time) ([]Outgoing, error) {
	if e.Meeting != m.cfg.Meeting {
		return nil, fmt.Errorf("%w: epoch %d for %q", ErrWrongMeeting, e.Epoch, e.Meeting)
	}
	if err := e.VerifyCached(m.known); err != nil {
		return nil, fmt.Errorf("group: epoch %d from %q: %w", e.Epoch, from, err)
	}
	for _, entry := range e.Roster {
		m.remember(entry)
	}
	if from != e.Leader().Participant {
		return nil, fmt.Errorf("%w: %q relayed epoch %d signed by %q", ErrSenderMismatch, from, e.Epoch, e.Leader().Participant)
	}
	// A number someone in the view signed is taken, whether or not this
	// member accepts that epoch: were it to lead, it mints above it, so that
	// no KID of its own epochs names another key someone sends under.
	// (Bounded as a sync is.)
	if held := m.newestNumber(); e.Epoch > m.floor && e.Epoch-held <= maxSyncJump && slices.Contains(m.view, from) {
		m.floor = e.Epoch
	}
	out, err := m.tryEpoch(from, e, now)
	if errors.Is(err, ErrDeferred) && (m.pending == nil || e.Epoch > m.pending.msg.Epoch) {
		m.pending = &pendingEpoch{from: from, msg: e}
	}
	return out, err
}

// tryEpoch applies the checks that depend on this member's state to a
// verified epoch message, and installs it if they pass.
func (m *Member) tryEpoch(from string, e *keymsg.Epoch, now time.Time) ([]Outgoing, error) {
	leader := e.Leader()
	if st := m.epochByNumber(e.Epoch); st != nil && st.digest == e.Digest() {
		// The same message again: acked again once ready, in advance.
		st.ackedAt = time.Time{}
		return nil, nil
	}
	if newest := m.newest(); newest != nil && e.Epoch <= newest.number {
		err := fmt.Errorf("%w: epoch %d from %q, holding %d", ErrStaleEpoch, e.Epoch, from, newest.number)
		// A signer that did not make the newest epoch may not know it
		// exists (it restarted, or took over leadership before the last
		// re-key reached it): tell it, so that its next epoch is newer. Only
		// a leader acts on this; a replay of a past leader's message costs
		// one small message.
		if !newest.leader.SameKeys(leader) {
			return m.syncTo(leader.Participant), err
		}
		return nil, err
	}
	idx := e.Index(m.cfg.Participant)
	if idx < 0 || !e.Roster[idx].Same(m.self) {
		// The leader may lack this member's announcement.
		return m.announceTo(leader.Participant, now, false),
			fmt.Errorf("%w: epoch %d from %q", ErrNotInRoster, e.Epoch, from)
	}
	if want := m.expectedLeader(); want != leader.Participant {
		return nil, fmt.Errorf("%w: %w: epoch %d signed by %q, expected %q", ErrDeferred, ErrUnexpectedLeader, e.Epoch, leader.Participant, want)
	}
	for _, entry := range e.Roster {
		if known, ok := m.heard[entry.Participant]; ok && !known.Same(entry) {
			return nil, fmt.Errorf("%w: %w: epoch %d lists other keys for %q", ErrDeferred, ErrRosterMismatch, e.Epoch, entry.Participant)
		}
	}
	secret, err := e.Open(idx, m.hpkeKey)
	if err != nil {
		return nil, fmt.Errorf("group: epoch %d from %q: %w", e.Epoch, from, err)
	}
	defer clear(secret)
	_, err = m.install(e, idx, secret, now)
	return nil, err
}

func (m *Member) syncTo(leader string) []Outgoing {
	newest := m.newest()
	payload, err := keymsg.Encode(&keymsg.Sync{Meeting: m.cfg.Meeting, Epoch: newest.number, Leader: newest.leader.Participant})
	if err != nil {
		return nil
	}
	return []Outgoing{{To: leader, Payload: payload}}
}

func (m *Member) handleSync(from string, s *keymsg.Sync, now time.Time) ([]Outgoing, error) {
	if s.Meeting != m.cfg.Meeting {
		return nil, fmt.Errorf("%w: sync for %q", ErrWrongMeeting, s.Meeting)
	}
	if !m.isLeader() || !slices.Contains(m.view, from) {
		return nil, nil
	}
	current := m.newestNumber()
	behind := current == 0 || s.Epoch > current || (s.Epoch == current && s.Leader != m.cfg.Participant)
	if !behind || s.Epoch-current > maxSyncJump {
		return nil, nil
	}
	m.floor = max(m.floor, s.Epoch)
	out, err := m.rekey(now, true)
	if err != nil {
		return nil, err
	}
	out = append(out, m.retryPending(now)...)
	return append(out, m.advance(now)...), nil
}

// install adds e as an uncommitted epoch: keys for every other sender go to
// the receiver at once (frames under it decrypt as soon as anyone sends),
// this member's own sender waits for the commit.
func (m *Member) install(e *keymsg.Epoch, idx int, secret []byte, now time.Time) (*epochState, error) {
	st := &epochState{
		number: e.Epoch,
		digest: e.Digest(),
		leader: e.Leader(),
		roster: slices.Clone(e.Roster),
		index:  idx,
		at:     now,
	}
	bases := make([][]byte, 0, len(e.Roster)-1)
	for i := range e.Roster {
		base, err := SenderBaseKey(secret, i)
		if err != nil {
			return nil, err
		}
		kid := KID(e.Epoch, i)
		if i == idx {
			st.sender, err = sframe.NewSender(m.cfg.Suite, kid, base)
			clear(base)
			if err != nil {
				clearAll(bases)
				return nil, fmt.Errorf("group: epoch %d: %w", e.Epoch, err)
			}
			continue
		}
		bases = append(bases, base)
		st.kids = append(st.kids, kid)
	}
	st.bases = bases
	if err := m.keysIn(st); err != nil {
		return nil, err
	}
	m.epochs = append(m.epochs, st)
	// Bound what waits for a commit: the oldest waiting epoch goes first.
	for m.uncommitted() > maxUncommitted {
		i := 0
		if m.sending != nil {
			i = 1
		}
		m.dropKeys(m.epochs[i])
		m.epochs = slices.Delete(m.epochs, i, i+1)
	}
	if m.pending != nil && m.pending.msg.Epoch <= e.Epoch {
		m.pending = nil
	}
	m.gen++ // the desired-roster cache compares with the newest epoch
	return st, nil
}

// keysIn gives the receiver st's keys once st is ready here (everyone in
// it heard, nobody removed); before, they wait in st.bases.
func (m *Member) keysIn(st *epochState) error {
	if st.keysIn || !m.ready(st) {
		return nil
	}
	err := m.receiver.AddKeys(st.kids, st.bases)
	clearAll(st.bases)
	st.bases, st.keysIn = nil, true
	if err != nil {
		return fmt.Errorf("group: epoch %d: %w", st.number, err)
	}
	return nil
}

// dropKeys forgets st's keys, in the receiver or still waiting.
func (m *Member) dropKeys(st *epochState) {
	if st.keysIn {
		m.removeKeys(st.kids)
	}
	clearAll(st.bases)
	st.bases = nil
}

func clearAll(bs [][]byte) {
	for _, b := range bs {
		clear(b)
	}
}

func (m *Member) uncommitted() int {
	if m.sending != nil {
		return len(m.epochs) - 1
	}
	return len(m.epochs)
}

// adopt makes st the sending epoch: this member's frames go out under it
// from now on, and every older epoch's keys stay for the grace window only.
func (m *Member) adopt(st *epochState, now time.Time) {
	st.committed = true
	i := slices.Index(m.epochs, st)
	for _, old := range m.epochs[:i] {
		if !old.keysIn { // never ready here: nothing to keep for the grace window
			m.dropKeys(old)
			continue
		}
		m.retired = append(m.retired, retiredEpoch{number: old.number, digest: old.digest, kids: old.kids, until: now.Add(m.cfg.Grace)})
	}
	for len(m.retired) > maxRetired {
		m.removeKeys(m.retired[0].kids)
		m.retired = m.retired[1:]
	}
	m.epochs = slices.Delete(m.epochs, 0, i)
	m.sending = st
	m.sender.Store(st.sender)
	m.presenceKeysChanged()
}

// advance moves every epoch newer than the sending one along: adopt those
// committed and ready here, ack those ready (again every AnnounceRetry
// until the commit comes), and, for this member's own epochs, commit those
// every other member acked.
func (m *Member) advance(now time.Time) []Outgoing {
	var out []Outgoing
	for i := len(m.epochs) - 1; i >= 0; i-- {
		st := m.epochs[i]
		if st.committed {
			break // the sending epoch; nothing older is left
		}
		if !m.ready(st) {
			continue
		}
		if err := m.keysIn(st); err != nil {
			continue
		}
		if st.own(m) {
			if len(st.acks) < len(st.roster)-1 {
				continue
			}
			c, err := keymsg.NewCommit(m.cfg.Meeting, st.number, st.digest[:], m.cfg.Identity)
			if err != nil {
				continue
			}
			if st.commit, err = keymsg.Encode(c); err != nil {
				continue
			}
			out = append(out, Outgoing{Payload: st.commit})
			m.adopt(st, now)
			break
		}
		if st.commitSeen {
			m.adopt(st, now)
			break
		}
		if st.ackedAt.IsZero() || now.Sub(st.ackedAt) >= m.cfg.AnnounceRetry {
			if o, ok := m.ack(st); ok {
				st.ackedAt = now
				out = append(out, o)
			}
		}
	}
	return out
}

func (m *Member) ack(st *epochState) (Outgoing, bool) {
	a, err := keymsg.NewAck(m.cfg.Meeting, st.number, m.cfg.Participant, st.digest[:], m.cfg.Identity)
	if err != nil {
		return Outgoing{}, false
	}
	b, err := keymsg.Encode(a)
	if err != nil {
		return Outgoing{}, false
	}
	return Outgoing{To: st.leader.Participant, Payload: b}, true
}

// handleAck records a member's ack of an epoch this member made; an ack of
// one already committed is answered with the commit (the member missed it).
func (m *Member) handleAck(from string, a *keymsg.Ack) ([]Outgoing, error) {
	if a.Meeting != m.cfg.Meeting {
		return nil, fmt.Errorf("%w: ack for %q", ErrWrongMeeting, a.Meeting)
	}
	if a.Participant != from {
		return nil, fmt.Errorf("%w: %q sent an ack for %q", ErrSenderMismatch, from, a.Participant)
	}
	st := m.epochByNumber(a.Epoch)
	if st == nil || !st.own(m) || string(a.Digest) != string(st.digest[:]) {
		return nil, fmt.Errorf("%w: ack of epoch %d by %q", ErrUnknownEpoch, a.Epoch, from)
	}
	i := slices.IndexFunc(st.roster, func(e keymsg.Entry) bool { return e.Participant == from })
	if i < 0 || i == st.index {
		return nil, fmt.Errorf("%w: ack of epoch %d by %q", ErrNotInRoster, a.Epoch, from)
	}
	if err := a.Verify(st.roster[i].Identity); err != nil {
		return nil, fmt.Errorf("group: ack of epoch %d by %q: %w", a.Epoch, from, err)
	}
	if st.committed {
		return []Outgoing{{To: from, Payload: st.commit}}, nil
	}
	if st.acks == nil {
		st.acks = make(map[string]bool, len(st.roster))
	}
	st.acks[from] = true
	return nil, nil
}

// handleCommit notes the leader's commit of an installed epoch; advance
// adopts it once it is ready here too, so that not even the leader can make
// this member send under an epoch naming someone it has not heard from.
func (m *Member) handleCommit(c *keymsg.Commit) error {
	if c.Meeting != m.cfg.Meeting {
		return fmt.Errorf("%w: commit for %q", ErrWrongMeeting, c.Meeting)
	}
	st := m.epochByNumber(c.Epoch)
	if st == nil || string(c.Digest) != string(st.digest[:]) {
		if m.sending != nil && c.Epoch <= m.sending.number {
			return nil // late: a newer epoch is already in use
		}
		return fmt.Errorf("%w: commit of epoch %d", ErrUnknownEpoch, c.Epoch)
	}
	if st.committed || st.commitSeen {
		return nil
	}
	if err := c.Verify(st.leader.Identity); err != nil {
		return fmt.Errorf("group: commit of epoch %d: %w", c.Epoch, err)
	}
	st.commitSeen = true
	return nil
}
