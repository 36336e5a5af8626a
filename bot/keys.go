package bot

import (
	"cmp"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/e2ee/group"
	"github.com/oakmeet/oakmeet/e2ee/identity"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/signal"
)

// keyring connects a session to its end-to-end encryption state: it keeps
// the roster in join order, passes key messages between the member and the
// node's relay, and ticks the member's clock. The member itself is safe
// for the media goroutines.
type keyring struct {
	mu      sync.Mutex // the leg's event goroutine and Run both use it
	m       *group.Member
	sess    *client.Session
	log     *slog.Logger
	roster  []member // in roster order: by since, then id
	history []KeyChange
	// wake tells run that the member may have something due sooner.
	wake chan struct{}
}

type member struct {
	id    string
	since int64
}

// KeyChange is the moment a bot's end-to-end state moved to a new sending
// epoch, or its security code changed (a new policy hash).
type KeyChange struct {
	At           time.Time `json:"at"`
	Epoch        uint64    `json:"epoch"`
	SecurityCode string    `json:"security_code"`
	// Roster is who holds the keys of the epoch the bot sends under.
	Roster []string `json:"roster"`
}

// Person is one person as the bot sees them: everyone in the signed
// roster it sends under, in the newest roster it holds, and everyone the
// server lists. Flags say, in words, where the signed roster and the
// server disagree.
type Person struct {
	ParticipantID string `json:"participant_id"`
	Name          string `json:"name"`
	Identity      []byte `json:"identity,omitempty"`
	Self          bool   `json:"self,omitempty"`
	Leader        bool   `json:"leader,omitempty"`
	InKeys        bool   `json:"in_keys"`
	Pending       bool   `json:"pending,omitempty"`
	Listed        bool   `json:"listed"`
	Heard         bool   `json:"heard"`
	Removed       bool   `json:"removed,omitempty"`
	// Node is the node the person says they are on, in their signed node
	// message, as this bot judged it against its host-signed policy.
	Node  PersonNode `json:"node"`
	Flags []string   `json:"flags,omitempty"`
}

// PersonNode is a person's node as the bot checked it: Status is
// "verified" (certified by the enrollment key the host signed, valid, in a
// place the host's policy allows), "not_allowed" (certified, but where the
// policy forbids), "invalid" (the certificate does not verify) or
// "unknown" (no node message). ID, Country and Region are the
// certificate's, once it verified.
type PersonNode struct {
	Status  string `json:"status"`
	ID      string `json:"id,omitempty"`
	Country string `json:"country,omitempty"`
	Region  string `json:"region,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// Flags of a Person.
const (
	FlagNotInKeys = "not in the encryption — the server says they are here"
	FlagNotListed = "in the encryption — the server does not list them"
	FlagNotHeard  = "has not announced themselves to you"
	FlagRemoved   = "removed by the host"
	// FlagRemovedInKeys: removed, yet in the keys this bot holds; the
	// others may not have the removal (a server can withhold it), and this
	// bot sends nothing under those keys.
	FlagRemovedInKeys = "removed by the host, yet still in the encryption — the server may be withholding the removal"
	// FlagNodeNotAllowed: their media goes through a node the host's
	// policy forbids (the reason names the node and its country).
	FlagNodeNotAllowed = "on a node the host's policy does not allow"
	// FlagNodeInvalid: the node they name has no certificate this bot
	// can verify.
	FlagNodeInvalid = "on a node whose certificate does not verify"
)

func newKeyring(sess *client.Session, since int64, id *identity.Identity, name, policyHash, nodeCert string, log *slog.Logger) (*keyring, error) {
	m, err := group.NewMember(group.Config{Meeting: sess.Meeting(), Participant: sess.ID(), Identity: id,
		Name: name, PolicyHash: policyHash, NodeCert: nodeCert})
	if err != nil {
		return nil, err
	}
	k := &keyring{m: m, sess: sess, log: log, wake: make(chan struct{}, 1)}
	// Every member orders the roster by (since, id): since is when the
	// control plane issued each participant's join token, one clock for
	// all nodes, so all members agree on the order and on the leader.
	for _, p := range sess.Present() {
		k.add(p.ID, p.Since)
	}
	k.add(sess.ID(), since)
	k.send(m.Introduce())
	k.changed()
	return k, nil
}

func (k *keyring) add(id string, since int64) bool {
	if slices.ContainsFunc(k.roster, func(m member) bool { return m.id == id }) {
		return false
	}
	k.roster = append(k.roster, member{id: id, since: since})
	slices.SortStableFunc(k.roster, func(a, b member) int {
		return cmp.Or(cmp.Compare(a.since, b.since), cmp.Compare(a.id, b.id))
	})
	return true
}

// send passes key messages on and records a new sending state; k.mu is
// held.
func (k *keyring) send(outs []group.Outgoing) {
	if e, code := k.m.Epoch(), k.code(); e != 0 {
		if n := len(k.history); n == 0 || k.history[n-1].Epoch != e || k.history[n-1].SecurityCode != code {
			k.history = append(k.history, KeyChange{At: time.Now().UTC(), Epoch: e, SecurityCode: code, Roster: k.inKeys()})
		}
	}
	for _, o := range outs {
		if err := k.sess.SendRelay(o.To, o.Payload); err != nil {
			k.log.Debug("send key message", "to", o.To, "err", err)
		}
	}
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

func (k *keyring) inKeys() []string {
	var ids []string
	for _, p := range k.m.People() {
		if p.InKeys {
			ids = append(ids, p.Participant)
		}
	}
	return ids
}

// Bounds of the time between two ticks: the member says when it next has
// something due (a batched re-key, a retry), within these.
const (
	minTick = 50 * time.Millisecond
	maxTick = time.Second
)

// run ticks the member when it next has something due, until done closes.
func (k *keyring) run(done <-chan struct{}) {
	t := time.NewTimer(maxTick)
	defer t.Stop()
	for {
		k.mu.Lock()
		wait := min(max(time.Until(k.m.NextTick()), minTick), maxTick)
		k.mu.Unlock()
		t.Reset(wait)
		select {
		case <-done:
			return
		case <-k.wake:
			if !t.Stop() {
				<-t.C
			}
			continue // what is due may have moved
		case <-t.C:
			k.tick()
		}
	}
}

// remove cuts a participant the host removed from the keys.
func (k *keyring) remove(participant string, identity []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	outs, err := k.m.Remove(participant, identity)
	if err != nil {
		k.log.Warn("key schedule: remove", "participant", participant, "err", err)
	}
	k.send(outs)
}

// setPolicyHash takes the host-signed policy hash into the security code.
func (k *keyring) setPolicyHash(h string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.m.SetPolicyHash(h)
	k.send(nil)
}

// KeyStatus is where a bot's key schedule stands: the epoch it sends
// under, the newest it holds, and, while the newest is not committed, who
// has not acknowledged it (as leader) and who has not announced themselves
// to the bot.
type KeyStatus struct {
	Epoch        uint64   `json:"epoch"`
	Newest       uint64   `json:"newest"`
	AwaitingAcks []string `json:"awaiting_acks,omitempty"`
	Unheard      []string `json:"unheard,omitempty"`
}

func (k *keyring) status() KeyStatus {
	k.mu.Lock()
	defer k.mu.Unlock()
	st := k.m.Status()
	return KeyStatus{Epoch: st.Epoch, Newest: st.Newest, AwaitingAcks: st.AwaitingAcks, Unheard: st.Unheard}
}

// people is the roster the bot holds, flagged, each person's node judged
// against policy, the newest host-signed policy statement (nil: none).
func (k *keyring) people(policy *hoststmt.Statement) []Person {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []Person
	now := time.Now()
	for _, p := range k.m.People() {
		q := Person{ParticipantID: p.Participant, Name: p.Name, Identity: []byte(p.Identity), Self: p.Self, Leader: p.Leader,
			InKeys: p.InKeys, Pending: p.Pending, Listed: p.Listed, Heard: p.Heard, Removed: p.Removed}
		ns := client.NodeStatusOf(p.NodeCert, policy, now)
		q.Node = PersonNode{Status: ns.Status, ID: ns.Cert.NodeID, Country: ns.Cert.Country, Region: ns.Cert.Region, Reason: ns.Reason}
		switch ns.Status {
		case client.NodeNotAllowed:
			q.Flags = append(q.Flags, FlagNodeNotAllowed+": "+ns.Reason)
		case client.NodeInvalid:
			q.Flags = append(q.Flags, FlagNodeInvalid)
		}
		keyed := p.InKeys || p.Pending
		if p.Listed && !keyed {
			q.Flags = append(q.Flags, FlagNotInKeys)
		}
		if keyed && !p.Listed {
			q.Flags = append(q.Flags, FlagNotListed)
		}
		if keyed && !p.Heard && !p.Self {
			q.Flags = append(q.Flags, FlagNotHeard)
		}
		if p.Removed {
			q.Flags = append(q.Flags, FlagRemoved)
			if keyed {
				q.Flags = append(q.Flags, FlagRemovedInKeys)
			}
		}
		out = append(out, q)
	}
	return out
}

func (k *keyring) changed() {
	ids := make([]string, len(k.roster))
	for i, m := range k.roster {
		ids[i] = m.id
	}
	outs, err := k.m.OnRosterChange(ids)
	if err != nil {
		k.log.Warn("key schedule: roster change", "err", err)
	}
	k.send(outs)
}

func (k *keyring) joined(p signal.Participant) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.log.Debug("participant joined", "id", p.ID, "since", p.Since)
	// A participant on another node may appear only when the relay link
	// to it comes up, after our first announcement went out: the member
	// announces itself to whoever is new in its view.
	if k.add(p.ID, p.Since) { // else already known from the welcome
		k.changed()
	}
}

func (k *keyring) left(p signal.Participant) {
	k.mu.Lock()
	defer k.mu.Unlock()
	i := slices.IndexFunc(k.roster, func(m member) bool { return m.id == p.ID })
	if i < 0 {
		return
	}
	k.roster = slices.Delete(k.roster, i, i+1)
	k.changed()
}

// relay handles a key message and returns the checkpoints of the
// transparency log other members shared that verified, for the caller to
// check against its own.
func (k *keyring) relay(from string, payload []byte) []group.PeerCheckpoint {
	k.mu.Lock()
	defer k.mu.Unlock()
	outs, err := k.m.HandleMessage(from, payload)
	if err != nil {
		// Forged, replayed or stale messages are refused; the meeting
		// goes on with the keys it has.
		k.log.Info("key message refused", "from", from, "err", err)
	} else {
		k.log.Debug("key message", "from", from, "epoch", k.m.Epoch())
	}
	k.send(outs)
	return k.m.TakeCheckpoints()
}

// shareCheckpoint passes a checkpoint the bot holds to every other member.
func (k *keyring) shareCheckpoint(signed string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	out, err := k.m.ShareCheckpoint(signed)
	if err != nil {
		k.log.Warn("share a log checkpoint", "err", err)
		return
	}
	k.send([]group.Outgoing{out})
}

func (k *keyring) tick() {
	k.mu.Lock()
	defer k.mu.Unlock()
	outs, err := k.m.Tick()
	if err != nil {
		k.log.Warn("key schedule: tick", "err", err)
	}
	k.send(outs)
}

func (k *keyring) code() string {
	c, ok := k.m.SecurityCode()
	if !ok {
		return ""
	}
	return c.String()
}

// final records the current epoch and returns the state to report.
func (k *keyring) final() (code string, epoch uint64, history []KeyChange) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.send(nil)
	return k.code(), k.m.Epoch(), append([]KeyChange(nil), k.history...)
}
