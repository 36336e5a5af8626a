package control

import (
	"context"
	"fmt"

	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/policy"
)

// auditFloorChanges keeps the policy-hash rule true across a restart with
// another deployment floor: every later entry of a meeting carries the
// hash of its policy combined with the floor, and a verifier accepts a
// hash only once a meeting_created or policy_change entry of the chain
// introduced it. So for each meeting whose effective policy is no longer
// the one its chain last introduced, a policy_change entry says so before
// any decision is made under the new one.
func (s *Server) auditFloorChanges(ctx context.Context) error {
	introduced, err := s.audit.policyHashes(ctx)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	all, err := s.meetings.all(ctx)
	if err != nil {
		return fmt.Errorf("control: load meetings: %w", err)
	}
	for _, m := range all {
		last, ok := introduced[m.ID]
		if !ok {
			continue // no chain: its meeting_created entry will introduce it
		}
		eff, err := policy.Combine(s.floor, m.Policy)
		if err != nil {
			// A floor this meeting's policy contradicts: enforcement
			// treats it as allowing nowhere; nothing to introduce.
			s.log.Warn("meeting policy and deployment floor do not combine", "meeting", m.ID, "err", err)
			continue
		}
		if eff.Hash() == last {
			continue
		}
		if _, err := s.audit.append(ctx, audit.Entry{
			Kind: audit.KindPolicyChange, Meeting: m.ID, PolicyHash: eff.Hash(),
			Reason: "deployment floor changed: effective policy: " + describe(eff.Policy()),
		}); err != nil {
			return fmt.Errorf("control: audit the new floor's policy of meeting %s: %w", m.ID, err)
		}
		s.log.Info("meeting policy changed with the deployment floor", "meeting", m.ID, "policy_hash", eff.Hash())
	}
	return nil
}
