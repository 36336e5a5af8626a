package sfu

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrSlowPeer is why a participant or relay peer was disconnected when its
// signaling queue overflowed: it does not read as fast as messages for it
// come.
var ErrSlowPeer = errors.New("sfu: peer reads its signaling too slowly")

// outbox queues encoded messages for one signaling connection and writes
// them from its own goroutine, so that nobody who sends (a room, a packet
// path) ever blocks on a slow peer.
//
// The queue is bounded twice: by messages and by bytes, counted until a
// message is written. A broadcast queues the same encoded bytes for every
// recipient; each queue counts them in full, so the bound holds for every
// peer whoever else shares the buffer. One relay message may be about 1
// MiB, so a count alone would let a slow peer hold a gigabyte.
type outbox struct {
	maxMessages, maxBytes int

	mu     sync.Mutex
	queue  [][]byte
	bytes  int  // queued and being written
	closed bool // no more puts; run returns once the queue is written
	failed bool // a write failed: puts are dropped
	ready  chan struct{}
	done   chan struct{} // closed when run returns
}

func newOutbox(maxMessages, maxBytes int) *outbox {
	return &outbox{
		maxMessages: maxMessages, maxBytes: maxBytes,
		ready: make(chan struct{}, 1), done: make(chan struct{}),
	}
}

// put queues b, which must not be changed afterwards (it may be shared). It
// refuses b, with an error wrapping ErrSlowPeer, when the queue holds as
// many messages or bytes as it may. After close or a failed write it drops
// b and reports nil: the connection is going away anyway.
func (o *outbox) put(b []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.closed || o.failed:
		return nil
	case len(o.queue) >= o.maxMessages:
		return fmt.Errorf("%w: %d messages queued", ErrSlowPeer, len(o.queue))
	case o.bytes+len(b) > o.maxBytes:
		return fmt.Errorf("%w: %d bytes queued, at most %d", ErrSlowPeer, o.bytes+len(b), o.maxBytes)
	}
	o.queue = append(o.queue, b)
	o.bytes += len(b)
	o.wake()
	return nil
}

func (o *outbox) wake() {
	select {
	case o.ready <- struct{}{}:
	default:
	}
}

// close ends the queue; run writes what is queued and returns.
func (o *outbox) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	o.wake()
}

// take waits for queued messages and returns them all; nil once the queue
// is closed and empty.
func (o *outbox) take() [][]byte {
	for {
		o.mu.Lock()
		batch, closed := o.queue, o.closed
		o.queue = nil
		o.mu.Unlock()
		if len(batch) > 0 || closed {
			return batch
		}
		<-o.ready
	}
}

// run writes queued messages to c until close, or until a write fails,
// which it reports to failed before discarding the rest.
func (o *outbox) run(c Conn, failed func(error)) {
	defer close(o.done)
	for {
		batch := o.take()
		if batch == nil {
			return
		}
		for i, b := range batch {
			ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
			err := c.Write(ctx, b)
			cancel()
			batch[i] = nil
			o.mu.Lock()
			o.bytes -= len(b)
			if err != nil {
				o.failed, o.queue, o.bytes = true, nil, 0
			}
			o.mu.Unlock()
			if err != nil {
				failed(fmt.Errorf("signaling: %w", err))
				return
			}
		}
	}
}
