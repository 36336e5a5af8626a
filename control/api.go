package control

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/geo"
	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/token"
)

func (s *Server) handleConfig(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, api.Config{Floor: s.floor, TrustClientLocation: s.cfg.TrustClientLocation, PublicKey: s.PublicKey()})
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
	ctx, cancel := opContext(r)
	defer cancel()
	created, err := s.createMeeting(ctx, title, pol, eff)
	if err != nil {
		s.fail(w, "create meeting", err)
		return
	}
	writeJSON(w, http.StatusCreated, created)
}

// createMeeting stores a new meeting with its host token and audits it.
func (s *Server) createMeeting(ctx context.Context, title string, pol policy.Policy, eff policy.Effective) (api.CreatedMeeting, error) {
	hostToken, hostHash, err := token.NewHostToken()
	if err != nil {
		return api.CreatedMeeting{}, fmt.Errorf("host token: %w", err)
	}
	now := s.now().UTC()
	m := &meeting{ID: newID("", 10), Title: title, Policy: pol, HostTokenHash: hostHash, Created: now}
	m.PolicyHistory = []api.PolicyChange{{At: now, Policy: pol, Effective: eff.Policy(), Hash: eff.Hash()}}
	if err := s.meetings.create(ctx, m); err != nil {
		return api.CreatedMeeting{}, err
	}
	if _, err := s.audit.append(ctx, audit.Entry{
		Kind: audit.KindMeetingCreated, Meeting: m.ID, PolicyHash: eff.Hash(),
		Reason: "effective policy: " + describe(eff.Policy()),
	}); err != nil {
		return api.CreatedMeeting{}, fmt.Errorf("audit meeting creation: %w", err)
	}
	v, err := s.view(m)
	if err != nil {
		return api.CreatedMeeting{}, fmt.Errorf("view meeting: %w", err)
	}
	s.log.Info("meeting created", "meeting", m.ID, "policy_hash", v.PolicyHash)
	return api.CreatedMeeting{Meeting: v, HostToken: hostToken}, nil
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

// hostCheck answers 401 without credentials and 403 with wrong ones; auth
// is the request's Authorization header.
func hostCheck(auth string, m *meeting) *api.Error {
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if auth == "" || !ok || strings.TrimSpace(tok) == "" {
		return apiErr(http.StatusUnauthorized, api.CodeUnauthorized, "changing the policy needs the host token: Authorization: Bearer <host_token>")
	}
	if !token.CheckHostToken(strings.TrimSpace(tok), m.HostTokenHash) {
		return apiErr(http.StatusForbidden, api.CodeForbidden, "only the meeting's host may change its policy")
	}
	return nil
}

func (s *Server) handlePutPolicy(w http.ResponseWriter, r *http.Request) {
	id, auth := r.PathValue("id"), r.Header.Get("Authorization")
	ctx, cancel := opContext(r)
	defer cancel()
	// Who asks is checked before what is asked for.
	m, _, err := s.meetings.get(ctx, id)
	if err != nil {
		writeError(w, toAPIError(err))
		return
	}
	if e := hostCheck(auth, m); e != nil {
		writeError(w, e)
		return
	}
	pol, eff, ok := s.readPolicy(w, r)
	if !ok {
		return
	}
	v, err := s.changePolicy(ctx, id, auth, pol, eff)
	if err != nil {
		s.fail(w, "change policy", err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// changePolicy gives a meeting a new policy for the host (auth), audits it,
// and enforces it before answering: relays to now-blocked nodes close and
// moves start before the host gets the answer.
func (s *Server) changePolicy(ctx context.Context, id, auth string, pol policy.Policy, eff policy.Effective) (api.Meeting, error) {
	// While the change is stored and its entry written, the tick leaves
	// the meeting alone, so no move is logged before the change.
	if err := s.owner.hold(ctx, id); err != nil {
		return api.Meeting{}, err
	}
	m, rev, err := s.meetings.update(ctx, id, func(m *meeting) error {
		if e := hostCheck(auth, m); e != nil {
			return e
		}
		m.Policy = pol
		m.PolicyHistory = append(m.PolicyHistory, api.PolicyChange{At: s.now().UTC(), Policy: pol, Effective: eff.Policy(), Hash: eff.Hash()})
		return nil
	})
	if err != nil {
		_ = s.owner.unhold(ctx, id)
		return api.Meeting{}, fmt.Errorf("update policy: %w", err)
	}
	s.log.Info("policy changed", "meeting", id, "policy_hash", eff.Hash())
	var auditErr error
	opts := planOpts{unhold: true, lead: []action{{Kind: actAudit, Meeting: id, Failed: &auditErr, Entry: audit.Entry{
		Kind: audit.KindPolicyChange, Meeting: id, PolicyHash: eff.Hash(),
		Reason: "effective policy: " + describe(eff.Policy()),
	}}}}
	// The policy is in force before the host gets the answer: relays to
	// now-blocked nodes are closed and moves started. A join stored
	// meanwhile makes this read stale; a fresh read is planned then.
	for range 5 {
		p, err := s.enforce(ctx, m, rev, opts)
		if err != nil {
			return api.Meeting{}, err
		}
		if !p.stale {
			break
		}
		opts = planOpts{}
		if m, rev, err = s.meetings.get(ctx, id); err != nil {
			return api.Meeting{}, err
		}
	}
	if auditErr != nil {
		return api.Meeting{}, fmt.Errorf("audit policy change: %w", auditErr)
	}
	return s.view(m)
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
	loc, err := s.cfg.Locator.Locate(r, locate.Hint(req.Location))
	if err != nil {
		writeError(w, toAPIError(err))
		return
	}
	ctx, cancel := opContext(r)
	defer cancel()
	resp, err := s.join(ctx, id, name, loc, req.Replaces)
	if err != nil {
		s.fail(w, "join", err) // a refusal is answered with its code, unlogged
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) handleRouting(w http.ResponseWriter, r *http.Request) {
	m, _, err := s.meetings.get(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, toAPIError(err))
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

func (s *Server) auditScope(r *http.Request) (meeting string, all bool, e *api.Error) {
	meeting = r.URL.Query().Get("meeting")
	if meeting == "" {
		return "", true, nil
	}
	if _, _, err := s.meetings.get(r.Context(), meeting); err != nil {
		return "", false, toAPIError(err)
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

func (s *Server) handleAuditExport(w http.ResponseWriter, r *http.Request) {
	meeting, all, e := s.auditScope(r)
	if e != nil {
		writeError(w, e)
		return
	}
	entries, heads, err := s.audit.export(r.Context(), meeting, all)
	if err != nil {
		s.fail(w, "read audit log", err)
		return
	}
	h := audit.Header{Format: audit.Format, PublicKey: base64.StdEncoding.EncodeToString(s.PublicKey()), Meeting: meeting, Exported: s.now().UTC()}
	t := audit.SignHeads(s.cfg.Key, heads)
	w.Header().Set("Content-Type", "application/x-ndjson")
	if err := audit.WriteExport(w, h, entries, t); err != nil {
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
