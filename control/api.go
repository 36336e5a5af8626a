package control

import (
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/oakmeet/oakmeet/api"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/geo"
	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/placement"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/token"
	"github.com/oakmeet/oakmeet/turncred"
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
	writeJSON(w, http.StatusOK, s.nodes.list())
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
	for _, n := range s.nodes.list() {
		if n.Healthy && eff.Allows(n.Country, n.Region) {
			out = append(out, n.ID)
		}
	}
	return out
}

func cleanText(s string, max int) (string, bool) {
	s = strings.TrimSpace(s)
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > max {
		return "", false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", false
		}
	}
	return s, true
}

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req api.CreateRequest
	if e := decodeBody(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	title, ok := cleanText(req.Title, 200)
	if !ok {
		writeError(w, apiErr(http.StatusBadRequest, api.CodeBadRequest, "title must be at most 200 printable characters"))
		return
	}
	if title == "" {
		title = "Meeting"
	}
	pol, eff, err := s.effective(req.Policy)
	if err != nil {
		writeError(w, toAPIError(err))
		return
	}
	hostToken, hostHash, err := token.NewHostToken()
	if err != nil {
		s.fail(w, "host token", err)
		return
	}
	now := s.now().UTC()
	m := &meeting{ID: newID("", 10), Title: title, Policy: pol, HostTokenHash: hostHash, Created: now}
	m.PolicyHistory = []api.PolicyChange{{At: now, Policy: pol, Effective: eff.Policy(), Hash: eff.Hash()}}
	if err := s.meetings.create(r.Context(), m); err != nil {
		s.fail(w, "create meeting", err)
		return
	}
	if _, err := s.audit.append(r.Context(), audit.Entry{
		Kind: audit.KindMeetingCreated, Meeting: m.ID, PolicyHash: eff.Hash(),
		Reason: "effective policy: " + describe(eff.Policy()),
	}); err != nil {
		s.fail(w, "audit meeting creation", err)
		return
	}
	v, err := s.view(m)
	if err != nil {
		s.fail(w, "view meeting", err)
		return
	}
	s.log.Info("meeting created", "meeting", m.ID, "policy_hash", v.PolicyHash)
	writeJSON(w, http.StatusCreated, api.CreatedMeeting{Meeting: v, HostToken: hostToken})
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

// hostCheck answers 401 without credentials and 403 with wrong ones.
func hostCheck(r *http.Request, m *meeting) *api.Error {
	auth := r.Header.Get("Authorization")
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
	id := r.PathValue("id")
	m, _, err := s.meetings.get(r.Context(), id)
	if err != nil {
		writeError(w, toAPIError(err))
		return
	}
	if e := hostCheck(r, m); e != nil {
		writeError(w, e)
		return
	}
	pol, eff, ok := s.readPolicy(w, r)
	if !ok {
		return
	}
	m, err = s.meetings.update(r.Context(), id, func(m *meeting) error {
		if e := hostCheck(r, m); e != nil {
			return e
		}
		m.Policy = pol
		m.PolicyHistory = append(m.PolicyHistory, api.PolicyChange{At: s.now().UTC(), Policy: pol, Effective: eff.Policy(), Hash: eff.Hash()})
		return nil
	})
	if err != nil {
		s.fail(w, "update policy", err)
		return
	}
	if _, err := s.audit.append(r.Context(), audit.Entry{
		Kind: audit.KindPolicyChange, Meeting: id, PolicyHash: eff.Hash(),
		Reason: "effective policy: " + describe(eff.Policy()),
	}); err != nil {
		s.fail(w, "audit policy change", err)
		return
	}
	s.log.Info("policy changed", "meeting", id, "policy_hash", eff.Hash())
	// Relays to now-blocked nodes close and moves start before the host
	// gets the answer.
	s.enforce(r.Context(), id)
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
	name, ok := cleanText(req.Name, 64)
	if !ok {
		writeError(w, apiErr(http.StatusBadRequest, api.CodeBadRequest, "name must be at most 64 printable characters"))
		return
	}
	if name == "" {
		name = "Guest"
	}
	loc, err := s.cfg.Locator.Locate(r, locate.Hint(req.Location))
	if err != nil {
		writeError(w, toAPIError(err))
		return
	}
	m, _, err := s.meetings.get(r.Context(), id)
	if err != nil {
		writeError(w, toAPIError(err))
		return
	}
	resp, err := s.join(r, m, name, loc, req.Replaces)
	if err != nil {
		s.fail(w, "join", err) // a refusal is answered with its code, unlogged
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// join places a participant, records it in the meeting and the audit log,
// and issues the token for the chosen node. A refusal is audited too.
func (s *Server) join(r *http.Request, m *meeting, name string, loc locate.Result, replaces string) (*api.JoinResponse, error) {
	ctx := r.Context()
	pid := newID("p", 10)
	var dec placement.Decision
	var placeErr error
	var eff policy.Effective
	reserved := ""
	var from *participant // the participant this join replaces, if any
	_, err := s.meetings.update(ctx, m.ID, func(m *meeting) error {
		var err error
		if eff, err = policy.Combine(s.floor, m.Policy); err != nil {
			return err
		}
		if reserved != "" { // a retry after a store conflict
			s.nodes.assign(reserved, -1)
			reserved = ""
		}
		req := placement.Request{Policy: eff, From: loc.Location, MeetingNodes: m.nodeIDs()}
		if replaces != "" {
			old := m.participant(replaces)
			if old == nil {
				return apiErr(http.StatusBadRequest, api.CodeBadRequest, "replaces: no participant %q in this meeting", replaces)
			}
			from = old
			// Moving off a node means not landing on it again.
			req.Exclude = []string{old.Node.ID}
			req.MeetingNodes = slices.DeleteFunc(req.MeetingNodes, func(id string) bool { return id == old.Node.ID })
		}
		// Placing and reserving the seat happen under one lock, so two
		// joins cannot both take a node's last seat.
		s.pick(func(rnd *rand.Rand) {
			dec, placeErr = s.nodes.snapshot().Place(req, rnd)
			if placeErr == nil {
				s.nodes.assign(dec.Node.ID, 1)
				reserved = dec.Node.ID
			}
		})
		if placeErr != nil {
			return placeErr
		}
		m.Participants = append(m.Participants, participant{
			ID: pid, Name: name, Location: loc.Location, LocationSource: string(loc.Source),
			Node:     api.PlacedNode{ID: dec.Node.ID, Country: dec.Node.Country, Region: dec.Node.Region},
			Joined:   s.now().UTC(),
			Replaces: replaces,
		})
		return nil
	})
	if err != nil && reserved != "" {
		s.nodes.assign(reserved, -1)
	}
	var ref *placement.Refusal
	if errors.As(err, &ref) {
		s.metrics.refusals.WithLabelValues(ref.Code).Inc()
		s.log.Info("join refused", "meeting", m.ID, "code", ref.Code, "from", loc.Location.Country)
		if _, aerr := s.audit.append(ctx, audit.Entry{
			Kind: audit.KindRefusal, Meeting: m.ID, Participant: pid, PolicyHash: eff.Hash(),
			Reason: ref.Code + ": " + ref.Reason,
		}); aerr != nil {
			return nil, fmt.Errorf("audit refusal: %w", aerr)
		}
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	reason := "nearest allowed node with headroom"
	if dec.Reused {
		reason = "allowed node the meeting already uses"
	}
	if dec.DistanceKm >= 0 {
		reason += fmt.Sprintf(" (%.0f km; participant location %s)", dec.DistanceKm, locationText(loc))
	} else {
		reason += " (participant location unknown: least loaded)"
	}
	kind := audit.KindPlacement
	if from != nil {
		kind = audit.KindMigration
		reason = fmt.Sprintf("moved from %s (%s) as %s: %s", from.Node.ID, from.Node.Country, from.ID, reason)
	}
	if _, err := s.audit.append(ctx, audit.Entry{
		Kind: kind, Meeting: m.ID, Participant: pid,
		Node: dec.Node.ID, NodeCountry: dec.Node.Country, PolicyHash: eff.Hash(), Reason: reason,
	}); err != nil {
		return nil, fmt.Errorf("audit placement: %w", err)
	}
	s.metrics.placements.WithLabelValues(dec.Node.Country).Inc()
	s.holdSeat(pid, m.ID, dec.Node.ID, s.now())
	s.enforcer.touch(m.ID)

	info, ok := s.nodes.get(dec.Node.ID)
	if !ok {
		return nil, fmt.Errorf("placed on unknown node %s", dec.Node.ID)
	}
	now := s.now().UTC()
	claims := token.JoinClaims{Meeting: m.ID, Participant: pid, Name: name, Node: dec.Node.ID, IssuedAt: now, Expires: now.Add(s.cfg.TokenTTL)}
	tok, err := token.SignJoin(s.cfg.Key, claims)
	if err != nil {
		return nil, err
	}
	s.log.Info("participant placed", "meeting", m.ID, "participant", pid, "node", dec.Node.ID, "node_country", dec.Node.Country, "from", loc.Location.Country)
	resp := &api.JoinResponse{
		ParticipantID: pid,
		Node:          api.JoinNode{ID: dec.Node.ID, Country: dec.Node.Country, Region: dec.Node.Region, URL: info.Info.URL},
		Token:         tok,
		Expires:       claims.Expires,
	}
	resp.ICEServers = []api.ICEServer{}
	if t := info.Info.TURN; t != nil {
		user, pass := turncred.Issue(t.Secret, pid, now.Add(turnLifetime))
		resp.ICEServers = append(resp.ICEServers, api.ICEServer{URLs: t.URLs, Username: user, Credential: pass})
	}
	resp.Location = api.JoinLocation{Country: loc.Location.Country, Source: string(loc.Source)}
	return resp, nil
}

func locationText(loc locate.Result) string {
	if !loc.Location.Known {
		return "unknown"
	}
	return loc.Location.Country + " via " + string(loc.Source)
}

// turnLifetime bounds a TURN credential: long enough for a meeting's
// allocation refreshes, short enough to be useless soon after.
const turnLifetime = 12 * time.Hour

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
	perNode := map[string]int{}
	for _, p := range m.active() {
		moving, _ := s.enforcer.moving(p.ID)
		if moving == "" && !eff.Allows(p.Node.Country, p.Node.Region) {
			moving = api.ReasonPolicyChange // enforcement is about to ask
		}
		v.Participants = append(v.Participants, api.RoutingEntry{ID: p.ID, Name: p.Name, Node: p.Node, Joined: p.Joined, Moving: moving, Replaces: p.Replaces})
		if perNode[p.Node.ID] == 0 {
			ns, _ := s.nodes.get(p.Node.ID)
			v.Nodes = append(v.Nodes, api.RoutingNode{PlacedNode: p.Node, Healthy: ns.Healthy})
		}
		perNode[p.Node.ID]++
	}
	for i := range v.Nodes {
		v.Nodes[i].Participants = perNode[v.Nodes[i].ID]
	}
	v.Relays = s.meetingRelays(m.ID, eff)
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
func (s *Server) meetingRelays(meetingID string, eff policy.Effective) []api.RoutingRelay {
	out := []api.RoutingRelay{}
	for _, ns := range s.nodes.states() {
		if !ns.Healthy {
			continue
		}
		for _, l := range ns.Relays {
			if l.Meeting != meetingID || !l.Dialer {
				continue
			}
			peer, _ := s.nodes.get(l.Peer)
			out = append(out, api.RoutingRelay{
				From:      api.PlacedNode{ID: ns.Info.ID, Country: ns.Info.Country, Region: ns.Info.Region},
				To:        api.PlacedNode{ID: l.Peer, Country: peer.Info.Country, Region: peer.Info.Region},
				Connected: l.Connected,
				Since:     l.Since,
				Closing: s.enforcer.closing(meetingID, ns.Info.ID, l.Peer) ||
					!eff.Allows(ns.Info.Country, ns.Info.Region) || !eff.Allows(peer.Info.Country, peer.Info.Region),
			})
		}
	}
	return out
}
