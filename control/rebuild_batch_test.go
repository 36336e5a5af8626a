package control

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/store"
)

// loggedMany is a log of n entries over a few meetings, checkpointed,
// written by a control plane that has stopped again.
func loggedMany(t *testing.T, n int) *logEnv {
	t.Helper()
	env := newLogEnv(t)
	srv, err := env.server(policy.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	stop := env.run(srv)
	ctx := context.Background()
	const callers = 16
	errs := make(chan error, callers)
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := c; i < n; i += callers {
				if _, err := srv.audit.append(ctx, audit.Entry{Kind: audit.KindPlacement, Meeting: fmt.Sprintf("m%d", i%7),
					Participant: fmt.Sprintf("p%d", i), Node: "de-fra", NodeCountry: "DE"}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if _, err := srv.audit.signNow(ctx); err != nil {
		t.Fatal(err)
	}
	stop()
	return env
}

// A log of several of the rebuild's batches is taken in whole, and a
// record altered in one of them is named, the first one when two are:
// entries are decoded many at once, but reported in the log's order.
func TestRebuildAcrossBatches(t *testing.T) {
	n := 2*catchUpBatch + catchUpBatch/2
	env := loggedMany(t, n)
	srv, err := env.server(policy.Policy{})
	if err != nil {
		t.Fatalf("unchanged log: %v", err)
	}
	if got := srv.audit.tree.Size(); got != int64(n) {
		t.Fatalf("rebuilt %d entries of %d", got, n)
	}

	recs := env.records()
	first, second := catchUpBatch+catchUpBatch/3, catchUpBatch+catchUpBatch/2 // one batch, the later one unreadable
	recs[first].Data = []byte(strings.Replace(string(recs[first].Data), `,"kind"`, `, "kind"`, 1))
	recs[second].Data = []byte("{")
	recs[2*catchUpBatch+5].Data = []byte("{")
	env.replaceStream(recs)
	_, err = env.server(policy.Policy{})
	if err == nil {
		t.Fatal("started on an altered log")
	}
	want := fmt.Sprintf("stream sequence %d: not in the canonical form of an entry", recs[first].Seq)
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), errAlteredLog.Error()) {
		t.Fatalf("error %q does not say %q", err, want)
	}
}

// Records decoded many at once come back in their order, each with its
// own outcome, and a batch of one is decoded as one of many is.
func TestDecodeRecordsKeepsOrder(t *testing.T) {
	recs := make([]store.AuditRecord, 300)
	for i := range recs {
		e := audit.Entry{Index: int64(i), Meeting: "m", Seq: uint64(i + 1), Kind: audit.KindPlacement, Participant: fmt.Sprintf("p%d", i)}
		leaf, err := audit.LeafData(&e)
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = store.AuditRecord{Seq: uint64(i + 1), Chain: "m", Data: leaf}
	}
	recs[200].Data = []byte("not json")
	for _, batch := range [][]store.AuditRecord{recs, recs[:1], recs[200:201]} {
		got := decodeRecords(batch)
		if len(got) != len(batch) {
			t.Fatalf("decoded %d of %d", len(got), len(batch))
		}
		for i, d := range got {
			bad := batch[i].Seq == 201
			if (d.err != nil) != bad {
				t.Fatalf("record %d: error %v", batch[i].Seq, d.err)
			}
			if !bad && (d.e.Index != int64(batch[i].Seq-1) || d.e.Participant != fmt.Sprintf("p%d", batch[i].Seq-1)) {
				t.Fatalf("record %d decoded as entry %d of %s", batch[i].Seq, d.e.Index, d.e.Participant)
			}
		}
	}
}

// Whatever a stored record holds, decoding it gives an error or an entry
// whose canonical form is the record, and the same outcome alone as in a
// batch.
func FuzzDecodeRecord(f *testing.F) {
	e := audit.Entry{Index: 3, Meeting: "m", Seq: 2, Kind: audit.KindPlacement, Participant: "p", Node: "de-fra", NodeCountry: "DE"}
	leaf, err := audit.LeafData(&e)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(leaf)
	f.Add([]byte("{"))
	f.Add([]byte(`{"index":1}`))
	f.Add([]byte(strings.Replace(string(leaf), `,"kind"`, `, "kind"`, 1)))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := store.AuditRecord{Seq: 1, Chain: "m", Data: data}
		got, err := decodeRecord(r)
		if err == nil {
			again, lerr := audit.LeafData(&got)
			if lerr != nil || string(again) != string(data) {
				t.Fatalf("accepted %q, whose canonical form is %q (%v)", data, again, lerr)
			}
		}
		batch := make([]store.AuditRecord, 200)
		for i := range batch {
			batch[i] = r
		}
		for i, d := range decodeRecords(batch) {
			if (d.err == nil) != (err == nil) || (err == nil && d.e.Hash != got.Hash) {
				t.Fatalf("record %d of a batch decoded as %v, alone as %v", i, d.err, err)
			}
		}
	})
}
