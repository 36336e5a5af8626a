package control

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/token"
)

// The lobby. A join that must wait for the host (the lobby is on, or its
// identity was removed) gets a ticket, stored in the meeting's record with
// the name and location the host sees. The client asks again with it; an
// ask is held open until the host decides (or the settings change) or
// LobbyWait passes. The owner keeps, per meeting, a channel that is closed
// whenever the lobby's state may have changed: an ask takes the channel
// before it reads the meeting, so no decision stored after that read goes
// unseen.

// lobbyWatch returns the channel closed at the meeting's next lobby change.
func (o *owner) lobbyWatch(ctx context.Context, meetingID string) (<-chan struct{}, error) {
	var ch chan struct{}
	err := o.mbox.call(ctx, func() {
		ch = o.lobbyWake[meetingID]
		if ch == nil {
			ch = make(chan struct{})
			o.lobbyWake[meetingID] = ch
		}
	})
	return ch, err
}

// lobbyChanged wakes every ask held for the meeting.
func (o *owner) lobbyChanged(ctx context.Context, meetingID string) error {
	return o.mbox.call(ctx, func() {
		if ch := o.lobbyWake[meetingID]; ch != nil {
			close(ch)
			delete(o.lobbyWake, meetingID)
		}
	})
}

// lobbyAnswer is a join that waits in the lobby: its ticket, and whether
// it was asked again with it (an ask is held open, a first join is not).
type lobbyAnswer struct {
	ticket string
	held   bool
}

func (s *Server) lobbyWait(t string) *api.LobbyWait {
	return &api.LobbyWait{Code: api.CodeLobby, Ticket: t, Wait: s.cfg.LobbyWait,
		Message: "waiting for the host to let you in: ask again with this lobby_ticket"}
}

// admission is who a join is, as decided by the meeting's access rules.
type admission struct {
	name     string
	identity []byte
	from     *participant // the participant this join replaces
	lobby    *lobbyAnswer // set when the join waits instead
}

// admit applies the meeting's access rules to one join, in the update that
// would add it: the join secret was checked. It may change m (a ticket
// added, asked or used up). host is set when the join carries the host
// token: the host is neither locked out nor held in the lobby.
func admit(m *meeting, req api.JoinRequest, name string, loc api.JoinLocation, now time.Time, host bool) (admission, error) {
	a := admission{name: name, identity: req.Identity}
	switch {
	case req.LobbyTicket != "" && req.Replaces != "":
		// A ticket is a newcomer's: it replaces nobody. (Checked first, so
		// that an admitted ticket cannot carry an unproven replaces.)
		return a, badRequest("a join with a lobby_ticket cannot replace a participant")
	case req.LobbyTicket != "":
		t := m.ticket(req.LobbyTicket, now)
		if t == nil {
			return a, apiErr(http.StatusNotFound, api.CodeLobbyExpired, "that lobby ticket is unknown or has expired: join again")
		}
		switch {
		case t.Decision == hoststmt.KindDeny:
			return a, apiErr(http.StatusForbidden, api.CodeLobbyDenied, "the host did not let you in")
		case t.Decision == hoststmt.KindAdmit || !t.Removed && !m.Lobby && !m.Locked:
			// The host let this ticket in, or no longer holds joins in
			// the lobby: it joins as the host saw it.
			a.name, a.identity = t.Name, t.Identity
			m.Tickets = slices.DeleteFunc(m.Tickets, func(x lobbyTicket) bool { return x.Ticket == t.Ticket })
			return a, nil
		}
		t.LastAsk = now
		a.lobby = &lobbyAnswer{ticket: t.Ticket, held: true}
		return a, nil
	case req.Replaces != "":
		old := m.participant(req.Replaces)
		if old == nil {
			return a, badRequest("replaces: no participant %q in this meeting", req.Replaces)
		}
		if old.Removed {
			return a, apiErr(http.StatusForbidden, api.CodeBadRejoinSecret, "the host removed participant %q: it cannot be replaced", req.Replaces)
		}
		if !token.CheckHostToken(req.RejoinSecret, old.RejoinHash) {
			return a, apiErr(http.StatusForbidden, api.CodeBadRejoinSecret, "replaces needs the rejoin_secret that participant %q was given", req.Replaces)
		}
		a.from = old
		return a, nil
	case host:
		return a, nil
	}
	if m.Locked {
		return a, apiErr(http.StatusForbidden, api.CodeMeetingLocked, "the host has locked this meeting: no new joins")
	}
	removed := m.removedIdentity(req.Identity)
	if m.Lobby || removed {
		if len(m.Tickets) >= maxLobbyTickets {
			// Every ticket lives in the meeting's one record: without a
			// bound, joins from a few addresses holding the link would
			// grow it past the store's message limit and break the meeting.
			return a, apiErr(http.StatusServiceUnavailable, api.CodeLobbyFull, "the lobby holds %d waiting joins, as many as it may: try again later", maxLobbyTickets)
		}
		t := lobbyTicket{Ticket: newID("t", 22), Name: name, Location: loc, Identity: req.Identity, Since: now, LastAsk: now, Removed: removed}
		m.Tickets = append(m.Tickets, t)
		a.lobby = &lobbyAnswer{ticket: t.Ticket}
	}
	return a, nil
}

// waiting lists the lobby as the host sees it, oldest first: at most
// limit entries after the ticket after ("" = from the start).
func (m *meeting) waiting(now time.Time, after string, limit int) api.Lobby {
	out := api.Lobby{Waiting: []api.LobbyEntry{}}
	skipping := after != ""
	for _, t := range m.Tickets {
		if t.Decision != "" || now.Sub(t.LastAsk) > lobbyTicketTTL {
			continue
		}
		if skipping {
			skipping = t.Ticket != after
			continue
		}
		if len(out.Waiting) == limit {
			out.More = true
			break
		}
		out.Waiting = append(out.Waiting, api.LobbyEntry{Ticket: t.Ticket, Name: t.Name, Location: t.Location, Since: t.Since, Removed: t.Removed})
	}
	return out
}

// writeLobby answers GET .../lobby with the page ?after= and ?limit= ask
// for. An after that names no waiting ticket (it was decided or expired)
// starts from the beginning, so the host sees who waits.
func writeLobby(w http.ResponseWriter, r *http.Request, m *meeting, now time.Time) {
	limit, e := pageLimit(r, api.LobbyPageMax)
	if e != nil {
		writeError(w, e)
		return
	}
	after := r.URL.Query().Get("after")
	if after != "" && m.ticket(after, now) == nil {
		after = ""
	}
	writeJSON(w, http.StatusOK, m.waiting(now, after, limit))
}

// pageLimit reads ?limit=: 1 or more, default and at most max.
func pageLimit(r *http.Request, max int) (int, *api.Error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return max, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, apiErr(http.StatusBadRequest, "bad_number", "limit=%q is not a whole number from 1 to %d", v, max)
	}
	return min(n, max), nil
}
