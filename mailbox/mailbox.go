// Package mailbox is the queue through which a goroutine that owns some
// state takes its work. Putting never blocks, so two owners can post to
// each other without deadlock, and a slow owner never stalls the goroutine
// that hands it something; the owner takes everything queued so far each
// time Ready fires.
//
// It is its own package, not part of the WebRTC negotiation code, because
// owners of every kind use it: the node's rooms, sessions and relay links
// queue closures, the client queues the events it hands its caller.
package mailbox

import "sync"

// Queue is an unbounded FIFO of values of one type: any goroutine puts,
// one goroutine (the owner) takes.
type Queue[T any] struct {
	mu    sync.Mutex
	items []T
	ready chan struct{}
}

// New returns an empty queue.
func New[T any]() *Queue[T] {
	return &Queue[T]{ready: make(chan struct{}, 1)}
}

// Put appends v. It never blocks.
func (q *Queue[T]) Put(v T) {
	q.mu.Lock()
	q.items = append(q.items, v)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// Ready receives a value after something was put. One signal may stand for
// many puts, and may come when a Take has already emptied the queue, so
// the owner takes whatever is there and waits again.
func (q *Queue[T]) Ready() <-chan struct{} { return q.ready }

// Take removes and returns everything queued so far, oldest first (nil
// when the queue is empty).
func (q *Queue[T]) Take() []T {
	q.mu.Lock()
	items := q.items
	q.items = nil
	q.mu.Unlock()
	return items
}
