package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/natsauth"
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

// A log made before appends went as atomic batches (its stream does not
// allow them) is changed by Open to allow them, and keeps its records.
func TestAppendAuditsOnALogMadeBefore(t *testing.T) {
	dir := t.TempDir()
	auth, err := natsauth.LoadOrCreate(filepath.Join(dir, "nats"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := bus.Embed(bus.EmbedConfig{StoreDir: filepath.Join(dir, "jetstream"), Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	nc, err := e.ConnectControl("test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	old, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: cluster.StreamAudit, Subjects: []string{"oakmeet.audit.>"},
		Storage: jetstream.FileStorage, DenyDelete: true, DenyPurge: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, cluster.AuditSubject("m1"), []byte("before")); err != nil {
		t.Fatal(err)
	}
	if old.CachedInfo().Config.AllowAtomicPublish {
		t.Fatal("the old stream allows atomic batches already")
	}
	s, err := Open(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	seqs, err := s.AppendAudits(ctx, records("m1", 3), 1)
	if err != nil || len(seqs) != 3 || seqs[0] != 2 || seqs[2] != 4 {
		t.Fatalf("append to the old log: %v, %v", seqs, err)
	}
	if got := readAll(t, s, "m1", false); len(got) != 4 || string(got[0].Data) != "before" {
		t.Fatalf("old log after the appends: %d records", len(got))
	}
}
