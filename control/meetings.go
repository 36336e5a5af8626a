package control

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/geo"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/store"
)

// meeting is the stored state of one meeting.
type meeting struct {
	ID            string             `json:"id"`
	Title         string             `json:"title"`
	Policy        policy.Policy      `json:"policy"` // the meeting's own rules, normalized
	HostTokenHash string             `json:"host_token_hash"`
	Created       time.Time          `json:"created"`
	Participants  []participant      `json:"participants"`
	PolicyHistory []api.PolicyChange `json:"policy_history"`
	// Traffic is what each node forwarded for the meeting, by node id.
	Traffic map[string]*traffic `json:"traffic,omitempty"`

	// JoinSecretHash is the hash of the join link's secret
	// (token.HashHostToken); a meeting stored without one admits nobody.
	JoinSecretHash string `json:"join_secret_hash,omitempty"`
	// HostKey is the host's Ed25519 public key; without it the meeting
	// has no host statements and no host actions but a policy change.
	HostKey []byte `json:"host_key,omitempty"`
	Locked  bool   `json:"locked,omitempty"`
	Lobby   bool   `json:"lobby,omitempty"`
	// Host is the host's statements in force, handed to every joiner.
	Host hostRecord `json:"host"`
	// Tickets are the joins in the lobby and the host's decisions on
	// them, until they expire (lobbyTicketTTL after their last ask).
	Tickets []lobbyTicket `json:"lobby_tickets,omitempty"`
	// Removed are the participants the host removed and their identity
	// keys: such an identity joins through the lobby only.
	Removed []removal `json:"removed,omitempty"`
	// Folded is what departed participants no longer in Participants did,
	// by node, for the meeting's report; FoldedCount is how many they were.
	// Without folding, every join ever made would stay in the one stored
	// record, which a holder of the link could grow past the store's
	// message limit and so break the meeting for everyone.
	Folded      map[string]*api.NodeUsage `json:"folded,omitempty"`
	FoldedCount int                       `json:"folded_count,omitempty"`
}

// maxDeparted is how many departed participants a meeting's record keeps
// in full: enough for the late events about them (a connection after its
// seat's hold, a refusal or rejoin naming them) in any ordinary meeting;
// older ones are folded into Folded.
const maxDeparted = 256

// foldDeparted keeps at most max departed participants in Participants,
// folding the earliest joined of the others into Folded. A removed
// participant is kept: its record turns its token away.
func (m *meeting) foldDeparted(max int) {
	departed := 0
	for _, p := range m.Participants {
		if p.Left != nil && !p.Removed {
			departed++
		}
	}
	if departed <= max {
		return
	}
	fold := departed - max
	kept := m.Participants[:0]
	for _, p := range m.Participants {
		if fold > 0 && p.Left != nil && !p.Removed {
			fold--
			m.FoldedCount++
			if p.Connected != nil {
				if m.Folded == nil {
					m.Folded = map[string]*api.NodeUsage{}
				}
				u := m.Folded[p.Node.ID]
				if u == nil {
					u = &api.NodeUsage{Node: p.Node.ID, Country: p.Node.Country, Region: p.Node.Region}
					m.Folded[p.Node.ID] = u
				}
				addUsage(u, p.Connected, p.Left)
			}
			continue
		}
		kept = append(kept, p)
	}
	clear(m.Participants[len(kept):])
	m.Participants = kept
}

// recordBudget is the encoded size past which an update folds departed
// participants harder than maxDeparted, and recordLimit the size no update
// may pass: both well under the store's largest message (1 MB), so that
// whatever participants and nodes put in a record, room remains for the
// host's policy change and for joins.
const (
	recordBudget = 256 << 10
	recordLimit  = 512 << 10
)

// encodeWithin folds departed participants beyond keep and encodes m;
// while the encoding is over budget and departed participants remain, it
// folds half of them more and encodes again.
func (m *meeting) encodeWithin(keep, budget int) ([]byte, error) {
	for {
		m.foldDeparted(keep)
		data, err := json.Marshal(m)
		if err != nil || len(data) <= budget {
			return data, err
		}
		departed := 0
		for _, p := range m.Participants {
			if p.Left != nil && !p.Removed {
				departed++
			}
		}
		if departed == 0 {
			return data, nil
		}
		keep = min(keep, departed) / 2
	}
}

// addUsage counts one participant that was on u's node from connected
// until left (nil: still there) into u.
func addUsage(u *api.NodeUsage, connected, left *time.Time) {
	u.Participants++
	if left != nil {
		u.ParticipantMinutes += left.Sub(*connected).Minutes()
	}
	if u.From == nil || connected.Before(*u.From) {
		t := *connected
		u.From = &t
	}
	if left != nil && (u.Until == nil || left.After(*u.Until)) {
		t := *left
		u.Until = &t
	}
}

// hostRecord is what the host has stated: the newest policy and settings
// statements, every removal, and the last accepted seq of each kind.
type hostRecord struct {
	Policy   *hoststmt.Statement  `json:"policy,omitempty"`
	Settings *hoststmt.Statement  `json:"settings,omitempty"`
	Removals []hoststmt.Statement `json:"removals,omitempty"`
	Seq      map[string]uint64    `json:"seq,omitempty"`
}

// removal is one participant the host removed.
type removal struct {
	Participant string    `json:"participant"`
	Identities  [][]byte  `json:"identities,omitempty"`
	At          time.Time `json:"at"`
}

// lobbyTicket is one join held in the lobby.
type lobbyTicket struct {
	Ticket   string           `json:"ticket"`
	Name     string           `json:"name"`
	Location api.JoinLocation `json:"location"`
	Identity []byte           `json:"identity,omitempty"`
	Since    time.Time        `json:"since"`
	LastAsk  time.Time        `json:"last_ask"`
	// Removed: the identity was removed before; only the host lets it in.
	Removed bool `json:"removed,omitempty"`
	// Decision is "", hoststmt.KindAdmit or hoststmt.KindDeny.
	Decision string `json:"decision,omitempty"`
}

type participant struct {
	ID             string         `json:"id"`
	Name           string         `json:"name"`
	Location       geo.Location   `json:"location"`
	LocationSource string         `json:"location_source"`
	Node           api.PlacedNode `json:"node"`
	Joined         time.Time      `json:"joined"`
	Connected      *time.Time     `json:"connected,omitempty"`
	Left           *time.Time     `json:"left,omitempty"`
	// Replaces is the participant this one took over from when it moved.
	Replaces   string `json:"replaces,omitempty"`
	LeftReason string `json:"left_reason,omitempty"`
	// Identity is the identity key the join request named; RejoinHash the
	// hash of the rejoin secret its join answer handed out.
	Identity   []byte `json:"identity,omitempty"`
	RejoinHash string `json:"rejoin_hash,omitempty"`
	Removed    bool   `json:"removed,omitempty"`
}

func (m *meeting) active() []participant {
	var out []participant
	for _, p := range m.Participants {
		if p.Left == nil {
			out = append(out, p)
		}
	}
	return out
}

// hasActive reports whether any participant has not left.
func (m *meeting) hasActive() bool {
	return slices.ContainsFunc(m.Participants, func(p participant) bool { return p.Left == nil })
}

func (m *meeting) participant(id string) *participant {
	for i := range m.Participants {
		if m.Participants[i].ID == id {
			return &m.Participants[i]
		}
	}
	return nil
}

// errNoChange aborts an update that has nothing to write.
var errNoChange = errors.New("no change")

func (m *meeting) nodeIDs() []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range m.active() {
		if !seen[p.Node.ID] {
			seen[p.Node.ID] = true
			out = append(out, p.Node.ID)
		}
	}
	return out
}

// meetings reads and writes meetings in the store. Updates to one meeting
// are serialised in this process by a lock of its own (so that a burst of
// joins does not run out of compare-and-set retries) and compare-and-set in
// the store. The lock is held across the store's round trip; see the lock
// order in server.go.
//
// Meetings are kept decoded: every meeting with participants, and of the
// others the ones stored or read last (at most maxDecoded). An update
// starts from the copy without reading the store, so a burst of joins to
// one meeting costs one round trip each, not two (another writer in
// between makes the write conflict, and the update reads the store then);
// a read still asks the store, but decodes only a revision it does not
// hold. While the meetings bucket is watched (watch.go) the copies are
// kept current, and enforcement plans from them without a round trip.
type meetings struct {
	store *store.Store

	mu    sync.Mutex // guards locks, decoded, idle and watched; never held with anything else
	locks map[string]*meetingLock
	// decoded is, by meeting with participants, its value at a stored
	// revision, which no one changes: updates and reads take clones of
	// it. idle is the same for meetings without participants.
	decoded map[string]storedMeeting
	idle    map[string]storedMeeting
	// watched is set while the watch has delivered every stored value and
	// follows the changes.
	watched bool
}

// maxDecoded bounds meetings.decoded.
const maxDecoded = 256

// meetingLock is one meeting's update lock, kept while anyone holds or
// waits for it.
type meetingLock struct {
	mu   sync.Mutex
	refs int // guarded by meetings.mu
}

// storedMeeting is a meeting's value as stored at a revision.
type storedMeeting struct {
	rev uint64
	m   *meeting
}

func newMeetings(st *store.Store) *meetings {
	return &meetings{store: st, locks: map[string]*meetingLock{}, decoded: map[string]storedMeeting{}, idle: map[string]storedMeeting{}}
}

func (ms *meetings) lock(id string) func() {
	ms.mu.Lock()
	l, ok := ms.locks[id]
	if !ok {
		l = &meetingLock{}
		ms.locks[id] = l
	}
	l.refs++
	ms.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		ms.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(ms.locks, id)
		}
		ms.mu.Unlock()
	}
}

// cached is the decoded value held for a meeting, if any.
func (ms *meetings) cached(id string) (storedMeeting, bool) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.cachedLocked(id)
}

func (ms *meetings) cachedLocked(id string) (storedMeeting, bool) {
	if d, ok := ms.decoded[id]; ok {
		return d, true
	}
	d, ok := ms.idle[id]
	return d, ok
}

// keep holds m as the meeting's value at rev (m is the caller's no more),
// unless a newer revision is held already.
func (ms *meetings) keep(id string, rev uint64, m *meeting) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if d, ok := ms.cachedLocked(id); ok && d.rev >= rev {
		return
	}
	d := storedMeeting{rev: rev, m: m}
	if m.hasActive() {
		delete(ms.idle, id)
		ms.decoded[id] = d
		return
	}
	delete(ms.decoded, id)
	if _, ok := ms.idle[id]; !ok && len(ms.idle) >= maxDecoded {
		for k := range ms.idle { // any one makes room
			delete(ms.idle, k)
			break
		}
	}
	ms.idle[id] = d
}

// forget drops the meeting's decoded value.
func (ms *meetings) forget(id string) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	delete(ms.decoded, id)
	delete(ms.idle, id)
}

// setWatched records whether the watch keeps the decoded values current.
func (ms *meetings) setWatched(on bool) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.watched = on
}

// forPlan is the meeting's newest value for a plan, which only reads it
// (it is shared, and must not be changed): the decoded copy while the
// watch keeps it current, a read of the store otherwise.
func (ms *meetings) forPlan(ctx context.Context, id string) (*meeting, uint64, error) {
	ms.mu.Lock()
	d, ok := ms.cachedLocked(id)
	ok = ok && ms.watched
	ms.mu.Unlock()
	if ok {
		return d.m, d.rev, nil
	}
	return ms.get(ctx, id)
}

// holds reports, while the watch keeps the decoded values current,
// whether the meeting is active (it has participants not gone) and
// whether a value of it is held at all; watched is false otherwise, and
// only the store knows.
func (ms *meetings) holds(id string) (active, known, watched bool) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if !ms.watched {
		return false, false, false
	}
	_, active = ms.decoded[id]
	_, idle := ms.idle[id]
	return active, active || idle, true
}

// observe takes in a change the watch saw: the value is decoded unless
// the revision is held already (this process wrote it). It returns whether
// the meeting has participants now.
func (ms *meetings) observe(c store.MeetingChange) (active bool, err error) {
	if c.Deleted {
		ms.forget(c.ID)
		return false, nil
	}
	if d, ok := ms.cached(c.ID); ok && d.rev >= c.Revision {
		return d.m.hasActive(), nil
	}
	var m meeting
	if err := json.Unmarshal(c.Value, &m); err != nil {
		return false, fmt.Errorf("meeting %s unreadable: %w", c.ID, err)
	}
	ms.keep(c.ID, c.Revision, &m)
	return m.hasActive(), nil
}

func (ms *meetings) get(ctx context.Context, id string) (*meeting, uint64, error) {
	if !validMeetingID(id) {
		return nil, 0, apiErr(http.StatusNotFound, api.CodeNotFound, "no meeting %q", id)
	}
	rec, err := ms.store.Meeting(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, apiErr(http.StatusNotFound, api.CodeNotFound, "no meeting %q", id)
	}
	if err != nil {
		return nil, 0, err
	}
	if d, ok := ms.cached(id); ok && d.rev == rec.Revision {
		return d.m.clone(), rec.Revision, nil
	}
	var m meeting
	if err := json.Unmarshal(rec.Value, &m); err != nil {
		return nil, 0, fmt.Errorf("meeting %s unreadable: %w", id, err)
	}
	ms.keep(id, rec.Revision, m.clone())
	return &m, rec.Revision, nil
}

func (ms *meetings) create(ctx context.Context, m *meeting) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = ms.store.CreateMeeting(ctx, m.ID, data)
	return err
}

// update applies fn to the meeting under its lock and stores the result,
// returning it with its new revision. fn may return an error to abort
// without writing; it runs again on a fresh read after a store conflict.
// It starts from the meeting's decoded value when one is held, and from
// the store otherwise or after a conflict.
func (ms *meetings) update(ctx context.Context, id string, fn func(*meeting) error) (*meeting, uint64, error) {
	unlock := ms.lock(id)
	defer unlock()
	fresh := false // whether m was read from the store for this attempt
	for attempt := 0; ; attempt++ {
		var (
			m   *meeting
			rev uint64
			err error
		)
		if d, ok := ms.cached(id); ok && !fresh {
			m, rev = d.m.clone(), d.rev
		} else {
			if m, rev, err = ms.get(ctx, id); err != nil {
				return nil, 0, err
			}
			fresh = true
		}
		if err := fn(m); err != nil {
			if !fresh && !errors.Is(err, errNoChange) {
				// A refusal is decided on the store's value, not on one
				// held that another writer may have replaced (the watch
				// brings its change a moment later).
				fresh = true
				attempt--
				continue
			}
			return nil, 0, err
		}
		data, err := m.encodeWithin(maxDeparted, recordBudget)
		if err != nil {
			return nil, 0, err
		}
		if len(data) > recordLimit {
			return nil, 0, apiErr(http.StatusServiceUnavailable, api.CodeUnavailable, "meeting %s: its record would grow past %d bytes", id, recordLimit)
		}
		rev, err = ms.store.UpdateMeeting(ctx, id, data, rev)
		if err == nil {
			ms.keep(id, rev, m.clone())
			return m, rev, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return nil, 0, err
		}
		if !fresh {
			// Another writer stored the meeting since the value held:
			// read it, and do not count the stale start as an attempt.
			ms.forget(id)
			fresh = true
			attempt--
			continue
		}
		if attempt >= 4 {
			return nil, 0, err
		}
	}
}

// all is every stored meeting, read in one pass over the bucket (see
// store.Meetings). The values are shared with the decoded copies: like
// forPlan's, they must not be changed. A revision held decoded already is
// not decoded again, so a second read soon after the first (the start
// reads them for the state, then for the floor) costs the pass alone; the
// others are decoded on every core.
func (ms *meetings) all(ctx context.Context) ([]*meeting, error) {
	recs, err := ms.store.Meetings(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*meeting, len(recs))
	var todo []int // indexes of recs to decode
	for i, r := range recs {
		if !validMeetingID(r.ID) {
			return nil, apiErr(http.StatusNotFound, api.CodeNotFound, "no meeting %q", r.ID)
		}
		if d, ok := ms.cached(r.ID); ok && d.rev == r.Revision {
			out[i] = d.m
			continue
		}
		todo = append(todo, i)
	}
	errs := make([]error, len(recs))
	workers := max(1, min(runtime.GOMAXPROCS(0), (len(todo)+63)/64))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for j := w; j < len(todo); j += workers {
				i := todo[j]
				m := &meeting{}
				if errs[i] = json.Unmarshal(recs[i].Value, m); errs[i] == nil {
					out[i] = m
				}
			}
		})
	}
	wg.Wait()
	for _, i := range todo {
		if errs[i] != nil {
			return nil, fmt.Errorf("meeting %s unreadable: %w", recs[i].ID, errs[i])
		}
		ms.keep(recs[i].ID, recs[i].Revision, out[i])
	}
	return out, nil
}

// IDs are lower-case letters and digits without look-alikes, safe in URLs,
// NATS subjects and KV keys.
const idAlphabet = "abcdefghijkmnpqrstuvwxyz23456789"

func newID(prefix string, n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return prefix + string(b)
}

func validMeetingID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// clone is a copy of m that shares nothing an update changes: every
// slice and map, and the traffic records, are copied; host statements,
// byte strings and times behind pointers are only ever replaced, never
// changed in place, and are shared.
func (m *meeting) clone() *meeting {
	c := *m
	c.Policy = clonePolicy(m.Policy)
	c.Participants = slices.Clone(m.Participants)
	c.PolicyHistory = slices.Clone(m.PolicyHistory)
	for i := range c.PolicyHistory {
		c.PolicyHistory[i].Policy = clonePolicy(c.PolicyHistory[i].Policy)
		c.PolicyHistory[i].Effective = clonePolicy(c.PolicyHistory[i].Effective)
	}
	if m.Folded != nil {
		c.Folded = make(map[string]*api.NodeUsage, len(m.Folded))
		for k, u := range m.Folded {
			if u != nil {
				uc := *u
				u = &uc
			}
			c.Folded[k] = u
		}
	}
	if m.Traffic != nil {
		c.Traffic = make(map[string]*traffic, len(m.Traffic))
		for k, t := range m.Traffic {
			if t != nil {
				tc := *t
				t = &tc
			}
			c.Traffic[k] = t
		}
	}
	c.HostKey = slices.Clone(m.HostKey)
	c.Host.Removals = slices.Clone(m.Host.Removals)
	c.Host.Seq = maps.Clone(m.Host.Seq)
	c.Tickets = slices.Clone(m.Tickets)
	c.Removed = slices.Clone(m.Removed)
	for i := range c.Removed {
		c.Removed[i].Identities = slices.Clone(c.Removed[i].Identities)
	}
	return &c
}

func clonePolicy(p policy.Policy) policy.Policy {
	return policy.Policy{BlockedCountries: slices.Clone(p.BlockedCountries), BlockedRegions: slices.Clone(p.BlockedRegions),
		AllowedCountries: slices.Clone(p.AllowedCountries)}
}
