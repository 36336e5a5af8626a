package control

import (
	"context"
	"net/http"

	"github.com/oakmeet/oakmeet/api"
)

// mailbox feeds closures to the one goroutine that owns some state. The
// goroutine runs them one at a time, in order, so a caller waits only for
// the work queued before its own. The owner of live state never blocks in
// a closure (it does no I/O); the audit appender's closures do one append's
// store round trip each, which is exactly what they are there to sequence.
// Neither goroutine ever posts to a mailbox, so the bounded queue cannot
// deadlock: a full queue only slows the posters down.
type mailbox struct {
	in   chan func()
	done chan struct{} // closed when the goroutine has stopped
}

func newMailbox() *mailbox {
	return &mailbox{in: make(chan func(), 256), done: make(chan struct{})}
}

// errStopped answers a call made after the control plane stopped.
var errStopped = api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "the control plane is stopping")

// run serves the mailbox until ctx ends; idle runs whenever the queue is
// empty after some work.
func (mb *mailbox) run(ctx context.Context, idle func()) {
	defer close(mb.done)
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-mb.in:
			f()
			if len(mb.in) == 0 {
				idle()
			}
		}
	}
}

// call runs f on the owning goroutine and waits for it. Once f is queued
// the caller waits for it whatever ctx does, so f's effects (a seat
// reserved, say) are never done behind the caller's back.
func (mb *mailbox) call(ctx context.Context, f func()) error {
	finished := make(chan struct{})
	select {
	case mb.in <- func() { f(); close(finished) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-mb.done:
		return errStopped
	}
	select {
	case <-finished:
		return nil
	case <-mb.done:
		// The goroutine closes done only after the closure it was running
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
func (mb *mailbox) post(f func()) {
	select {
	case mb.in <- f:
	case <-mb.done:
	}
}
