package adversary_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/adversary"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// newestCheckpoint waits until the control plane's checkpoint covers
// every stored entry and returns it with the entries.
func newestCheckpoint(t *testing.T, c *testcluster.Cluster) (audit.Checkpoint, []audit.Entry) {
	t.Helper()
	ctx := context.Background()
	v := adversary.LogVerifier(t, c.API)
	var cp audit.Checkpoint
	var entries []audit.Entry
	testcluster.WaitFor(t, 5*time.Second, "a checkpoint of the whole log", func() bool {
		got, err := c.API.Audit(ctx, "")
		if err != nil {
			return false
		}
		signed, err := c.API.Checkpoint(ctx)
		if err != nil {
			return false
		}
		if cp, err = audit.OpenCheckpoint(signed, v); err != nil {
			t.Fatalf("the control plane's checkpoint: %v", err)
		}
		entries = got.Entries
		return cp.Size == int64(len(entries))
	})
	return cp, entries
}

// Each rewrite leaves a log that verifies with the real key on its own,
// and that the control plane serves and checkpoints after a restart; only
// the checkpoint from before tells.
func TestAuditLogRewrites(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rewrite func(context.Context, *adversary.AuditLog) error
		// check says whether the log after fits the rewrite of before.
		check func(before, after []audit.Entry) bool
	}{
		{"truncate", func(ctx context.Context, l *adversary.AuditLog) error { return l.Truncate(ctx, 2) },
			// What the restarted control plane logs (its nodes gone) may follow.
			func(before, after []audit.Entry) bool {
				return len(before) > 2 && len(after) >= 2 && reflect.DeepEqual(after[:2], before[:2])
			}},
		{"edit", func(ctx context.Context, l *adversary.AuditLog) error {
			return l.Edit(ctx, 2, func(e *audit.Entry) { e.NodeCountry = "CN" })
		}, func(before, after []audit.Entry) bool {
			return len(after) >= len(before) && after[2].NodeCountry == "CN" && reflect.DeepEqual(after[:2], before[:2])
		}},
		{"rebuild", func(ctx context.Context, l *adversary.AuditLog) error {
			return l.Rebuild(ctx, func(e audit.Entry) bool { return e.Kind != audit.KindPlacement || e.Participant == "" })
		}, func(before, after []audit.Entry) bool {
			for i, e := range after {
				if e.Index != int64(i) || e.Kind == audit.KindPlacement {
					return false
				}
			}
			return len(after) > 0
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testcluster.Start(t, policy.Policy{}, specs()[:1])
			m := c.CreateMeeting(policy.Policy{BlockedCountries: []string{"CN"}})
			for range 2 {
				if _, ae, code := c.Join(m.ID, "DE"); code != 200 {
					t.Fatalf("join: %d %+v", code, ae)
				}
			}
			old, before := newestCheckpoint(t, c)
			adversary.RewriteLog(t, c, tc.rewrite)
			now, after := newestCheckpoint(t, c)
			if err := audit.Verify(c.ControlKey().Public().(ed25519.PublicKey), after); err != nil {
				t.Fatalf("the rewritten log does not verify on its own: %v", err)
			}
			if !tc.check(before, after) {
				t.Fatalf("rewrite not as meant:\nbefore %+v\nafter  %+v", before, after)
			}
			// The checkpoints before and after cannot be one log: no
			// proof from the control plane makes them so.
			var err error
			switch {
			case now.Size > old.Size:
				proof, perr := c.API.ConsistencyProof(context.Background(), old.Size, now.Size)
				if perr != nil {
					t.Fatal(perr)
				}
				err = audit.CheckConsistency(old, now, proof.Proof)
			default:
				err = audit.CheckConsistency(old, now, nil)
			}
			if !errors.Is(err, audit.ErrInconsistent) {
				t.Fatalf("checkpoint of size %d before, %d after: %v", old.Size, now.Size, err)
			}
		})
	}
}
