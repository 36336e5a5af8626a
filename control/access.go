package control

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/token"
)

// Who may do what to a meeting. The join secret, the host token, rejoin
// secrets and the operator token are compared as hashes in constant time
// (token.CheckHostToken); only their hashes are stored.

// bearer is the token of an "Authorization: Bearer" header, or "".
func bearer(r *http.Request) string {
	tok, ok := strings.CutPrefix(r.Header.Get(api.AuthHeader), "Bearer ")
	if !ok {
		return ""
	}
	return strings.TrimSpace(tok)
}

// operatorOK reports whether tok is the deployment's operator token. With
// no operator token configured, nobody is the operator.
func (s *Server) operatorOK(tok string) bool {
	if s.operatorHash == "" || tok == "" {
		return false
	}
	return token.CheckHostToken(tok, s.operatorHash)
}

// operatorCheck guards what spans every meeting: 401 without the operator
// token or with another (a wrong token says nothing of which meeting it
// might open).
func (s *Server) operatorCheck(r *http.Request) *api.Error {
	tok := bearer(r)
	if tok == "" {
		return apiErr(http.StatusUnauthorized, api.CodeUnauthorized, "every meeting's audit log and report need the operator token: Authorization: Bearer <operator token>")
	}
	if !s.operatorOK(tok) {
		return apiErr(http.StatusUnauthorized, api.CodeUnauthorized, "that is not the operator token")
	}
	return nil
}

// readerCheck guards one meeting's routing, report and audit log: its
// host token, its join secret or the operator token.
func (s *Server) readerCheck(r *http.Request, m *meeting) *api.Error {
	tok := bearer(r)
	if tok == "" {
		return apiErr(http.StatusUnauthorized, api.CodeUnauthorized, "a meeting's routing, report and audit log need its host token or join secret: Authorization: Bearer <token>")
	}
	if token.CheckHostToken(tok, m.HostTokenHash) || token.CheckHostToken(tok, m.JoinSecretHash) || s.operatorOK(tok) {
		return nil
	}
	return apiErr(http.StatusForbidden, api.CodeForbidden, "neither this meeting's host token nor its join secret")
}

// hostCheck answers 401 without credentials and 403 with wrong ones; auth
// is the request's Authorization header.
func hostCheck(auth string, m *meeting) *api.Error {
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if auth == "" || !ok || strings.TrimSpace(tok) == "" {
		return apiErr(http.StatusUnauthorized, api.CodeUnauthorized, "host actions need the host token: Authorization: Bearer <host_token>")
	}
	if !token.CheckHostToken(strings.TrimSpace(tok), m.HostTokenHash) {
		return apiErr(http.StatusForbidden, api.CodeForbidden, "only the meeting's host may do this")
	}
	return nil
}

func badStatement(format string, args ...any) *api.Error {
	return apiErr(http.StatusBadRequest, api.CodeBadStatement, format, args...)
}

// checkStatement verifies a host statement for meeting m: it must be
// present, of kind, signed by the meeting's host key, newer than the last
// accepted statement of its kind, and say what the request asks (match
// returns why not, or ""). A meeting without a host key has no host
// actions: 409 no_host_key.
func checkStatement(m *meeting, st *hoststmt.Statement, kind string, match func(*hoststmt.Statement) string) *api.Error {
	if len(m.HostKey) == 0 {
		return apiErr(http.StatusConflict, api.CodeNoHostKey, "this meeting was made without a host key: it has no host statements")
	}
	return verifyStatement(m.HostKey, m.Host.Seq[kind], st, kind, match)
}

func verifyStatement(hostKey []byte, lastSeq uint64, st *hoststmt.Statement, kind string, match func(*hoststmt.Statement) string) *api.Error {
	if st == nil {
		return badStatement("a %s statement signed with the host key is required", kind)
	}
	if st.Kind != kind {
		return badStatement("a %s statement is required, not %q", kind, st.Kind)
	}
	if err := st.Verify(ed25519.PublicKey(hostKey)); err != nil {
		return badStatement("the %s statement does not verify with the meeting's host key: %v", kind, err)
	}
	if st.Seq <= lastSeq {
		return badStatement("the %s statement's seq %d is not after the last accepted (%d)", kind, st.Seq, lastSeq)
	}
	if why := match(st); why != "" {
		return badStatement("the %s statement does not match the request: %s", kind, why)
	}
	return nil
}

// accept records a verified statement as the newest of its kind.
func (h *hostRecord) accept(st hoststmt.Statement) {
	if h.Seq == nil {
		h.Seq = map[string]uint64{}
	}
	h.Seq[st.Kind] = st.Seq
	switch st.Kind {
	case hoststmt.KindPolicy:
		h.Policy = &st
	case hoststmt.KindSettings:
		h.Settings = &st
	case hoststmt.KindRemove:
		h.Removals = append(h.Removals, st)
	}
}

// hostState is what a joiner needs to check the host's statements.
func hostState(m *meeting, policyHash string) api.HostState {
	hs := api.HostState{Key: m.HostKey, PolicyHash: policyHash, Statements: []hoststmt.Statement{}}
	if m.Host.Policy != nil {
		hs.Statements = append(hs.Statements, *m.Host.Policy)
	}
	if m.Host.Settings != nil {
		hs.Statements = append(hs.Statements, *m.Host.Settings)
	}
	hs.Statements = append(hs.Statements, m.Host.Removals...)
	return hs
}

// removedIdentity reports whether identity was removed from m.
func (m *meeting) removedIdentity(identity []byte) bool {
	if len(identity) == 0 {
		return false
	}
	for _, r := range m.Removed {
		for _, id := range r.Identities {
			if bytes.Equal(id, identity) {
				return true
			}
		}
	}
	return false
}

// lobbyTicketTTL is how long a lobby ticket lives without an ask.
const lobbyTicketTTL = 10 * time.Minute

// maxLobbyTickets bounds a meeting's tickets, asked about or decided within
// lobbyTicketTTL: far more people than a host admits by hand.
const maxLobbyTickets = 200

// ticket finds a live lobby ticket in constant time per comparison.
func (m *meeting) ticket(t string, now time.Time) *lobbyTicket {
	if t == "" {
		return nil
	}
	want := sha256.Sum256([]byte(t))
	for i := range m.Tickets {
		got := sha256.Sum256([]byte(m.Tickets[i].Ticket))
		if subtle.ConstantTimeCompare(want[:], got[:]) == 1 && now.Sub(m.Tickets[i].LastAsk) <= lobbyTicketTTL {
			return &m.Tickets[i]
		}
	}
	return nil
}

// pruneTickets drops tickets not asked about for lobbyTicketTTL.
func (m *meeting) pruneTickets(now time.Time) {
	kept := m.Tickets[:0]
	for _, t := range m.Tickets {
		if now.Sub(t.LastAsk) <= lobbyTicketTTL {
			kept = append(kept, t)
		}
	}
	m.Tickets = kept
}

// publicURL is the control plane's address as clients reach it: the
// configured one, or the one this request came to.
func (s *Server) publicURL(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return strings.TrimRight(s.cfg.PublicURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
