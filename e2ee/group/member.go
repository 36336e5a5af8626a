package group

import (
	"crypto/hpke"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oakmeet/oakmeet/e2ee/identity"
	"github.com/oakmeet/oakmeet/e2ee/keymsg"
	"github.com/oakmeet/oakmeet/e2ee/mediaframe"
	"github.com/oakmeet/oakmeet/e2ee/sframe"
)

// Defaults of Config's durations.
const (
	DefaultRekeyInterval = 5 * time.Minute
	DefaultGrace         = 10 * time.Second
	DefaultAnnounceRetry = 5 * time.Second
	DefaultJoinBatch     = 300 * time.Millisecond
	DefaultJoinBatchMax  = 2 * time.Second
)

// maxSyncJump bounds how far one sync message can move a leader's epoch
// numbers: sync messages are not signed, and a member lying about its epoch
// must not be able to exhaust the numbers in a few messages (it takes 2^20
// here), while a leader that missed up to 128 takeovers (each a jump below
// 2*takeoverJump) still catches up.
const maxSyncJump = 1 << 28

// maxRetired bounds how many past epochs' keys are kept within the grace
// window, whatever the churn; maxUncommitted bounds how many epochs newer
// than the sending one are held while they wait for their commit.
const (
	maxRetired     = 4
	maxUncommitted = 4
)

// maxVerified bounds the cache of verified roster entries; past it the
// cache starts again empty (a cost, never a risk).
const maxVerified = 4 * keymsg.MaxRoster

// Config describes one member of one meeting.
type Config struct {
	Meeting     string
	Participant string
	Identity    *identity.Identity
	// Name is the display name this member announces (signed, in every
	// roster and in the security code); it may be empty.
	Name string
	// PolicyHash is the meeting's effective routing policy hash as the host
	// signed it; it is part of the security code. SetPolicyHash changes it.
	PolicyHash string
	// NodeCert is the certificate text of the media node this member is on,
	// as its join answer carried it and its client verified it. With one,
	// the member sends a signed node message right after each announcement,
	// to the same recipients, so every member can check where the others'
	// media goes. A participant on another node is a new participant (a
	// move joins again), so it never changes.
	NodeCert string

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
	// member holds no epoch, and to a roster member not heard from, and
	// re-sends an ack that got no commit; zero means DefaultAnnounceRetry.
	AnnounceRetry time.Duration
	// JoinBatch is how long a leader whose roster only grows waits for
	// further joins before it re-keys; zero means DefaultJoinBatch.
	JoinBatch time.Duration
	// JoinBatchMax bounds that wait from the first join waiting; zero means
	// DefaultJoinBatchMax.
	JoinBatchMax time.Duration
	// Rand draws the jumps of epoch numbers (docs/E2EE.md §5.3); nil means
	// crypto/rand. Epoch secrets and HPKE keys always come from crypto/rand.
	Rand io.Reader
}

// Outgoing is a payload for the transport to deliver: to one participant,
// or to every other participant when To is "".
type Outgoing struct {
	To      string
	Payload []byte
}

type retiredEpoch struct {
	number uint64
	digest [keymsg.DigestSize]byte
	kids   []uint64
	until  time.Time
}

type syncNote struct {
	leader string
	epoch  uint64
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
	nodeMsg  []byte // the encoded node message, nil without Config.NodeCert

	mu         sync.Mutex
	policyHash string
	view       []string                // the server's roster in join order, from the caller
	heard      map[string]keymsg.Entry // verified announcements each participant sent this member itself
	gen        uint64                  // counts changes of view, heard and removals, for the caches below
	verified   map[string]struct{}     // CacheKeys of roster entries whose signatures verified
	// epochs are the installed epochs, oldest first: the sending one (if
	// any) and every newer one. Older ones are retired.
	epochs  []*epochState
	sending *epochState
	retired []retiredEpoch
	pending *pendingEpoch
	floor   uint64 // highest epoch number known to exist, from sync messages

	removedPID map[string]bool
	removedID  map[string]bool

	// nodes are the node messages that verified with their sender's
	// identity key; nodeWait the newest one of each participant whose
	// identity this member does not know yet.
	nodes    map[string]nodeClaim
	nodeWait map[string]*keymsg.Node
	// cps are the checkpoint messages of others (checkpoints.go).
	cps checkpointState
	// presence is others' latest verified presence (presence.go).
	presence presenceState

	lastAnnounce time.Time            // last broadcast of the announcement
	sentTo       map[string]time.Time // last announcement sent to one participant
	syncedTo     syncNote             // the last leader told of a newer epoch, and its number
	batch        batchState
	desired      desiredCache

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
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	cfg.RekeyInterval = orDefault(cfg.RekeyInterval, DefaultRekeyInterval)
	cfg.Grace = orDefault(cfg.Grace, DefaultGrace)
	cfg.AnnounceRetry = orDefault(cfg.AnnounceRetry, DefaultAnnounceRetry)
	cfg.JoinBatch = orDefault(cfg.JoinBatch, DefaultJoinBatch)
	cfg.JoinBatchMax = orDefault(cfg.JoinBatchMax, DefaultJoinBatchMax)
	receiver, err := sframe.NewReceiver(cfg.Suite)
	if err != nil {
		return nil, fmt.Errorf("group: %w", err)
	}
	key, err := keymsg.KEM().GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("group: hpke key: %w", err)
	}
	ann, err := keymsg.NewAnnouncement(cfg.Meeting, cfg.Participant, cfg.Name, cfg.Identity, key.PublicKey().Bytes())
	if err != nil {
		return nil, fmt.Errorf("group: %w", err)
	}
	payload, err := keymsg.Encode(ann)
	if err != nil {
		return nil, fmt.Errorf("group: %w", err)
	}
	var nodeMsg []byte
	if cfg.NodeCert != "" {
		n, err := keymsg.NewNode(cfg.Meeting, cfg.Participant, cfg.NodeCert, cfg.Identity)
		if err != nil {
			return nil, fmt.Errorf("group: %w", err)
		}
		if nodeMsg, err = keymsg.Encode(n); err != nil {
			return nil, fmt.Errorf("group: %w", err)
		}
	}
	m := &Member{
		cfg:        cfg,
		hpkeKey:    key,
		self:       ann.Entry,
		announce:   payload,
		nodeMsg:    nodeMsg,
		nodes:      make(map[string]nodeClaim),
		nodeWait:   make(map[string]*keymsg.Node),
		policyHash: cfg.PolicyHash,
		heard:      make(map[string]keymsg.Entry),
		verified:   make(map[string]struct{}),
		removedPID: make(map[string]bool),
		removedID:  make(map[string]bool),
		sentTo:     make(map[string]time.Time),
		receiver:   receiver,
	}
	m.protector = mediaframe.NewProtector(currentSender{&m.sender})
	m.unprotector = mediaframe.NewUnprotector(receiver)
	return m, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Announce returns the member's signed announcement, to be sent to everyone
// once it has joined. (A caller may address a copy to one participant;
// only the first view after joining counts it as having reached everyone
// listed, see OnRosterChange.) A member with a node certificate sends
// Introduce instead.
func (m *Member) Announce() Outgoing {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastAnnounce = m.cfg.Now()
	return Outgoing{Payload: m.announce}
}

// Introduce is Announce followed by the member's node message (if it has
// a node certificate), both to everyone, in that order.
func (m *Member) Introduce() []Outgoing {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastAnnounce = m.cfg.Now()
	return m.announcement("")
}

// OnRosterChange takes the meeting's participants in join order, this
// member included, as the server lists them. The caller must call it within
// 2 s of any join or leave: a leader re-keys here (or starts gathering
// joins, see Config.JoinBatch), and a leave is only cut off by a re-key.
func (m *Member) OnRosterChange(participants []string) ([]Outgoing, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now()
	// Sets, not slices.Contains: views of 1,000 would cost a million
	// comparisons per change.
	was := make(map[string]bool, len(m.view))
	for _, p := range m.view {
		was[p] = true
	}
	is := make(map[string]bool, len(participants))
	for _, p := range participants {
		is[p] = true
	}
	for _, p := range m.view {
		if !is[p] {
			delete(m.heard, p)
			delete(m.sentTo, p)
			delete(m.nodes, p)
			delete(m.nodeWait, p)
		}
	}
	// The announcement sent on joining, before any view, reached those
	// present then: the participants of this first view.
	first := len(m.view) == 0 && !m.lastAnnounce.IsZero() && now.Sub(m.lastAnnounce) < m.cfg.AnnounceRetry/2
	var out []Outgoing
	for _, p := range participants {
		if p == m.cfg.Participant || was[p] {
			continue
		}
		if first {
			if _, ok := m.sentTo[p]; !ok {
				m.sentTo[p] = m.lastAnnounce
			}
			continue
		}
		// Someone new to this member hears from it directly: that is what
		// lets it count as heard there. A participant appears when the
		// relay can reach it, so what went to it before may be lost.
		out = append(out, m.announceTo(p, now, true)...)
	}
	m.view = slices.Clone(participants)
	m.gen++
	more, err := m.react(now)
	return append(out, more...), err
}

// Tick lets time pass: it retires old epochs' keys after the grace window,
// re-keys when the leader's interval or join batch is up, re-sends acks
// that got no commit and re-announces while the member has no epoch or has
// not heard from someone in its epochs. Call it when NextTick says, at least
// once a second and at most every 50 ms.
func (m *Member) Tick() ([]Outgoing, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now()
	var out []Outgoing
	if len(m.epochs) == 0 && now.Sub(m.lastAnnounce) >= m.cfg.AnnounceRetry {
		out = append(out, m.broadcastAnnounce(now)...)
	}
	out = append(out, m.announceUnheard(now)...)
	more, err := m.react(now)
	return append(out, more...), err
}

// SetPolicyHash sets the meeting's effective policy hash, from a statement
// of the host the caller verified. The security code covers it.
func (m *Member) SetPolicyHash(h string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.policyHash = h
}

// Remove cuts participant (and, if not empty, every roster entry with
// identity) out of the keys, on a removal the caller verified was signed by
// the host: this member never again counts an epoch naming them as ready
// (it neither acks nor sends under one), ignores their announcements, stops
// sending while its sending epoch names them, and, when it leads, re-keys
// at once without them. Nothing here checks the host's signature.
func (m *Member) Remove(participant string, identityKey []byte) ([]Outgoing, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if participant == "" && len(identityKey) == 0 {
		return nil, errors.New("group: remove names nobody")
	}
	if participant != "" {
		m.removedPID[participant] = true
		delete(m.heard, participant)
		delete(m.nodes, participant)
		delete(m.nodeWait, participant)
	}
	if len(identityKey) > 0 {
		m.removedID[string(identityKey)] = true
		for p, e := range m.heard {
			if string(e.Identity) == string(identityKey) {
				delete(m.heard, p)
			}
		}
	}
	m.gen++
	if m.sending != nil && m.namesRemoved(m.sending.roster) {
		m.sender.Store(nil)
	}
	// Frames the removed make under keys already held are refused from now
	// on, whatever the server still forwards.
	var cut []uint64
	for _, st := range m.epochs {
		for i, e := range st.roster {
			if i != st.index && m.removed(e) {
				cut = append(cut, KID(st.number, i))
			}
		}
	}
	m.removeKeys(cut)
	return m.react(m.cfg.Now())
}

func (m *Member) removed(e keymsg.Entry) bool {
	return m.removedPID[e.Participant] || m.removedID[string(e.Identity)]
}

func (m *Member) namesRemoved(roster []keymsg.Entry) bool {
	if len(m.removedPID) == 0 && len(m.removedID) == 0 {
		return false
	}
	return slices.ContainsFunc(roster, m.removed)
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
	var out []Outgoing
	switch msg := msg.(type) {
	case *keymsg.Announcement:
		out, err = m.handleAnnouncement(from, msg, now)
	case *keymsg.Epoch:
		out, err = m.handleEpoch(from, msg, now)
	case *keymsg.Ack:
		out, err = m.handleAck(from, msg)
	case *keymsg.Commit:
		err = m.handleCommit(msg)
	case *keymsg.Sync:
		return m.handleSync(from, msg, now)
	case *keymsg.Node:
		// Nothing of the keys depends on it: no reaction to run.
		return nil, m.handleNode(from, msg)
	case *keymsg.Checkpoint:
		return nil, m.handleCheckpoint(from, msg)
	case *keymsg.Presence:
		return nil, m.handlePresence(from, msg)
	default:
		return nil, fmt.Errorf("group: message from %q: unexpected %s", from, msg.Type())
	}
	if err != nil && !errors.Is(err, ErrDeferred) {
		return out, err
	}
	more, rerr := m.react(now)
	// An announcement or an epoch may name the identity a waiting node
	// or checkpoint message is signed with.
	m.checkWaitingNodes()
	m.checkWaitingCheckpoints()
	return append(out, more...), errors.Join(err, rerr)
}

// react brings the state up to date after any change: expire retired keys,
// retry a deferred epoch, adopt committed epochs, ack ready ones, commit
// fully acked ones, and re-key if this member leads and must.
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
	out = append(out, m.advance(now)...)
	if !m.isLeader() {
		m.batch = batchState{}
		return append(out, m.syncLeader()...), nil
	}
	if !m.rekeyDue(now) {
		return out, nil
	}
	more, err := m.rekey(now, false)
	out = append(out, more...)
	// A lone leader's epoch is committed as soon as it is made.
	return append(out, m.advance(now)...), err
}

// syncLeader tells the leader, once per leader and epoch, about a newest
// epoch another leader made: a member that led by a view showing it first,
// or that holds the last epoch of a leader that left, may hold a number
// above the leader's without the leader ever hearing of it (it accepted the
// leader's lower epochs before making or getting its own, so it refuses
// nothing the leader sends again). A leader only re-keys on a sync when it
// leads in its own view, so two members that each think they lead do not
// answer each other.
func (m *Member) syncLeader() []Outgoing {
	newest := m.newest()
	leader := m.expectedLeader()
	if newest == nil || leader == "" || leader == m.cfg.Participant || newest.leader.Participant == leader {
		return nil
	}
	if m.syncedTo == (syncNote{leader, newest.number}) {
		return nil
	}
	m.syncedTo = syncNote{leader, newest.number}
	return m.syncTo(leader)
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

// expectedLeader is the first participant of the view not removed by the
// host.
func (m *Member) expectedLeader() string {
	for _, p := range m.view {
		if !m.removedPID[p] {
			return p
		}
	}
	return ""
}

func (m *Member) isLeader() bool { return m.expectedLeader() == m.cfg.Participant }

func (m *Member) removeKeys(kids []uint64) { m.receiver.RemoveKeys(kids) }
