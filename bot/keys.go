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
}

type member struct {
	id    string
	since int64
}

// KeyChange is the moment a bot's end-to-end state moved to a new epoch.
type KeyChange struct {
	At           time.Time `json:"at"`
	Epoch        uint64    `json:"epoch"`
	SecurityCode string    `json:"security_code"`
}

func newKeyring(sess *client.Session, since int64, id *identity.Identity, log *slog.Logger) (*keyring, error) {
	m, err := group.NewMember(group.Config{Meeting: sess.Meeting(), Participant: sess.ID(), Identity: id})
	if err != nil {
		return nil, err
	}
	k := &keyring{m: m, sess: sess, log: log}
	// Every member orders the roster by (since, id): since is when the
	// control plane issued each participant's join token, one clock for
	// all nodes, so all members agree on the order and on the leader.
	for _, p := range sess.Present() {
		k.add(p.ID, p.Since)
	}
	k.add(sess.ID(), since)
	k.send([]group.Outgoing{m.Announce()})
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

func (k *keyring) send(outs []group.Outgoing) {
	if e := k.m.Epoch(); e != 0 && (len(k.history) == 0 || k.history[len(k.history)-1].Epoch != e) {
		k.history = append(k.history, KeyChange{At: time.Now().UTC(), Epoch: e, SecurityCode: k.code()})
	}
	for _, o := range outs {
		if err := k.sess.SendRelay(o.To, o.Payload); err != nil {
			k.log.Debug("send key message", "to", o.To, "err", err)
		}
	}
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
	if k.add(p.ID, p.Since) { // else already known from the welcome
		// A participant on another node may appear only when the relay
		// link to it comes up, after our first announcement went out:
		// announce again, to it.
		a := k.m.Announce()
		a.To = p.ID
		k.send([]group.Outgoing{a})
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

func (k *keyring) relay(from string, payload []byte) {
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
