package control

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/placement"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/token"
	"github.com/oakmeet/oakmeet/turncred"
)

// join places a participant, records it in the meeting and the audit log,
// and issues the token for the chosen node. A refusal is audited too. The
// meeting is read once, inside the update that adds the participant.
func (s *Server) join(ctx context.Context, meetingID, name string, loc locate.Result, replaces string) (api.JoinResponse, error) {
	pid := newID("p", 10)
	var (
		seat     placed
		reserved bool
		eff      policy.Effective
		from     *participant // the participant this join replaces, if any
	)
	_, rev, err := s.meetings.update(ctx, meetingID, func(m *meeting) error {
		var err error
		if eff, err = policy.Combine(s.floor, m.Policy); err != nil {
			return err
		}
		if reserved { // a retry after a store conflict
			if err := s.owner.release(ctx, pid); err != nil {
				return err
			}
			reserved = false
		}
		req := placement.Request{Policy: eff, From: loc.Location, MeetingNodes: m.nodeIDs()}
		if replaces != "" {
			old := m.participant(replaces)
			if old == nil {
				return badRequest("replaces: no participant %q in this meeting", replaces)
			}
			from = old
			// Moving off a node means not landing on it again.
			req.Exclude = []string{old.Node.ID}
			req.MeetingNodes = slices.DeleteFunc(req.MeetingNodes, func(id string) bool { return id == old.Node.ID })
		}
		if seat, err = s.owner.reserve(ctx, pid, meetingID, req, s.now()); err != nil {
			return err
		}
		reserved = true
		m.Participants = append(m.Participants, participant{
			ID: pid, Name: name, Location: loc.Location, LocationSource: string(loc.Source),
			Node:     api.PlacedNode{ID: seat.Node.ID, Country: seat.Node.Country, Region: seat.Node.Region},
			Joined:   s.now().UTC(),
			Replaces: replaces,
		})
		return nil
	})
	if err != nil && reserved {
		_ = s.owner.release(ctx, pid)
	}
	if err != nil {
		return api.JoinResponse{}, s.refused(ctx, meetingID, pid, eff, loc, err)
	}
	if err := s.auditPlacement(ctx, meetingID, pid, eff, seat.Decision, loc, from); err != nil {
		return api.JoinResponse{}, err
	}
	s.metrics.placements.WithLabelValues(seat.Node.Country).Inc()
	if err := s.owner.joined(ctx, meetingID, pid, rev); err != nil {
		return api.JoinResponse{}, err
	}
	return s.joinResponse(meetingID, pid, name, seat, loc)
}

// refused audits a placement refusal and returns err, the reason the join
// failed.
func (s *Server) refused(ctx context.Context, meetingID, pid string, eff policy.Effective, loc locate.Result, err error) error {
	var ref *placement.Refusal
	if !errors.As(err, &ref) {
		return err
	}
	s.metrics.refusals.WithLabelValues(ref.Code).Inc()
	s.log.Info("join refused", "meeting", meetingID, "code", ref.Code, "from", loc.Location.Country)
	if _, aerr := s.audit.append(ctx, audit.Entry{
		Kind: audit.KindRefusal, Meeting: meetingID, Participant: pid, PolicyHash: eff.Hash(),
		Reason: ref.Code + ": " + ref.Reason,
	}); aerr != nil {
		return fmt.Errorf("audit refusal: %w", aerr)
	}
	return err
}

func (s *Server) auditPlacement(ctx context.Context, meetingID, pid string, eff policy.Effective, dec placement.Decision, loc locate.Result, from *participant) error {
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
		Kind: kind, Meeting: meetingID, Participant: pid,
		Node: dec.Node.ID, NodeCountry: dec.Node.Country, PolicyHash: eff.Hash(), Reason: reason,
	}); err != nil {
		return fmt.Errorf("audit placement: %w", err)
	}
	return nil
}

// joinResponse signs the join token and TURN credentials for the node the
// participant was placed on.
func (s *Server) joinResponse(meetingID, pid, name string, seat placed, loc locate.Result) (api.JoinResponse, error) {
	now := s.now().UTC()
	claims := token.JoinClaims{Meeting: meetingID, Participant: pid, Name: name, Node: seat.Node.ID, IssuedAt: now, Expires: now.Add(s.cfg.TokenTTL)}
	tok, err := token.SignJoin(s.cfg.Key, claims)
	if err != nil {
		return api.JoinResponse{}, err
	}
	s.log.Info("participant placed", "meeting", meetingID, "participant", pid, "node", seat.Node.ID, "node_country", seat.Node.Country, "from", loc.Location.Country)
	resp := api.JoinResponse{
		ParticipantID: pid,
		Node:          api.JoinNode{ID: seat.Node.ID, Country: seat.Node.Country, Region: seat.Node.Region, URL: seat.Info.URL},
		Token:         tok,
		Expires:       claims.Expires,
		ICEServers:    []api.ICEServer{},
		Location:      api.JoinLocation{Country: loc.Location.Country, Source: string(loc.Source)},
	}
	if ice, err := s.turnCredential(seat.Info, meetingID, pid, now, claims.Expires); err != nil {
		s.log.Warn("no TURN credential", "meeting", meetingID, "participant", pid, "node", seat.Node.ID, "err", err)
	} else if ice != nil {
		resp.ICEServers = append(resp.ICEServers, *ice)
	}
	return resp, nil
}

// turnCredential is the placed node's TURN server with a credential for
// this participant of this meeting on that node only, expiring with the
// join token (turncred). Its password is derived for the node's TURN key,
// which must be signed by the node's identity key; nil without a TURN
// server.
func (s *Server) turnCredential(node cluster.NodeInfo, meetingID, pid string, now, expires time.Time) (*api.ICEServer, error) {
	t := node.TURN
	if t == nil {
		return nil, nil
	}
	key, err := turncred.VerifyNodeKey(node.IdentityKey, t.Key, t.KeySig)
	if err != nil {
		return nil, err
	}
	// The credential cannot outlive the join token, and whole seconds
	// round its expiry down.
	if limit := now.Add(turncred.MaxLifetime); expires.After(limit) {
		expires = limit
	}
	user, pass, err := turncred.Issue(s.cfg.Key, key, turncred.Claims{
		Node: node.ID, Meeting: meetingID, Participant: pid, IssuedAt: now, Expires: expires,
	})
	if err != nil {
		return nil, err
	}
	return &api.ICEServer{URLs: t.URLs, Username: user, Credential: pass}, nil
}

func locationText(loc locate.Result) string {
	if !loc.Location.Known {
		return "unknown"
	}
	return loc.Location.Country + " via " + string(loc.Source)
}
