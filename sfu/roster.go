package sfu

import (
	"cmp"
	"slices"

	"github.com/oakmeet/oakmeet/signal"
)

// roster is who is in a meeting as this node's participants see it: its own
// participants and those announced by relay links. One participant may be
// present in more than one place for a while — while it moves to another
// node it keeps its old connection until the new one works — and is shown
// once, as its newest presence (the latest Since). Owned by the room
// goroutine.
type roster struct {
	m map[string][]presence
}

// presence is one place a participant is connected: through a relay link,
// or on this node when via is nil.
type presence struct {
	via *link
	p   signal.Participant
}

// view is a participant as members see it: its newest presence.
func view(ps []presence) signal.Participant {
	best := ps[0].p
	for _, x := range ps[1:] {
		if x.p.Since >= best.Since {
			best = x.p
		}
	}
	return best
}

// set records p as present through via and returns the participant as
// members should now see it, and whether that changed: new, or another
// name or Since.
func (r *roster) set(via *link, p signal.Participant) (signal.Participant, bool) {
	if r.m == nil {
		r.m = map[string][]presence{}
	}
	ps := r.m[p.ID]
	var before signal.Participant
	if len(ps) > 0 {
		before = view(ps)
	}
	i := slices.IndexFunc(ps, func(x presence) bool { return x.via == via })
	if i >= 0 {
		ps[i].p = p
	} else {
		ps = append(ps, presence{via: via, p: p})
	}
	r.m[p.ID] = ps
	after := view(ps)
	return after, after != before
}

// drop removes the presence of id through via. gone reports that id is
// present nowhere any more; otherwise changed reports whether the view of
// it changed (and after is the new view).
func (r *roster) drop(via *link, id string) (after signal.Participant, gone, changed bool) {
	ps := r.m[id]
	i := slices.IndexFunc(ps, func(x presence) bool { return x.via == via })
	if i < 0 {
		return signal.Participant{}, false, false
	}
	before := view(ps)
	ps = slices.Delete(ps, i, i+1)
	if len(ps) == 0 {
		delete(r.m, id)
		return before, true, false
	}
	r.m[id] = ps
	after = view(ps)
	return after, false, after != before
}

// present reports whether id is in the meeting, and how it is shown.
func (r *roster) present(id string) (signal.Participant, bool) {
	ps := r.m[id]
	if len(ps) == 0 {
		return signal.Participant{}, false
	}
	return view(ps), true
}

// links lists the relay links through which id is present.
func (r *roster) links(id string) []*link {
	var out []*link
	for _, x := range r.m[id] {
		if x.via != nil {
			out = append(out, x.via)
		}
	}
	return out
}

// via lists the participants present through a link.
func (r *roster) via(l *link) []signal.Participant {
	var out []signal.Participant
	for _, ps := range r.m {
		for _, x := range ps {
			if x.via == l {
				out = append(out, x.p)
			}
		}
	}
	return out
}

// list is everyone, in roster order: by Since, then id.
func (r *roster) list() []signal.Participant {
	out := make([]signal.Participant, 0, len(r.m))
	for _, ps := range r.m {
		out = append(out, view(ps))
	}
	slices.SortFunc(out, func(a, b signal.Participant) int {
		return cmp.Or(cmp.Compare(a.Since, b.Since), cmp.Compare(a.ID, b.ID))
	})
	return out
}
