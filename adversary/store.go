package adversary

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go"

	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/store"
)

// Store edits meetings as they are stored in the meetings bucket, behind
// the control plane's back but with its credentials: the edit makes no
// audit entry and no host statement, which is the point.
type Store struct {
	st *store.Store
}

// OpenStore binds to the deployment's buckets over nc, a NATS connection
// with the control plane's identity (testcluster: NATS().ConnectControl).
func OpenStore(ctx context.Context, nc *nats.Conn) (*Store, error) {
	st, err := store.Open(ctx, nc)
	if err != nil {
		return nil, err
	}
	return &Store{st: st}, nil
}

// storeRetries bounds the compare-and-set attempts of one rewrite: the
// control plane writes a meeting at every join and event, so a rewrite may
// lose a race or two.
const storeRetries = 50

// Rewrite applies edit to meeting id's stored record, a JSON object by
// field, and writes it back if the record has not changed meanwhile
// (otherwise it reads it again and retries). Fields edit does not touch
// are written back byte for byte.
func (s *Store) Rewrite(ctx context.Context, id string, edit func(fields map[string]json.RawMessage) error) error {
	for range storeRetries {
		rec, err := s.st.Meeting(ctx, id)
		if err != nil {
			return err
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(rec.Value, &fields); err != nil {
			return fmt.Errorf("meeting %s: stored record is not a JSON object: %w", id, err)
		}
		if err := edit(fields); err != nil {
			return err
		}
		data, err := json.Marshal(fields)
		if err != nil {
			return err
		}
		_, err = s.st.UpdateMeeting(ctx, id, data, rec.Revision)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		return err
	}
	return fmt.Errorf("meeting %s: rewrite lost %d races with the control plane", id, storeRetries)
}

// RewritePolicy replaces the meeting's own stored policy (its "policy"
// field, which the control plane combines with the deployment's floor to
// place and to order relays) with what edit makes of it. No host statement
// says so: a client that checks its node against the host's signed policy
// refuses what this policy lets the control plane do.
func (s *Store) RewritePolicy(ctx context.Context, id string, edit func(*policy.Policy)) error {
	return s.Rewrite(ctx, id, func(fields map[string]json.RawMessage) error {
		var p policy.Policy
		if raw, ok := fields["policy"]; ok {
			if err := json.Unmarshal(raw, &p); err != nil {
				return fmt.Errorf("meeting %s: stored policy: %w", id, err)
			}
		}
		edit(&p)
		n, err := p.Normalize()
		if err != nil {
			return fmt.Errorf("meeting %s: rewritten policy: %w", id, err)
		}
		raw, err := json.Marshal(n)
		if err != nil {
			return err
		}
		fields["policy"] = raw
		return nil
	})
}

// Unblock is an edit for RewritePolicy: the countries leave the blocked
// list and, if there is one, join the allow-list.
func Unblock(countries ...string) func(*policy.Policy) {
	return func(p *policy.Policy) {
		var kept []string
		for _, c := range p.BlockedCountries {
			if !slices.Contains(countries, c) {
				kept = append(kept, c)
			}
		}
		p.BlockedCountries = kept
		if len(p.AllowedCountries) > 0 {
			for _, c := range countries {
				if !slices.Contains(p.AllowedCountries, c) {
					p.AllowedCountries = append(p.AllowedCountries, c)
				}
			}
		}
	}
}

// Block is an edit for RewritePolicy: the countries join the blocked list.
func Block(countries ...string) func(*policy.Policy) {
	return func(p *policy.Policy) {
		for _, c := range countries {
			if !slices.Contains(p.BlockedCountries, c) {
				p.BlockedCountries = append(p.BlockedCountries, c)
			}
		}
	}
}
