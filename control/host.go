package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/hoststmt"
)

// Host actions: settings (lock, lobby), removal and lobby decisions. Each
// needs the host token and, the meeting having a host key, a statement
// signed with it that says what the request asks; the statement is stored
// (so a joiner gets it), passed to every node with the meeting's
// participants (CommandHost, which the nodes hand to their participants)
// and audited. Carrying that out goes through the executor like any plan.

// auditKinds are the audit kinds of accepted host statements.
var auditKinds = map[string]string{
	hoststmt.KindPolicy:   api.AuditHostPolicy,
	hoststmt.KindSettings: api.AuditHostSettings,
	hoststmt.KindRemove:   api.AuditHostRemove,
	hoststmt.KindAdmit:    api.AuditHostAdmit,
	hoststmt.KindDeny:     api.AuditHostDeny,
}

// describeStatement is an accepted statement in words, for the audit log.
func describeStatement(st hoststmt.Statement) string {
	var what string
	switch st.Kind {
	case hoststmt.KindPolicy:
		what = "policy hash " + st.PolicyHash
	case hoststmt.KindSettings:
		what = fmt.Sprintf("locked=%t lobby=%t", st.Locked, st.Lobby)
	case hoststmt.KindAdmit, hoststmt.KindDeny:
		what = fmt.Sprintf("%s lobby ticket of %q", st.Kind, st.Name)
	case hoststmt.KindRemove:
		what = "removed " + st.Participant
		if len(st.Identity) > 0 {
			what += fmt.Sprintf(" (identity %x)", st.Identity[:8])
		}
	}
	return fmt.Sprintf("host statement seq %d: %s", st.Seq, what)
}

// hostActions audits an accepted statement and passes it to every node
// with m's participants (and to extra nodes); pid names a removed
// participant. failed receives the audit append's error.
//
// Lobby decisions are audited and go no further: an admit names its
// ticket, and a ticket is what gets its holder in, so a statement shown to
// the meeting would let any participant take the admitted guest's place
// (past a lock, too). Members have no use for them.
func (s *Server) hostActions(m *meeting, st hoststmt.Statement, pid string, failed *error, extra ...string) []action {
	e := audit.Entry{Kind: auditKinds[st.Kind], Meeting: m.ID, Participant: pid, Reason: describeStatement(st)}
	if st.Kind == hoststmt.KindPolicy {
		e.PolicyHash = st.PolicyHash
	}
	acts := []action{{Kind: actAudit, Meeting: m.ID, Entry: e, Failed: failed}}
	if st.Kind == hoststmt.KindAdmit || st.Kind == hoststmt.KindDeny {
		return acts
	}
	raw, err := json.Marshal(st)
	if err != nil { // a verified statement always encodes
		s.log.Error("encode host statement", "meeting", m.ID, "err", err)
		return acts
	}
	nodes := m.nodeIDs()
	for _, n := range extra {
		if !contains(nodes, n) {
			nodes = append(nodes, n)
		}
	}
	for _, n := range nodes {
		acts = append(acts, action{Kind: actCommand, Meeting: m.ID, Node: n,
			Cmd: cluster.Command{Kind: cluster.CommandHost, Meeting: m.ID, Participant: pid, Statement: raw}})
	}
	return acts
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// carryHost hands a host action's actions to the executor, in order with
// every plan, and waits until they are carried out.
func (s *Server) carryHost(ctx context.Context, acts []action) error {
	done, err := s.owner.handOver(ctx, acts)
	if err != nil {
		return err
	}
	s.exec.wait(ctx, done)
	return nil
}

// handOver gives actions decided outside a plan to the executor.
func (o *owner) handOver(ctx context.Context, acts []action) (<-chan struct{}, error) {
	var done <-chan struct{}
	err := o.mbox.call(ctx, func() { done = o.hand(acts) })
	return done, err
}

// hostRequest reads a host action's meeting and checks the host token
// before the body is read: who asks is checked before what is asked for.
func (s *Server) hostRequest(w http.ResponseWriter, r *http.Request, body any) (*meeting, bool) {
	m, _, err := s.meetings.get(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, toAPIError(err))
		return nil, false
	}
	if e := hostCheck(r.Header.Get(api.AuthHeader), m); e != nil {
		writeError(w, e)
		return nil, false
	}
	// An empty body is a request without a statement, refused as such.
	if body != nil && r.ContentLength != 0 {
		if e := decodeBody(w, r, body); e != nil {
			writeError(w, e)
			return nil, false
		}
	}
	return m, true
}

func (s *Server) handleSettings(w http.ResponseWriter, r *http.Request) {
	var req api.Settings
	if _, ok := s.hostRequest(w, r, &req); !ok {
		return
	}
	ctx, cancel := opContext(r)
	defer cancel()
	auth := r.Header.Get(api.AuthHeader)
	m, _, err := s.meetings.update(ctx, r.PathValue("id"), func(m *meeting) error {
		if e := hostCheck(auth, m); e != nil {
			return e
		}
		if e := checkStatement(m, req.Statement, hoststmt.KindSettings, func(st *hoststmt.Statement) string {
			if st.Locked != req.Locked || st.Lobby != req.Lobby {
				return fmt.Sprintf("it says locked=%t lobby=%t, the request locked=%t lobby=%t", st.Locked, st.Lobby, req.Locked, req.Lobby)
			}
			return ""
		}); e != nil {
			return e
		}
		m.Locked, m.Lobby = req.Locked, req.Lobby
		m.Host.accept(*req.Statement)
		return nil
	})
	if err != nil {
		s.fail(w, "settings", err)
		return
	}
	s.log.Info("host settings", "meeting", m.ID, "locked", m.Locked, "lobby", m.Lobby)
	// Asks held in the lobby see the new settings (the lobby off lets them in).
	_ = s.owner.lobbyChanged(ctx, m.ID)
	var failed error
	if err := errors.Join(s.carryHost(ctx, s.hostActions(m, *req.Statement, "", &failed)), failed); err != nil {
		s.fail(w, "settings", err)
		return
	}
	v, err := s.view(m)
	if err != nil {
		s.fail(w, "settings", err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) handleRemove(w http.ResponseWriter, r *http.Request) {
	var req api.Removal
	if _, ok := s.hostRequest(w, r, &req); !ok {
		return
	}
	ctx, cancel := opContext(r)
	defer cancel()
	auth, pid := r.Header.Get(api.AuthHeader), r.PathValue("pid")
	var gone []participant // the removed participants that were still on a node
	m, _, err := s.meetings.update(ctx, r.PathValue("id"), func(m *meeting) error {
		gone = nil
		if e := hostCheck(auth, m); e != nil {
			return e
		}
		if len(m.HostKey) > 0 && m.participant(pid) == nil {
			return apiErr(http.StatusNotFound, api.CodeNotParticipant, "no participant %q in this meeting", pid)
		}
		if e := checkStatement(m, req.Statement, hoststmt.KindRemove, func(st *hoststmt.Statement) string {
			if st.Participant != pid {
				return fmt.Sprintf("it removes %q, the request %q", st.Participant, pid)
			}
			return ""
		}); e != nil {
			return e
		}
		gone = removeParticipant(m, pid, req.Statement.Identity, s.now().UTC())
		m.Host.accept(*req.Statement)
		return nil
	})
	if err != nil {
		s.fail(w, "remove participant", err)
		return
	}
	s.log.Info("participant removed by the host", "meeting", m.ID, "participant", pid)
	var extra []string
	for _, p := range gone {
		_ = s.owner.left(ctx, p.Node.ID)
		extra = append(extra, p.Node.ID)
	}
	var failed error
	acts := s.hostActions(m, *req.Statement, pid, &failed, extra...)
	// The node hands the statement out and then disconnects the
	// participant; the kick after it is for a node that only kicks.
	for _, p := range gone {
		acts = append(acts, action{Kind: actCommand, Meeting: m.ID, Node: p.Node.ID,
			Cmd: cluster.Command{Kind: cluster.CommandKick, Meeting: m.ID, Participant: p.ID, Reason: api.ReasonRemoved}})
	}
	if err := errors.Join(s.carryHost(ctx, acts), failed); err != nil {
		s.fail(w, "remove participant", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// removeParticipant records the host's removal of pid (and of whoever took
// over from it): its identity keys, from the statement and from its join,
// join through the lobby only, and it is no longer in the meeting. It
// returns the removed participants that were still on a node.
func removeParticipant(m *meeting, pid string, identity []byte, now time.Time) []participant {
	rec := removal{Participant: pid, At: now}
	addID := func(id []byte) {
		if len(id) > 0 && !containsKey(rec.Identities, id) {
			rec.Identities = append(rec.Identities, id)
		}
	}
	addID(identity)
	var gone []participant
	for i := range m.Participants {
		p := &m.Participants[i]
		if p.ID != pid && p.Replaces != pid {
			continue
		}
		addID(p.Identity)
		p.Removed = true
		if p.Left == nil {
			p.Left, p.LeftReason = &now, api.ReasonRemoved
			gone = append(gone, *p)
		}
	}
	m.Removed = append(m.Removed, rec)
	return gone
}

func containsKey(keys [][]byte, k []byte) bool {
	for _, x := range keys {
		if bytes.Equal(x, k) {
			return true
		}
	}
	return false
}

func (s *Server) handleLobby(w http.ResponseWriter, r *http.Request) {
	m, ok := s.hostRequest(w, r, nil)
	if !ok {
		return
	}
	writeLobby(w, r, m, s.now())
}

func (s *Server) handleLobbyDecision(w http.ResponseWriter, r *http.Request) {
	var req api.LobbyDecision
	if _, ok := s.hostRequest(w, r, &req); !ok {
		return
	}
	ctx, cancel := opContext(r)
	defer cancel()
	auth, ticket := r.Header.Get(api.AuthHeader), r.PathValue("ticket")
	kind := hoststmt.KindDeny
	if req.Admit {
		kind = hoststmt.KindAdmit
	}
	m, _, err := s.meetings.update(ctx, r.PathValue("id"), func(m *meeting) error {
		if e := hostCheck(auth, m); e != nil {
			return e
		}
		now := s.now().UTC()
		t := m.ticket(ticket, now)
		if t == nil {
			return apiErr(http.StatusNotFound, api.CodeLobbyExpired, "no lobby ticket %q waiting (it may have expired)", ticket)
		}
		if e := checkStatement(m, req.Statement, kind, func(st *hoststmt.Statement) string {
			if st.Ticket != t.Ticket || st.Name != t.Name {
				return fmt.Sprintf("it names ticket %q of %q, the lobby has %q of %q", st.Ticket, st.Name, t.Ticket, t.Name)
			}
			return ""
		}); e != nil {
			return e
		}
		// The decision lives as long as an unanswered ticket would.
		t.Decision, t.LastAsk = kind, now
		m.Host.accept(*req.Statement)
		return nil
	})
	if err != nil {
		s.fail(w, "lobby decision", err)
		return
	}
	_ = s.owner.lobbyChanged(ctx, m.ID)
	var failed error
	if err := errors.Join(s.carryHost(ctx, s.hostActions(m, *req.Statement, "", &failed)), failed); err != nil {
		s.fail(w, "lobby decision", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
