package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/token"
)

// Client-verified routing: a participant's own client checks the node it
// was placed on against the host-signed policy and refuses it before
// sending media. Its next join says so (api.JoinRequest.Refused, with the
// refused placement as Replaces and its rejoin secret as proof): the
// refused participant is recorded as left with the refusal's code, the
// refusal is audited (audit.KindNodeRefused), and the new join is placed
// elsewhere (a join that replaces one is never placed on its node).

// refusalCodes are the codes a client refuses its node with.
var refusalCodes = []string{api.CodeNodeNotAllowed, api.CodeNodeCertInvalid, api.CodeNodeProofInvalid, api.CodeNoHostPolicy}

// checkRefusal checks a refusal's form, before anything is read.
func checkRefusal(req api.JoinRequest) (string, *api.Error) {
	ref := req.Refused
	if ref == nil {
		return "", nil
	}
	if req.Replaces == "" || req.RejoinSecret == "" {
		return "", badRequest("refused needs replaces and rejoin_secret: the placement whose node was refused, and its proof")
	}
	if !slices.Contains(refusalCodes, ref.Code) {
		return "", badRequest("refused code %q is not one of %v", ref.Code, refusalCodes)
	}
	msg, e := cleanText(ref.Message, "refused message", 300, "")
	if e != nil {
		return "", e
	}
	return msg, nil
}

// recordRefusal records a client's refusal of the node its previous
// placement (req.Replaces, proven by req.RejoinSecret) put it on: that
// participant has left, for the refusal's code, and the refusal is
// audited. A refusal already recorded (the same participant, left for the
// same code) is not recorded twice. The join then goes on as any join that
// replaces a participant, which is never placed on its node again.
func (s *Server) recordRefusal(ctx context.Context, meetingID string, req api.JoinRequest, msg string) error {
	ref := req.Refused
	var (
		old       participant
		eff       policy.Effective
		connected bool
		recorded  bool
	)
	_, _, err := s.meetings.update(ctx, meetingID, func(m *meeting) error {
		if !token.CheckHostToken(req.Secret, m.JoinSecretHash) {
			return apiErr(http.StatusForbidden, api.CodeBadMeetingSecret, "a join needs the meeting's secret, from the #s= part of its link")
		}
		p := m.participant(req.Replaces)
		switch {
		case p == nil:
			return badRequest("replaces: no participant %q in this meeting", req.Replaces)
		case p.Removed:
			return apiErr(http.StatusForbidden, api.CodeBadRejoinSecret, "the host removed participant %q: it cannot be replaced", req.Replaces)
		case !token.CheckHostToken(req.RejoinSecret, p.RejoinHash):
			return apiErr(http.StatusForbidden, api.CodeBadRejoinSecret, "replaces needs the rejoin_secret that participant %q was given", req.Replaces)
		}
		var err error
		if eff, err = policy.Combine(s.floor, m.Policy); err != nil {
			return err
		}
		old = *p
		if p.Left != nil {
			if p.LeftReason == ref.Code {
				return errNoChange // told already
			}
			return nil // gone already (its seat lapsed): audited, not recorded again
		}
		now := s.now().UTC()
		p.Left, p.LeftReason = &now, ref.Code
		connected, recorded = p.Connected != nil, true
		return nil
	})
	if errors.Is(err, errNoChange) {
		return nil
	}
	if err != nil {
		return err
	}
	if recorded {
		// It holds no seat on the refused node any more, connected or not:
		// a departure its node reports later changes nothing.
		_ = s.owner.refusedSeat(ctx, old.ID, old.Node.ID)
		if connected {
			s.kickRefused(ctx, meetingID, old, ref.Code)
		}
	}
	s.log.Info("node refused by participant", "meeting", meetingID, "participant", old.ID, "node", old.Node.ID,
		"node_country", old.Node.Country, "code", ref.Code, "message", msg)
	reason := ref.Code
	if msg != "" {
		reason += ": " + msg
	}
	if _, err := s.audit.append(ctx, audit.Entry{
		Kind: audit.KindNodeRefused, Meeting: meetingID, Participant: old.ID,
		Node: old.Node.ID, NodeCountry: old.Node.Country, PolicyHash: eff.Hash(), Reason: reason,
	}); err != nil {
		return fmt.Errorf("audit node refusal: %w", err)
	}
	return nil
}

// kickRefused disconnects a refused participant still connected to the
// node it refused (a client leaving its node on a newer host policy).
func (s *Server) kickRefused(ctx context.Context, meetingID string, old participant, code string) {
	_, _ = s.owner.handOver(ctx, []action{{Kind: actCommand, Meeting: meetingID, Node: old.Node.ID, Note: "participant refused its node: disconnecting",
		Cmd: cluster.Command{Kind: cluster.CommandKick, Meeting: meetingID, Participant: old.ID, Reason: code}}})
}

// refusedSeat gives back the seat of a participant who refused its node:
// its reservation if it never connected, its place on the node if it did.
func (o *owner) refusedSeat(ctx context.Context, pid, nodeID string) error {
	return o.do(ctx, func() {
		delete(o.seats, pid)
		o.nodes.assign(nodeID, -1)
	})
}
