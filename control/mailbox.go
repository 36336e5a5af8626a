package control

import (
	"context"
	"net/http"

	"github.com/oakmeet/oakmeet/api"
	queue "github.com/oakmeet/oakmeet/mailbox"
)

// mailbox feeds closures to the one goroutine that owns some state, over
// the queue every owner in oakmeet uses (package mailbox). The goroutine
// runs them one at a time, in order, so a caller waits only for the work
// queued before its own. The owner of live state never blocks in a closure
// (it does no I/O); the audit appender's closures do one append's store
// round trip each, which is exactly what they are there to sequence.
// Putting never blocks, so neither an owner that hands work on (the owner
// to the executor) nor a NATS callback (a heartbeat) can deadlock on it.
type mailbox struct {
	q    *queue.Queue[func()]
	done chan struct{} // closed when the goroutine has stopped
}

func newMailbox() *mailbox {
	return &mailbox{q: queue.New[func()](), done: make(chan struct{})}
}

// errStopped answers a call made after the control plane stopped.
var errStopped = api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "the control plane is stopping")

// run serves the mailbox until ctx ends; idle runs after each batch of
// work that was queued together.
func (mb *mailbox) run(ctx context.Context, idle func()) {
	defer close(mb.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-mb.q.Ready():
			for _, f := range mb.q.Take() {
				f()
			}
			idle()
		}
	}
}

// call runs f on the owning goroutine and waits for it. Once f is queued
// the caller waits for it whatever ctx does, so f's effects (a seat
// reserved, say) are never done behind the caller's back.
func (mb *mailbox) call(ctx context.Context, f func()) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-mb.done:
		return errStopped
	default:
	}
	finished := make(chan struct{})
	mb.q.Put(func() { f(); close(finished) })
	select {
	case <-finished:
		return nil
	case <-mb.done:
		// The goroutine closes done only after the batch it was running
		// returned, so f either ran in full or never will.
		select {
		case <-finished:
			return nil
		default:
			return errStopped
		}
	}
}

// post queues f without waiting for it to run.
func (mb *mailbox) post(f func()) { mb.q.Put(f) }
