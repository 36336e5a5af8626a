package group

import (
	"crypto/hpke"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oakmeet/oakmeet/e2ee/identity"
	"github.com/oakmeet/oakmeet/e2ee/keymsg"
	"github.com/oakmeet/oakmeet/e2ee/mediaframe"
	"github.com/oakmeet/oakmeet/e2ee/securitycode"
	"github.com/oakmeet/oakmeet/e2ee/sframe"
)

// Defaults of Config's durations.
const (
	DefaultRekeyInterval = 5 * time.Minute
	DefaultGrace         = 10 * time.Second
	DefaultAnnounceRetry = 5 * time.Second
)

// maxSyncJump bounds how far one sync message can move a leader's epoch
// numbers: sync messages are not signed, and a member lying about its epoch
// must not be able to exhaust the numbers in a few messages.
const maxSyncJump = 1 << 24

// maxRetired bounds how many past epochs' keys are kept within the grace
// window, whatever the churn.
const maxRetired = 4

// Config describes one member of one meeting.
type Config struct {
	Meeting     string
	Participant string
	Identity    *identity.Identity

	// Suite is the SFrame cipher suite; zero means sframe.AES128GCM. Every
	// member of a meeting must use the same one.
	Suite sframe.Suite
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// RekeyInterval is how often the leader makes a new epoch with an
	// unchanged roster; zero means DefaultRekeyInterval.
	RekeyInterval time.Duration
	// Grace is how long the keys of a replaced epoch still decrypt frames
	// that were in flight; zero means DefaultGrace.
	Grace time.Duration
	// AnnounceRetry is how often Tick re-sends the announcement while the
	// member holds no epoch; zero means DefaultAnnounceRetry.
	AnnounceRetry time.Duration
}

// Outgoing is a payload for the transport to deliver: to one participant,
// or to every other participant when To is "".
type Outgoing struct {
	To      string
	Payload []byte
}

// epochState is the epoch a member currently holds.
type epochState struct {
	number uint64
	leader keymsg.Entry // who made and signed it
	roster []keymsg.Entry
	index  int // this member's position in roster
	code   securitycode.Code
	at     time.Time // when this member installed it
	kids   []uint64  // the receiver keys it added
}

type retiredEpoch struct {
	kids  []uint64
	until time.Time
}

type pendingEpoch struct {
	from string
	msg  *keymsg.Epoch
}

// Member is one participant's end-to-end encryption state for one meeting.
// All methods are safe for concurrent use; Protect and Unprotect take no
// lock shared with the others, so media never waits for key handling.
type Member struct {
	cfg      Config
	hpkeKey  hpke.PrivateKey
	self     keymsg.Entry
	announce []byte

	mu           sync.Mutex
	view         []string                // roster in join order, from the caller
	anns         map[string]keymsg.Entry // verified announcements by participant
	cur          *epochState
	retired      []retiredEpoch
	pending      *pendingEpoch
	floor        uint64 // highest epoch number known to exist, from sync messages
	lastAnnounce time.Time

	sender      atomic.Pointer[sframe.Sender]
	receiver    *sframe.Receiver
	protector   *mediaframe.Protector
	unprotector *mediaframe.Unprotector
}

// NewMember makes a member with a fresh HPKE key for this meeting.
func NewMember(cfg Config) (*Member, error) {
	if cfg.Identity == nil {
		return nil, errors.New("group: config has no identity")
	}
	if cfg.Suite == 0 {
		cfg.Suite = sframe.AES128GCM
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RekeyInterval <= 0 {
		cfg.RekeyInterval = DefaultRekeyInterval
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.AnnounceRetry <= 0 {
		cfg.AnnounceRetry = DefaultAnnounceRetry
	}
	receiver, err := sframe.NewReceiver(cfg.Suite)
	if err != nil {
		return nil, fmt.Errorf("group: %w", err)
	}
	key, err := keymsg.KEM().GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("group: hpke key: %w", err)
	}
	ann, err := keymsg.NewAnnouncement(cfg.Meeting, cfg.Participant, cfg.Identity, key.PublicKey().Bytes())
	if err != nil {
		return nil, fmt.Errorf("group: %w", err)
	}
	payload, err := keymsg.Encode(ann)
	if err != nil {
		return nil, fmt.Errorf("group: %w", err)
	}
	m := &Member{
		cfg:      cfg,
		hpkeKey:  key,
		self:     ann.Entry,
		announce: payload,
		anns:     make(map[string]keymsg.Entry),
		receiver: receiver,
	}
	m.protector = mediaframe.NewProtector(currentSender{&m.sender})
	m.unprotector = mediaframe.NewUnprotector(receiver)
	return m, nil
}

// Announce returns the member's signed announcement, to be sent to everyone
// once it has joined.
func (m *Member) Announce() Outgoing {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastAnnounce = m.cfg.Now()
	return Outgoing{Payload: m.announce}
}

// OnRosterChange takes the meeting's participants in join order, this
// member included. The caller must call it within 2 s of any join or leave:
// a leader re-keys here, and a leave is only cut off by a re-key.
func (m *Member) OnRosterChange(participants []string) ([]Outgoing, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.view {
		if !slices.Contains(participants, p) {
			delete(m.anns, p)
		}
	}
	m.view = slices.Clone(participants)
	return m.react(m.cfg.Now())
}

// Tick lets time pass: it retires old epochs' keys after the grace window,
// re-keys when the leader's interval is up and re-announces while the
// member has no epoch. Call it about once a second.
func (m *Member) Tick() ([]Outgoing, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now()
	out, err := m.react(now)
	if m.cur == nil && now.Sub(m.lastAnnounce) >= m.cfg.AnnounceRetry {
		m.lastAnnounce = now
		out = append(out, Outgoing{Payload: m.announce})
	}
	return out, err
}

// HandleMessage processes a key message the transport says came from the
// participant from. A refused message changes nothing (a deferred one is
// kept to be tried again); the error says why. Messages from this member
// itself are ignored.
func (m *Member) HandleMessage(from string, payload []byte) ([]Outgoing, error) {
	if from == m.cfg.Participant {
		return nil, nil
	}
	msg, err := keymsg.Decode(payload)
	if err != nil {
		return nil, fmt.Errorf("group: message from %q: %w", from, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now()
	switch msg := msg.(type) {
	case *keymsg.Announcement:
		if err := m.handleAnnouncement(from, msg); err != nil {
			return nil, err
		}
		return m.react(now)
	case *keymsg.Epoch:
		out, err := m.handleEpoch(from, msg, now)
		if err != nil {
			return out, err
		}
		more, err := m.react(now)
		return append(out, more...), err
	case *keymsg.Sync:
		return m.handleSync(from, msg, now)
	default:
		return nil, fmt.Errorf("group: message from %q: unexpected %s", from, msg.Type())
	}
}

func (m *Member) handleAnnouncement(from string, a *keymsg.Announcement) error {
	if a.Meeting != m.cfg.Meeting {
		return fmt.Errorf("%w: announcement of %q for %q", ErrWrongMeeting, a.Participant, a.Meeting)
	}
	if a.Participant != from {
		return fmt.Errorf("%w: %q sent an announcement for %q", ErrSenderMismatch, from, a.Participant)
	}
	if err := a.Verify(); err != nil {
		return fmt.Errorf("group: announcement of %q: %w", from, err)
	}
	if _, known := m.anns[from]; !known && len(m.anns) >= 2*keymsg.MaxRoster && !slices.Contains(m.view, from) {
		return fmt.Errorf("group: announcement of %q: too many announcements", from)
	}
	// The latest wins: a participant that restarted announces new keys.
	m.anns[from] = a.Entry
	return nil
}

// handleEpoch installs, defers or refuses an epoch message.
func (m *Member) handleEpoch(from string, e *keymsg.Epoch, now time.Time) ([]Outgoing, error) {
	if e.Meeting != m.cfg.Meeting {
		return nil, fmt.Errorf("%w: epoch %d for %q", ErrWrongMeeting, e.Epoch, e.Meeting)
	}
	if err := e.Verify(); err != nil {
		return nil, fmt.Errorf("group: epoch %d from %q: %w", e.Epoch, from, err)
	}
	if from != e.Leader().Participant {
		return nil, fmt.Errorf("%w: %q relayed epoch %d signed by %q", ErrSenderMismatch, from, e.Epoch, e.Leader().Participant)
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
	if m.cur != nil && e.Epoch <= m.cur.number {
		err := fmt.Errorf("%w: epoch %d from %q, holding %d", ErrStaleEpoch, e.Epoch, from, m.cur.number)
		// A signer that did not make the current epoch may not know it
		// exists (it restarted, or took over leadership before the last
		// re-key reached it): tell it, so that its next epoch is newer. Only
		// a leader acts on this; a replay of a past leader's message costs
		// one small message.
		if !m.cur.leader.SameKeys(leader) {
			return m.syncTo(leader.Participant), err
		}
		return nil, err
	}
	idx := e.Index(m.cfg.Participant)
	if idx < 0 || !e.Roster[idx].SameKeys(m.self) {
		// The leader may lack this member's announcement.
		return []Outgoing{{To: leader.Participant, Payload: m.announce}},
			fmt.Errorf("%w: epoch %d from %q", ErrNotInRoster, e.Epoch, from)
	}
	if want := m.expectedLeader(); want != leader.Participant {
		return nil, fmt.Errorf("%w: %w: epoch %d signed by %q, expected %q", ErrDeferred, ErrUnexpectedLeader, e.Epoch, leader.Participant, want)
	}
	for _, entry := range e.Roster {
		if known, ok := m.anns[entry.Participant]; ok && !known.SameKeys(entry) {
			return nil, fmt.Errorf("%w: %w: epoch %d lists other keys for %q", ErrDeferred, ErrRosterMismatch, e.Epoch, entry.Participant)
		}
	}
	secret, err := e.Open(idx, m.hpkeKey)
	if err != nil {
		return nil, fmt.Errorf("group: epoch %d from %q: %w", e.Epoch, from, err)
	}
	defer clear(secret)
	return nil, m.install(e, idx, secret, now)
}

func (m *Member) syncTo(leader string) []Outgoing {
	payload, err := keymsg.Encode(&keymsg.Sync{Meeting: m.cfg.Meeting, Epoch: m.cur.number, Leader: m.cur.leader.Participant})
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
	var current uint64
	if m.cur != nil {
		current = m.cur.number
	}
	behind := m.cur == nil || s.Epoch > current || (s.Epoch == current && s.Leader != m.cfg.Participant)
	if !behind || s.Epoch-current > maxSyncJump {
		return nil, nil
	}
	m.floor = max(m.floor, s.Epoch)
	out, err := m.rekey(now)
	if err != nil {
		return nil, err
	}
	return append(out, m.retryPending(now)...), nil
}

// install makes e the current epoch: keys for every other sender go to the
// receiver, this member's own key to the sender, and the previous epoch's
// keys stay for the grace window.
func (m *Member) install(e *keymsg.Epoch, idx int, secret []byte, now time.Time) error {
	st := &epochState{
		number: e.Epoch,
		leader: e.Leader(),
		roster: slices.Clone(e.Roster),
		index:  idx,
		code:   securitycode.Compute(m.cfg.Meeting, e.Roster),
		at:     now,
	}
	var own *sframe.Sender
	for i := range e.Roster {
		base, err := SenderBaseKey(secret, i)
		if err != nil {
			return err
		}
		kid := KID(e.Epoch, i)
		if i == idx {
			own, err = sframe.NewSender(m.cfg.Suite, kid, base)
		} else {
			err = m.receiver.AddKey(kid, base)
			st.kids = append(st.kids, kid)
		}
		clear(base)
		if err != nil {
			return fmt.Errorf("group: epoch %d: %w", e.Epoch, err)
		}
	}
	if m.cur != nil {
		m.retired = append(m.retired, retiredEpoch{kids: m.cur.kids, until: now.Add(m.cfg.Grace)})
		for len(m.retired) > maxRetired {
			m.removeKeys(m.retired[0].kids)
			m.retired = m.retired[1:]
		}
	}
	m.cur = st
	m.sender.Store(own)
	for _, entry := range e.Roster {
		// A later leader (this member, perhaps) needs these without having
		// seen the announcements themselves.
		if entry.Participant != m.cfg.Participant {
			m.anns[entry.Participant] = entry
		}
	}
	if m.pending != nil && m.pending.msg.Epoch <= e.Epoch {
		m.pending = nil
	}
	return nil
}

func (m *Member) removeKeys(kids []uint64) {
	for _, kid := range kids {
		m.receiver.RemoveKey(kid)
	}
}

// react brings the state up to date after any change: expire retired keys,
// retry a deferred epoch, and re-key if this member leads and must.
func (m *Member) react(now time.Time) ([]Outgoing, error) {
	keep := m.retired[:0]
	for _, r := range m.retired {
		if now.Before(r.until) {
			keep = append(keep, r)
		} else {
			m.removeKeys(r.kids)
		}
	}
	m.retired = keep
	out := m.retryPending(now)
	if !m.isLeader() || !m.rekeyDue(now) {
		return out, nil
	}
	more, err := m.rekey(now)
	return append(out, more...), err
}

func (m *Member) retryPending(now time.Time) []Outgoing {
	p := m.pending
	if p == nil {
		return nil
	}
	out, err := m.tryEpoch(p.from, p.msg, now)
	if !errors.Is(err, ErrDeferred) {
		m.pending = nil
	}
	return out
}

func (m *Member) expectedLeader() string {
	if len(m.view) == 0 {
		return ""
	}
	return m.view[0]
}

func (m *Member) isLeader() bool { return m.expectedLeader() == m.cfg.Participant }

// desiredRoster is the roster a leader keys: the participants in join order
// whose announcements it holds, itself first.
func (m *Member) desiredRoster() []keymsg.Entry {
	roster := []keymsg.Entry{m.self}
	for _, p := range m.view[1:] {
		if e, ok := m.anns[p]; ok {
			roster = append(roster, e)
		}
	}
	return roster
}

func (m *Member) rekeyDue(now time.Time) bool {
	if m.cur == nil || !m.cur.leader.SameKeys(m.self) || now.Sub(m.cur.at) >= m.cfg.RekeyInterval {
		return true
	}
	want := m.desiredRoster()
	return !slices.EqualFunc(want, m.cur.roster, keymsg.Entry.SameKeys)
}

// rekey makes, installs and returns a new epoch for the desired roster.
func (m *Member) rekey(now time.Time) ([]Outgoing, error) {
	number := m.floor + 1
	if m.cur != nil {
		number = max(number, m.cur.number+1)
	}
	if number > keymsg.MaxEpoch {
		return nil, ErrEpochExhausted
	}
	secret := make([]byte, keymsg.SecretSize)
	defer clear(secret)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("group: epoch secret: %w", err)
	}
	msg, err := keymsg.NewEpoch(m.cfg.Meeting, number, m.desiredRoster(), secret, m.cfg.Identity)
	if err != nil {
		return nil, fmt.Errorf("group: epoch %d: %w", number, err)
	}
	payload, err := keymsg.Encode(msg)
	if err != nil {
		return nil, fmt.Errorf("group: epoch %d: %w", number, err)
	}
	if err := m.install(msg, 0, secret, now); err != nil {
		return nil, err
	}
	return []Outgoing{{Payload: payload}}, nil
}
