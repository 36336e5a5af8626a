package mailbox_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/mailbox"
)

func TestTakeReturnsPutsInOrder(t *testing.T) {
	q := mailbox.New[int]()
	if got := q.Take(); got != nil {
		t.Fatalf("Take on an empty queue = %v", got)
	}
	for i := range 5 {
		q.Put(i)
	}
	select {
	case <-q.Ready():
	default:
		t.Fatal("Ready did not fire after Put")
	}
	if got := q.Take(); !slices.Equal(got, []int{0, 1, 2, 3, 4}) {
		t.Fatalf("Take = %v", got)
	}
	if got := q.Take(); got != nil {
		t.Fatalf("second Take = %v, want nothing", got)
	}
}

// An owner that waits on Ready and takes everything sees every put of
// every producer, each producer's in its own order, and no put blocks
// while the owner is busy elsewhere.
func TestOwnerSeesEveryPut(t *testing.T) {
	const producers, each = 4, 500
	q := mailbox.New[[2]int]()
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				q.Put([2]int{p, i})
			}
		})
	}
	// Nobody takes until every producer is done: puts must not block.
	wg.Wait()
	next := make([]int, producers)
	deadline := time.After(10 * time.Second)
	for seen := 0; seen < producers*each; {
		select {
		case <-q.Ready():
		case <-deadline:
			t.Fatalf("owner saw %d of %d puts", seen, producers*each)
		}
		for _, v := range q.Take() {
			if v[1] != next[v[0]] {
				t.Fatalf("producer %d: got %d, want %d", v[0], v[1], next[v[0]])
			}
			next[v[0]]++
			seen++
		}
	}
}
