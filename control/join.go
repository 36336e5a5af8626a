package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/placement"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/store"
	"github.com/oakmeet/oakmeet/token"
	"github.com/oakmeet/oakmeet/turncred"
)

// joinAsk is one join request as read from HTTP.
type joinAsk struct {
	req  api.JoinRequest
	name string
	loc  locate.Result
	// bearer is the request's bearer token: the host's own join, carrying
	// the host token, is not held by the lock or the lobby it set.
	bearer string
	// addr is the client's address, for the caps on seats waiting for
	// their connection.
	addr netip.Addr
}

// join admits a participant or holds it in the lobby. An ask with a lobby
// ticket is held open (until waitCtx ends or LobbyWait passes) while the
// host has not decided; the answer is then a LobbyWait.
func (s *Server) join(ctx, waitCtx context.Context, meetingID string, ask joinAsk) (api.JoinResponse, *api.LobbyWait, error) {
	msg, e := checkRefusal(ask.req)
	if e != nil {
		return api.JoinResponse{}, nil, e
	}
	if ask.req.Refused != nil {
		if err := s.recordRefusal(ctx, meetingID, ask.req, msg); err != nil {
			return api.JoinResponse{}, nil, err
		}
	}
	timer := time.NewTimer(s.cfg.LobbyWait)
	defer timer.Stop()
	for {
		wake, err := s.owner.lobbyWatch(ctx, meetingID)
		if err != nil {
			return api.JoinResponse{}, nil, err
		}
		resp, lobby, err := s.joinOnce(ctx, meetingID, ask)
		if err != nil || lobby == nil {
			return resp, nil, err
		}
		if !lobby.held {
			return api.JoinResponse{}, s.lobbyWait(lobby.ticket), nil
		}
		select {
		case <-wake:
		case <-timer.C:
			return api.JoinResponse{}, s.lobbyWait(lobby.ticket), nil
		case <-waitCtx.Done():
			return api.JoinResponse{}, s.lobbyWait(lobby.ticket), nil
		}
	}
}

// joinOnce places a participant, records it in the meeting and the audit
// log, and issues the token for the chosen node; or records it in the
// lobby. A refusal is audited too. The meeting is read once, inside the
// update that adds the participant.
func (s *Server) joinOnce(ctx context.Context, meetingID string, ask joinAsk) (api.JoinResponse, *lobbyAnswer, error) {
	pid := newID("p", 10)
	rejoin, rejoinHash, err := token.NewHostToken()
	if err != nil {
		return api.JoinResponse{}, nil, err
	}
	var (
		seat     placed
		reserved bool
		eff      policy.Effective
		adm      admission
		host     api.HostState
		// added: the last run of the update added the participant, so
		// an error of the store after it may hide a write that landed.
		added bool
	)
	loc := api.JoinLocation{Country: ask.loc.Location.Country, Source: string(ask.loc.Source)}
	_, rev, err := s.meetings.update(ctx, meetingID, func(m *meeting) error {
		var err error
		added = false
		if reserved { // a retry after a store conflict
			if err := s.owner.release(ctx, pid); err != nil {
				return err
			}
			reserved = false
		}
		if !token.CheckHostToken(ask.req.Secret, m.JoinSecretHash) {
			return apiErr(http.StatusForbidden, api.CodeBadMeetingSecret, "a join needs the meeting's secret, from the #s= part of its link")
		}
		if eff, err = policy.Combine(s.floor, m.Policy); err != nil {
			return err
		}
		now := s.now().UTC()
		m.pruneTickets(now)
		isHost := ask.bearer != "" && token.CheckHostToken(ask.bearer, m.HostTokenHash)
		if adm, err = admit(m, ask.req, ask.name, loc, now, isHost); err != nil || adm.lobby != nil {
			return err // a lobby ticket, made or asked with, is stored
		}
		req := placement.Request{Policy: eff, From: ask.loc.Location, MeetingNodes: m.nodeIDs()}
		if old := adm.from; old != nil {
			// Moving off a node means not landing on it again.
			req.Exclude = []string{old.Node.ID}
			req.MeetingNodes = slices.DeleteFunc(req.MeetingNodes, func(id string) bool { return id == old.Node.ID })
		}
		pend := pendingAsk{addr: ask.addr, host: isHost, move: takesOverSeat(m, adm.from)}
		if seat, err = s.owner.reserve(ctx, pid, meetingID, pend, req, s.now()); err != nil {
			// A participant back after a lost connection (its client
			// refused nothing) may land on the node it left when no
			// other can take it: a deployment of one node must take
			// back everyone a restart cut off. Placement itself keeps
			// the node out if the policy, its health or a drain does.
			var ref *placement.Refusal
			if adm.from == nil || ask.req.Refused != nil || !errors.As(err, &ref) {
				return err
			}
			req.Exclude, req.MeetingNodes = nil, m.nodeIDs()
			if seat, err = s.owner.reserve(ctx, pid, meetingID, pend, req, s.now()); err != nil {
				return err
			}
		}
		reserved = true
		replaces := "" // only a replacement admit proved (rejoin secret) replaces anyone
		if adm.from != nil {
			replaces = adm.from.ID
		}
		m.Participants = append(m.Participants, participant{
			ID: pid, Name: adm.name, Location: ask.loc.Location, LocationSource: string(ask.loc.Source),
			Node:     api.PlacedNode{ID: seat.Node.ID, Country: seat.Node.Country, Region: seat.Node.Region},
			Joined:   now,
			Replaces: replaces, Identity: adm.identity, RejoinHash: rejoinHash,
		})
		host = hostState(m, eff.Hash())
		added = true
		return nil
	})
	if err != nil && reserved {
		_ = s.owner.release(ctx, pid)
	}
	if err != nil && added && !errors.Is(err, store.ErrConflict) {
		// The write may have been stored and its answer lost: a
		// participant no answer will name must not stay in the record.
		s.dropJoin(ctx, meetingID, pid, err)
	}
	if err != nil {
		return api.JoinResponse{}, nil, s.refused(ctx, meetingID, pid, eff, ask.loc, err)
	}
	if adm.lobby != nil {
		return api.JoinResponse{}, adm.lobby, nil
	}
	// From here to the answer, a control plane that dies leaves the join
	// for the next one to finish (interrupted.go).
	if err := cutAt(s.audit.cut.stored); err != nil {
		return api.JoinResponse{}, nil, err
	}
	placedEntry, err := s.auditPlacement(ctx, meetingID, pid, eff, seat.Decision, ask.loc, adm.from)
	if err != nil {
		s.dropJoin(ctx, meetingID, pid, err)
		return api.JoinResponse{}, nil, err
	}
	s.metrics.placements.WithLabelValues(seat.Node.Country).Inc()
	if err := cutAt(s.audit.cut.logged); err != nil {
		return api.JoinResponse{}, nil, err
	}
	// A join logged but failing now (the control plane stopping) is
	// never answered either: no token names it, so it goes at once
	// rather than wait for a hold that a stopped owner no longer keeps.
	if err := s.owner.joined(ctx, meetingID, pid, rev); err != nil {
		s.dropJoin(ctx, meetingID, pid, err)
		return api.JoinResponse{}, nil, err
	}
	resp, err := s.joinResponse(meetingID, pid, adm.name, seat, ask.loc)
	if err != nil {
		s.dropJoin(ctx, meetingID, pid, err)
		return api.JoinResponse{}, nil, err
	}
	resp.RejoinSecret, resp.Host = rejoin, host
	resp.Audit = s.audit.joinAudit(placedEntry.Index)
	return resp, nil, nil
}

// takesOverSeat reports whether a join replacing from (proved by its
// rejoin secret) takes over a seat already held, so that the caps on
// waiting seats do not hold it: from connected, and no other join waiting
// for its connection replaces it. A mass move (a node lost or draining, a
// policy change) then moves everyone, while one rejoin secret, asked
// again and again or handed down a chain of joins that never connect,
// holds no more than one seat past the caps.
func takesOverSeat(m *meeting, from *participant) bool {
	if from == nil || from.Connected == nil {
		return false
	}
	for _, p := range m.Participants {
		if p.Replaces == from.ID && p.Left == nil && p.Connected == nil {
			return false
		}
	}
	return true
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

// auditPlacement appends a join's placement (or, for a participant moving
// off its node, migration) entry and returns it sealed: its Index is what
// the join answer names for the client to find in a later checkpoint.
func (s *Server) auditPlacement(ctx context.Context, meetingID, pid string, eff policy.Effective, dec placement.Decision, loc locate.Result, from *participant) (audit.Entry, error) {
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
	sealed, err := s.audit.append(ctx, audit.Entry{
		Kind: kind, Meeting: meetingID, Participant: pid,
		Node: dec.Node.ID, NodeCountry: dec.Node.Country, PolicyHash: eff.Hash(), Reason: reason,
	})
	if err != nil {
		return audit.Entry{}, fmt.Errorf("audit placement: %w", err)
	}
	return sealed, nil
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
		Node:          api.JoinNode{ID: seat.Node.ID, Country: seat.Node.Country, Region: seat.Node.Region, URL: seat.Info.URL, Cert: seat.Cert},
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
