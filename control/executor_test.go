package control

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// Batches are carried out one at a time in the order they were handed
// over, whoever waits for them; waiters are let go when the executor stops.
func TestExecutorKeepsDecisionOrder(t *testing.T) {
	x := newExecutor()
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var got []string
	release := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		x.run(ctx, func(_ context.Context, acts []action) {
			if acts[0].Reason == "first" {
				<-release // the first batch is slow: nothing overtakes it
			}
			mu.Lock()
			got = append(got, acts[0].Reason)
			mu.Unlock()
		})
	})
	var dones []<-chan struct{}
	for _, r := range []string{"first", "second", "third"} {
		dones = append(dones, x.submit([]action{{Reason: r}}))
	}
	select {
	case <-dones[2]:
		t.Fatal("a later batch finished before an earlier one")
	case <-time.After(20 * time.Millisecond): // a bound for what must not happen, not a synchronisation
	}
	close(release)
	for _, d := range dones {
		x.wait(context.Background(), d)
	}
	mu.Lock()
	if !slices.Equal(got, []string{"first", "second", "third"}) {
		t.Fatalf("carried out in order %q", got)
	}
	mu.Unlock()
	if d := x.submit(nil); !closed(d) {
		t.Fatal("an empty batch is not done at once")
	}
	cancel()
	wg.Wait()
	late := x.submit([]action{{Reason: "late"}})
	x.wait(context.Background(), late) // returns: the executor has stopped
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
