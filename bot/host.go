package bot

import (
	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/hoststmt"
)

// hostJoin takes a new leg's host state, which the call has taken into
// the bot's HostView: statements new to the bot apply to the legs there
// are; the new leg's key schedule starts from the policy hash and every
// removal in force.
func (r *runner) hostJoin(cl *client.Leg) (policyHash string, removals []hoststmt.Statement) {
	fresh := cl.HostStatements()
	r.mu.Lock()
	legs := r.legList()
	r.mu.Unlock()
	policyHash, removals = r.host.PolicyHash(), r.host.Removals()
	rep := r.host.Report()
	if rep.KeyError != "" {
		// Loud: the server may be trying to speak for the host.
		r.cfg.Logger.Error("host statements refused", "err", rep.KeyError)
	}
	for _, s := range fresh {
		applyHost(legs, s)
	}
	if r.cfg.OnHost != nil {
		r.cfg.OnHost(rep)
	}
	return policyHash, removals
}

// hostStatement takes a "host" message, which the call has checked
// against the bot's HostView: a statement that verifies under the host key
// and is newer than the one in force applies to every leg; anything else
// is ignored.
func (r *runner) hostStatement(ev client.Event) {
	s, err := ev.Statement, ev.Err
	r.mu.Lock()
	legs := r.legList()
	r.mu.Unlock()
	rep := r.host.Report()
	if s != nil {
		r.cfg.Logger.Info("host statement", "kind", s.Kind, "seq", s.Seq, "participant", s.Participant)
		applyHost(legs, *s)
	} else {
		r.cfg.Logger.Warn("host statement ignored", "err", err)
	}
	// After applying: a caller told of a removal may rely on it being in
	// the keys.
	if r.cfg.OnHost != nil {
		r.cfg.OnHost(rep)
	}
}

func applyHost(legs []*leg, s hoststmt.Statement) {
	for _, l := range legs {
		switch s.Kind {
		case hoststmt.KindRemove:
			l.keys.remove(s.Participant, s.Identity)
		case hoststmt.KindPolicy:
			l.keys.setPolicyHash(s.PolicyHash)
		}
	}
}

// legList is every leg; r.mu is held.
func (r *runner) legList() []*leg {
	out := make([]*leg, 0, len(r.legs))
	for _, l := range r.legs {
		out = append(out, l)
	}
	return out
}
