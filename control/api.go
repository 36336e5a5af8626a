package control

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/geo"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/nodecert"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/token"
)

func (s *Server) handleConfig(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, api.Config{Floor: s.floor, TrustClientLocation: s.cfg.TrustClientLocation, PublicKey: s.PublicKey(),
		AuditVerifierKey: s.audit.vkey})
}

func (s *Server) handleGeo(w http.ResponseWriter, _ *http.Request) {
	groups := map[string][]string{}
	for _, g := range geo.GroupNames() {
		groups[g], _ = geo.Group(g)
	}
	writeJSON(w, http.StatusOK, api.Geo{Countries: geo.Countries(), Regions: geo.Regions(), Groups: groups})
}

func (s *Server) handleNodes(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.owner.live().list())
}

// readPolicy reads a policy from the request body and combines it with the
// floor, answering the error itself when it cannot.
func (s *Server) readPolicy(w http.ResponseWriter, r *http.Request) (policy.Policy, policy.Effective, bool) {
	var req policy.Policy
	if e := decodeBody(w, r, &req); e != nil {
		writeError(w, e)
		return policy.Policy{}, policy.Effective{}, false
	}
	pol, eff, err := s.effective(req)
	if err != nil {
		writeError(w, toAPIError(err))
		return policy.Policy{}, policy.Effective{}, false
	}
	return pol, eff, true
}

// effective normalizes a meeting's own policy and combines it with the
// floor.
func (s *Server) effective(p policy.Policy) (policy.Policy, policy.Effective, error) {
	pol, err := p.Normalize()
	if err != nil {
		return policy.Policy{}, policy.Effective{}, err
	}
	eff, err := policy.Combine(s.floor, pol)
	if err != nil {
		return policy.Policy{}, policy.Effective{}, err
	}
	return pol, eff, nil
}

// handlePreview answers what a policy would mean here, before a meeting
// is created with it: the effective rules and the live nodes they leave.
func (s *Server) handlePreview(w http.ResponseWriter, r *http.Request) {
	pol, eff, ok := s.readPolicy(w, r)
	if !ok {
		return
	}
	v, err := s.view(&meeting{Policy: pol})
	if err != nil {
		s.fail(w, "preview", err)
		return
	}
	writeJSON(w, http.StatusOK, api.Preview{
		Policy: pol, Floor: s.floor, EffectivePolicy: eff.Policy(), PolicyHash: eff.Hash(),
		AllowedNodes: v.AllowedNodes, Warnings: v.Warnings,
		Rules: eff.Rules(), EnrollmentKey: s.cfg.EnrollmentKey,
	})
}

func (s *Server) view(m *meeting) (api.Meeting, error) {
	eff, err := policy.Combine(s.floor, m.Policy)
	if err != nil {
		return api.Meeting{}, err
	}
	allowed := s.allowedHealthy(eff)
	v := api.Meeting{
		ID: m.ID, Title: m.Title, Created: m.Created,
		Policy: m.Policy, Floor: s.floor, EffectivePolicy: eff.Policy(), PolicyHash: eff.Hash(),
		Participants: len(m.active()), AllowedNodes: allowed, Warnings: []string{},
		Locked: m.Locked, Lobby: m.Lobby, HostKey: m.HostKey,
	}
	if m.Host.Policy != nil {
		st := *m.Host.Policy // the view is read outside the meeting's lock
		v.PolicyStatement = &st
	}
	if len(allowed) == 0 {
		v.Warnings = append(v.Warnings, "no live node is allowed by this policy: joins will be refused until one is")
	}
	return v, nil
}

func (s *Server) allowedHealthy(eff policy.Effective) []string {
	out := []string{}
	for _, n := range s.owner.live().list() {
		if n.Healthy && n.Certified && eff.Allows(n.Country, n.Region) {
			out = append(out, n.ID)
		}
	}
	return out
}

// cleanText checks a free-text field: at most max printable characters
// once trimmed; empty becomes def.
func cleanText(v, field string, max int, def string) (string, *api.Error) {
	v = strings.TrimSpace(v)
	bad := !utf8.ValidString(v) || utf8.RuneCountInString(v) > max
	for _, r := range v {
		bad = bad || r < 0x20 || r == 0x7f
	}
	if bad {
		return "", apiErr(http.StatusBadRequest, api.CodeBadRequest, "%s must be at most %d printable characters", field, max)
	}
	if v == "" {
		v = def
	}
	return v, nil
}

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req api.CreateRequest
	if e := decodeBody(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	title, e := cleanText(req.Title, "title", 200, "Meeting")
	if e != nil {
		writeError(w, e)
		return
	}
	pol, eff, err := s.effective(req.Policy)
	if err != nil {
		writeError(w, toAPIError(err))
		return
	}
	if e := s.checkCreateStatement(req, eff); e != nil {
		writeError(w, e)
		return
	}
	ctx, cancel := opContext(r)
	defer cancel()
	created, err := s.createMeeting(ctx, s.publicURL(r), title, req, pol, eff)
	if err != nil {
		s.fail(w, "create meeting", err)
		return
	}
	writeJSON(w, http.StatusCreated, created)
}

// checkCreateStatement checks a new meeting's host key and the host's
// statement of its policy: it must verify with the key, name the effective
// policy's hash and rules and the deployment's enrollment key, as POST
// /api/policy/preview answers them. Every meeting has a host key: its
// members check their nodes against the host's statement, not the
// server's word.
func (s *Server) checkCreateStatement(req api.CreateRequest, eff policy.Effective) *api.Error {
	if len(req.HostKey) == 0 {
		return apiErr(http.StatusBadRequest, api.CodeNoHostKey, "a meeting needs a host_key and its signed policy_statement: members check where their media goes against the host's statement")
	}
	if len(req.HostKey) != ed25519.PublicKeySize {
		return badRequest("host_key must be a %d-byte Ed25519 public key", ed25519.PublicKeySize)
	}
	return verifyStatement(req.HostKey, 0, req.PolicyStatement, hoststmt.KindPolicy, func(st *hoststmt.Statement) string {
		return s.policyStatementMismatch(st, eff)
	})
}

// policyStatementMismatch says what is wrong with a policy statement for
// eff here, or "". Its rules hash to its policy hash (hoststmt checks), so
// the same hash means the same rules.
func (s *Server) policyStatementMismatch(st *hoststmt.Statement, eff policy.Effective) string {
	if st.PolicyHash != eff.Hash() {
		return fmt.Sprintf("it names policy hash %s, the effective policy's is %s", st.PolicyHash, eff.Hash())
	}
	if !st.EnrollmentKey.Equal(s.cfg.EnrollmentKey) {
		return fmt.Sprintf("it names enrollment key %s, this deployment's is %s", nodecert.KeyID(st.EnrollmentKey), nodecert.KeyID(s.cfg.EnrollmentKey))
	}
	return ""
}

// createMeeting stores a new meeting with the hashes of its host token and
// join secret, and audits it. base is the control plane's public URL.
func (s *Server) createMeeting(ctx context.Context, base, title string, req api.CreateRequest, pol policy.Policy, eff policy.Effective) (api.CreatedMeeting, error) {
	hostToken, hostHash, err := token.NewHostToken()
	if err != nil {
		return api.CreatedMeeting{}, fmt.Errorf("host token: %w", err)
	}
	secret, secretHash, err := token.NewHostToken()
	if err != nil {
		return api.CreatedMeeting{}, fmt.Errorf("join secret: %w", err)
	}
	now := s.now().UTC()
	m := &meeting{ID: newID("", 10), Title: title, Policy: pol, HostTokenHash: hostHash, JoinSecretHash: secretHash, Created: now,
		HostKey: req.HostKey, Lobby: req.Lobby}
	if req.PolicyStatement != nil {
		m.Host.accept(*req.PolicyStatement)
	}
	m.PolicyHistory = []api.PolicyChange{{At: now, Policy: pol, Effective: eff.Policy(), Hash: eff.Hash()}}
	if err := s.meetings.create(ctx, m); err != nil {
		return api.CreatedMeeting{}, err
	}
	reason := "effective policy: " + describe(eff.Policy())
	if len(m.HostKey) > 0 {
		reason += "; host key " + hoststmt.Fingerprint(m.HostKey)
	}
	if m.Lobby {
		reason += "; lobby on"
	}
	if _, err := s.audit.append(ctx, audit.Entry{
		Kind: audit.KindMeetingCreated, Meeting: m.ID, PolicyHash: eff.Hash(), Reason: reason,
	}); err != nil {
		return api.CreatedMeeting{}, fmt.Errorf("audit meeting creation: %w", err)
	}
	v, err := s.view(m)
	if err != nil {
		return api.CreatedMeeting{}, fmt.Errorf("view meeting: %w", err)
	}
	s.log.Info("meeting created", "meeting", m.ID, "policy_hash", v.PolicyHash)
	link := api.Link{Server: base, Meeting: m.ID, Secret: secret}
	if len(m.HostKey) > 0 {
		link.HostFingerprint = hoststmt.Fingerprint(m.HostKey)
	}
	hostLink := link
	hostLink.HostToken = hostToken
	return api.CreatedMeeting{Meeting: v, HostToken: hostToken, JoinSecret: secret, JoinURL: link.String(), HostURL: hostLink.String()}, nil
}

func (s *Server) handleGetMeeting(w http.ResponseWriter, r *http.Request) {
	m, _, err := s.meetings.get(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, toAPIError(err))
		return
	}
	v, err := s.view(m)
	if err != nil {
		s.fail(w, "view meeting", err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req api.JoinRequest
	if e := decodeBody(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	name, e := cleanText(req.Name, "name", 64, "Guest")
	if e != nil {
		writeError(w, e)
		return
	}
	if n := len(req.Identity); n != 0 && n != ed25519.PublicKeySize {
		writeError(w, badRequest("identity must be a %d-byte Ed25519 public key", ed25519.PublicKeySize))
		return
	}
	loc, err := s.cfg.Locator.Locate(r, locate.Hint(req.Location))
	if err != nil {
		writeError(w, toAPIError(err))
		return
	}
	// As opContext, with room for an ask held in the lobby.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), opTimeout+s.cfg.LobbyWait)
	defer cancel()
	resp, wait, err := s.join(ctx, r.Context(), id, joinAsk{req: req, name: name, loc: loc, bearer: bearer(r), addr: s.clientAddr(r)})
	if err != nil {
		s.fail(w, "join", err) // a refusal is answered with its code, unlogged
		return
	}
	if wait != nil {
		writeJSON(w, http.StatusAccepted, wait)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) handleRouting(w http.ResponseWriter, r *http.Request) {
	m, ok := s.readRequest(w, r)
	if !ok {
		return
	}
	eff, err := policy.Combine(s.floor, m.Policy)
	if err != nil {
		s.fail(w, "routing", err)
		return
	}
	v := api.Routing{Meeting: m.ID, PolicyHash: eff.Hash(), EffectivePolicy: eff.Policy(), Participants: []api.RoutingEntry{}, Nodes: []api.RoutingNode{}, Relays: []api.RoutingRelay{}}
	live := s.owner.live()
	perNode := map[string]int{}
	for _, p := range m.active() {
		moving := live.pending[m.ID].moving(p.ID)
		if moving == "" && !eff.Allows(p.Node.Country, p.Node.Region) {
			moving = api.ReasonPolicyChange // enforcement is about to ask
		}
		v.Participants = append(v.Participants, api.RoutingEntry{ID: p.ID, Name: p.Name, Node: p.Node, Joined: p.Joined, Moving: moving, Replaces: p.Replaces})
		if perNode[p.Node.ID] == 0 {
			v.Nodes = append(v.Nodes, api.RoutingNode{PlacedNode: p.Node, Healthy: live.node(p.Node.ID).Healthy})
		}
		perNode[p.Node.ID]++
	}
	for i := range v.Nodes {
		v.Nodes[i].Participants = perNode[v.Nodes[i].ID]
	}
	v.Relays = meetingRelays(live, m.ID, eff)
	writeJSON(w, http.StatusOK, v)
}

// readRequest reads the meeting of a request for its routing or report,
// which need its host token, its join secret or the operator token.
func (s *Server) readRequest(w http.ResponseWriter, r *http.Request) (*meeting, bool) {
	m, _, err := s.meetings.get(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, toAPIError(err))
		return nil, false
	}
	if e := s.readerCheck(r, m); e != nil {
		writeError(w, e)
		return nil, false
	}
	return m, true
}

// auditScope is what an audit request may read: one meeting's chain (with
// its host token, join secret or the operator token) or, with the operator
// token alone, every chain.
func (s *Server) auditScope(r *http.Request) (meeting string, all bool, e *api.Error) {
	meeting = r.URL.Query().Get("meeting")
	if meeting == "" {
		if e := s.operatorCheck(r); e != nil {
			return "", false, e
		}
		return "", true, nil
	}
	m, _, err := s.meetings.get(r.Context(), meeting)
	if err != nil {
		return "", false, toAPIError(err)
	}
	if e := s.readerCheck(r, m); e != nil {
		return "", false, e
	}
	return meeting, false, nil
}

func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request) {
	meeting, all, e := s.auditScope(r)
	if e != nil {
		writeError(w, e)
		return
	}
	entries, err := s.audit.entries(r.Context(), meeting, all)
	if err != nil {
		s.fail(w, "read audit log", err)
		return
	}
	writeJSON(w, http.StatusOK, api.AuditEntries{PublicKey: s.PublicKey(), Entries: entries})
}

// handleAuditExport answers an export (format 2, audit.WriteExport)
// proved against a checkpoint signed for it: every entry of the log up to
// it, or a meeting's evidence pack (its entries in that tree, each with
// its inclusion proof).
func (s *Server) handleAuditExport(w http.ResponseWriter, r *http.Request) {
	meeting, all, e := s.auditScope(r)
	if e != nil {
		writeError(w, e)
		return
	}
	x, err := s.audit.export(r.Context(), meeting, all)
	if err != nil {
		s.fail(w, "export audit log", err)
		return
	}
	x.Header.Exported = s.now().UTC()
	w.Header().Set("Content-Type", "application/x-ndjson")
	if err := audit.WriteExport(w, x); err != nil {
		s.log.Warn("audit export interrupted", "err", err)
	}
}

// fail answers an unexpected error, logging the detail the client must
// not see.
func (s *Server) fail(w http.ResponseWriter, what string, err error) {
	ae := toAPIError(err)
	if ae.Status >= 500 && ae.Code == api.CodeInternal {
		s.log.Error(what, "err", err)
	}
	writeError(w, ae)
}

func describe(p policy.Policy) string {
	parts := []string{}
	if len(p.BlockedCountries) > 0 {
		parts = append(parts, "blocked countries "+strings.Join(p.BlockedCountries, ","))
	}
	if len(p.BlockedRegions) > 0 {
		parts = append(parts, "blocked regions "+strings.Join(p.BlockedRegions, ","))
	}
	if len(p.AllowedCountries) > 0 {
		parts = append(parts, "only "+strings.Join(p.AllowedCountries, ","))
	}
	if len(parts) == 0 {
		return "no restrictions"
	}
	return strings.Join(parts, "; ")
}

// meetingRelays lists the relay links of a meeting that nodes report, each
// once, from the dialling side. A link the policy does not allow is marked
// closing: enforcement closes it at once (and a test that polls can tell
// whether it really goes).
func meetingRelays(live *liveView, meetingID string, eff policy.Effective) []api.RoutingRelay {
	out := []api.RoutingRelay{}
	for _, ns := range live.nodes {
		if !ns.Healthy {
			continue
		}
		for _, l := range ns.Relays {
			if l.Meeting != meetingID || !l.Dialer {
				continue
			}
			peer := live.node(l.Peer)
			out = append(out, api.RoutingRelay{
				From:      api.PlacedNode{ID: ns.Info.ID, Country: ns.Info.Country, Region: ns.Info.Region},
				To:        api.PlacedNode{ID: l.Peer, Country: peer.Info.Country, Region: peer.Info.Region},
				Connected: l.Connected,
				Since:     l.Since,
				Closing: live.pending[meetingID].closing(ns.Info.ID, l.Peer) ||
					!eff.Allows(ns.Info.Country, ns.Info.Region) || !eff.Allows(peer.Info.Country, peer.Info.Region) ||
					!ns.Cert.ok || !peer.Cert.ok,
			})
		}
	}
	return out
}
