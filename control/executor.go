package control

import (
	"context"

	queue "github.com/oakmeet/oakmeet/mailbox"
)

// executor carries out what enforcement decided, one batch at a time, in
// the order the owner decided the batches. The owner hands a plan's actions
// over in the same step that records the plan, so a plan made from an older
// read can never be carried out after a newer one: a relay closed for a
// policy change is not reopened by a tick that planned just before it, and
// audit entries land in the order they were decided.
//
// It runs on the control plane's own context, never a request's, so a
// client that hangs up cannot leave a decision half carried out.
//
// The control plane runs two: one for everything, in decision order, and
// an urgent one for the kick and departure of a move whose deadline has
// passed (owner.expire), which must not wait behind a slow store.
type executor struct {
	q       *queue.Queue[batch]
	stopped chan struct{} // closed when run has returned
}

type batch struct {
	acts []action
	done chan struct{}
}

func newExecutor() *executor {
	return &executor{q: queue.New[batch](), stopped: make(chan struct{})}
}

// submit queues acts and returns a channel closed once they are carried
// out (or the control plane stops). It never blocks: the owner calls it.
func (x *executor) submit(acts []action) <-chan struct{} {
	done := make(chan struct{})
	if len(acts) == 0 {
		close(done)
		return done
	}
	x.q.Put(batch{acts: acts, done: done})
	return done
}

// run carries out batches with carry until ctx ends; batches still queued
// then are dropped, their waiters released.
func (x *executor) run(ctx context.Context, carry func(context.Context, []action)) {
	defer close(x.stopped)
	for {
		select {
		case <-ctx.Done():
			for _, b := range x.q.Take() {
				close(b.done)
			}
			return
		case <-x.q.Ready():
			for _, b := range x.q.Take() {
				if ctx.Err() == nil {
					carry(ctx, b.acts)
				}
				close(b.done)
			}
		}
	}
}

// wait returns once done is closed, the executor has stopped, or ctx ends.
func (x *executor) wait(ctx context.Context, done <-chan struct{}) {
	select {
	case <-done:
	case <-x.stopped:
	case <-ctx.Done():
	}
}
