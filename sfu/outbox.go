package sfu

import (
	"context"
	"fmt"
	"sync"
)

// outbox queues encoded messages for one signaling connection and writes
// them from its own goroutine, so that nobody who sends (a room, a packet
// path) ever blocks on a slow peer.
type outbox struct {
	mu     sync.Mutex
	closed bool
	ch     chan []byte
	done   chan struct{} // closed when run returns
}

func newOutbox(size int) *outbox {
	return &outbox{ch: make(chan []byte, size), done: make(chan struct{})}
}

// put queues b; it reports false when the queue is full. After close it
// drops b and reports true: the connection is going away anyway.
func (o *outbox) put(b []byte) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return true
	}
	select {
	case o.ch <- b:
		return true
	default:
		return false
	}
}

// close ends the queue; run writes what is queued and returns.
func (o *outbox) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.closed {
		o.closed = true
		close(o.ch)
	}
}

// run writes queued messages to c until close, or until a write fails,
// which it reports to failed before discarding the rest.
func (o *outbox) run(c Conn, failed func(error)) {
	defer close(o.done)
	for b := range o.ch {
		ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
		err := c.Write(ctx, b)
		cancel()
		if err != nil {
			failed(fmt.Errorf("signaling: %w", err))
			for range o.ch {
			}
			return
		}
	}
}
