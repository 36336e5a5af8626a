package bot

import (
	"log/slog"
	"slices"
	"time"

	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/e2ee/group"
	"github.com/oakmeet/oakmeet/e2ee/identity"
	"github.com/oakmeet/oakmeet/signal"
)

// keyring connects a session to its end-to-end encryption state: it keeps
// the roster in join order, passes key messages between the member and the
// node's relay, and ticks the member's clock. It is used from the bot's
// event loop only; the member itself is safe for the media goroutines.
type keyring struct {
	m       *group.Member
	sess    *client.Session
	log     *slog.Logger
	roster  []string
	history []KeyChange
}

// KeyChange is the moment a bot's end-to-end state moved to a new epoch.
type KeyChange struct {
	At           time.Time `json:"at"`
	Epoch        uint64    `json:"epoch"`
	SecurityCode string    `json:"security_code"`
}

func newKeyring(sess *client.Session, id *identity.Identity, log *slog.Logger) (*keyring, error) {
	m, err := group.NewMember(group.Config{Meeting: sess.Meeting(), Participant: sess.ID(), Identity: id})
	if err != nil {
		return nil, err
	}
	k := &keyring{m: m, sess: sess, log: log}
	// Roster order is join order: those present at welcome, then this
	// participant, then later joiners.
	for _, p := range sess.Present() {
		k.roster = append(k.roster, p.ID)
	}
	k.roster = append(k.roster, sess.ID())
	k.send([]group.Outgoing{m.Announce()})
	k.changed()
	return k, nil
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
	outs, err := k.m.OnRosterChange(slices.Clone(k.roster))
	if err != nil {
		k.log.Warn("key schedule: roster change", "err", err)
	}
	k.send(outs)
}

func (k *keyring) joined(p signal.Participant) {
	if slices.Contains(k.roster, p.ID) {
		return // announced at welcome
	}
	k.roster = append(k.roster, p.ID)
	k.changed()
}

func (k *keyring) left(p signal.Participant) {
	i := slices.Index(k.roster, p.ID)
	if i < 0 {
		return
	}
	k.roster = slices.Delete(k.roster, i, i+1)
	k.changed()
}

func (k *keyring) relay(from string, payload []byte) {
	outs, err := k.m.HandleMessage(from, payload)
	if err != nil {
		// Forged, replayed or stale messages are refused; the meeting
		// goes on with the keys it has.
		k.log.Info("key message refused", "from", from, "err", err)
	}
	k.send(outs)
}

func (k *keyring) tick() {
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
