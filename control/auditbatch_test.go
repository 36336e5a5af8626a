package control

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/policy"
)

// Bursts of appends from many callers on two writers at once: the
// pipelined writes of one lose races to the other's, and every entry
// still lands exactly once, numbered in log order, each chain unbroken.
func TestConcurrentAppendsOnTwoWritersMakeOneLog(t *testing.T) {
	env := newLogEnv(t)
	ctx := context.Background()
	a, b := env.twoWriters()
	const callers, each = 16, 12
	var wg sync.WaitGroup
	errs := make(chan error, 2*callers*each)
	for w, srv := range []*Server{a, b} {
		for c := range callers {
			wg.Go(func() {
				for i := range each {
					e := audit.Entry{Kind: audit.KindPlacement, Meeting: fmt.Sprintf("m%d", c%3), Participant: fmt.Sprintf("w%d-c%d-%d", w, c, i)}
					if _, err := srv.audit.append(ctx, e); err != nil {
						errs <- err
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		failed++
		t.Log(err)
	}
	// A writer that keeps losing gives up after maxAppendAttempts; with
	// two writers racing that is rare, and its caller hears of it.
	if failed > callers*each/10 {
		t.Fatalf("%d appends failed", failed)
	}
	// One more append on a reads what b stored last.
	if _, err := a.audit.append(ctx, audit.Entry{Kind: audit.KindPlacement, Meeting: "m0", Participant: "last"}); err != nil {
		t.Fatal(err)
	}
	recs := env.records()
	if want := 2*callers*each - failed + 1; len(recs) != want {
		t.Fatalf("%d records stored, want %d", len(recs), want)
	}
	seen := map[string]bool{}
	for m := range 3 {
		entries, err := a.audit.entries(ctx, fmt.Sprintf("m%d", m), false)
		if err != nil {
			t.Fatal(err)
		}
		if err := audit.Verify(a.PublicKey(), entries); err != nil {
			t.Fatalf("chain m%d: %v", m, err)
		}
		for _, e := range entries {
			if seen[e.Participant] {
				t.Fatalf("%s stored twice", e.Participant)
			}
			seen[e.Participant] = true
		}
	}
	if len(seen) != len(recs) {
		t.Fatalf("%d distinct entries in the chains, %d records", len(seen), len(recs))
	}
	if size := a.audit.tree.Size(); size != int64(len(recs)) {
		t.Fatalf("tree of %d entries for %d records", size, len(recs))
	}
}

// BenchmarkAuditAppendParallel is appends from many callers at once, as
// a burst of joins makes them.
func BenchmarkAuditAppendParallel(b *testing.B) {
	env := newLogEnv(b)
	srv, err := env.server(policy.Policy{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.audit.run(ctx)
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := srv.audit.append(ctx, audit.Entry{Kind: audit.KindPlacement, Meeting: fmt.Sprintf("m%d", i%50), Participant: "p", Node: "de-fra", NodeCountry: "DE"}); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}
