package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func records(chain string, n int) []AuditAppend {
	out := make([]AuditAppend, n)
	for i := range out {
		out[i] = AuditAppend{Chain: chain, Record: fmt.Appendf(nil, "%s-%d", chain, i)}
	}
	return out
}

// A pipelined append stores its records in order after the expected one.
func TestAppendAuditsStoresInOrder(t *testing.T) {
	s, stop := open(t, t.TempDir())
	defer stop()
	ctx := context.Background()
	if _, err := s.AppendAudit(ctx, "m1", []byte("first"), 0); err != nil {
		t.Fatal(err)
	}
	recs := append(records("m1", 3), records("m2", 3)...)
	seqs, err := s.AppendAudits(ctx, recs, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(seqs) != len(recs) {
		t.Fatalf("%d of %d stored", len(seqs), len(recs))
	}
	for i, seq := range seqs {
		if seq != uint64(i)+2 {
			t.Fatalf("record %d at sequence %d, want %d", i, seq, i+2)
		}
	}
	got := readAll(t, s, "", true)
	if len(got) != 1+len(recs) {
		t.Fatalf("%d records stored", len(got))
	}
	for i, r := range recs {
		if g := got[i+1]; string(g.Data) != string(r.Record) || g.Chain != r.Chain {
			t.Fatalf("record %d stored as %s %q", i, g.Chain, g.Data)
		}
	}
}

// When the first record of a pipelined append is refused, none after it
// is stored, although the second's expected sequence is the stream's: a
// record is stored only right after its predecessor.
func TestAppendAuditsStoresNothingAfterARefusal(t *testing.T) {
	s, stop := open(t, t.TempDir())
	defer stop()
	ctx := context.Background()
	for i := range 2 {
		if _, err := s.AppendAudit(ctx, "other", []byte("x"), uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	// The caller believes the log ends at 1 (another writer stored 2):
	// record 0 expects 1 and is refused; record 1 expects 2, which is
	// the stream's last sequence, and must be refused all the same.
	seqs, err := s.AppendAudits(ctx, records("m1", 4), 1)
	if !errors.Is(err, ErrConflict) || len(seqs) != 0 {
		t.Fatalf("stale pipelined append: %d stored, %v", len(seqs), err)
	}
	if last, err := s.AuditLastSeq(ctx); err != nil || last != 2 {
		t.Fatalf("last sequence %d (%v), want 2: records stored after a refused one", last, err)
	}
}
