package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/policy"
)

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
	req, e := decodePolicyRequest(w, r)
	if e != nil {
		writeError(w, e)
		return
	}
	pol, eff, err := s.effective(req.Policy)
	if err != nil {
		writeError(w, toAPIError(err))
		return
	}
	v, err := s.changePolicy(ctx, id, auth, pol, eff, req.Statement)
	if err != nil {
		s.fail(w, "change policy", err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// decodePolicyRequest reads PUT /policy's body: an api.PolicyRequest, or,
// as before host statements, the bare policy (which only a meeting without
// a host key accepts, there being no statement).
func decodePolicyRequest(w http.ResponseWriter, r *http.Request) (api.PolicyRequest, *api.Error) {
	var raw json.RawMessage
	if e := decodeBody(w, r, &raw); e != nil {
		return api.PolicyRequest{}, e
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return api.PolicyRequest{}, apiErr(http.StatusBadRequest, api.CodeBadJSON, "request body: %v", err)
	}
	var req api.PolicyRequest
	var into any = &req
	if _, ok := keys["policy"]; !ok {
		into = &req.Policy
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return api.PolicyRequest{}, apiErr(http.StatusBadRequest, api.CodeBadJSON, "request body: %v", err)
	}
	return req, nil
}

// changePolicy gives a meeting a new policy for the host (auth), audits it,
// and enforces it before answering: relays to now-blocked nodes close and
// moves start before the host gets the answer. On a meeting with a host
// key, st is the host's statement of the new effective hash.
func (s *Server) changePolicy(ctx context.Context, id, auth string, pol policy.Policy, eff policy.Effective, st *hoststmt.Statement) (api.Meeting, error) {
	// While the change is stored and its entry written, the tick leaves
	// the meeting alone, so no move is logged before the change.
	if err := s.owner.hold(ctx, id); err != nil {
		return api.Meeting{}, err
	}
	m, rev, err := s.meetings.update(ctx, id, func(m *meeting) error {
		if e := hostCheck(auth, m); e != nil {
			return e
		}
		if len(m.HostKey) > 0 || st != nil {
			if e := checkStatement(m, st, hoststmt.KindPolicy, func(st *hoststmt.Statement) string {
				return s.policyStatementMismatch(st, eff)
			}); e != nil {
				return e
			}
			m.Host.accept(*st)
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
	var auditErr, hostErr error
	lead := []action{{Kind: actAudit, Meeting: id, Failed: &auditErr, Entry: audit.Entry{
		Kind: audit.KindPolicyChange, Meeting: id, PolicyHash: eff.Hash(),
		Reason: "effective policy: " + describe(eff.Policy()),
	}}}
	if st != nil {
		lead = append(lead, s.hostActions(m, *st, "", &hostErr)...)
	}
	opts := planOpts{unhold: true, lead: lead}
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
	if err := errors.Join(auditErr, hostErr); err != nil {
		return api.Meeting{}, fmt.Errorf("audit policy change: %w", err)
	}
	return s.view(m)
}
