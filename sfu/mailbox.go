package sfu

import "sync"

// mailbox is an unbounded FIFO of closures for the goroutine that owns some
// state. Posting never blocks, so two owners can post to each other without
// deadlock; the owner drains the whole queue each time notify fires.
type mailbox struct {
	mu     sync.Mutex
	queue  []func()
	notify chan struct{}
}

func newMailbox() *mailbox {
	return &mailbox{notify: make(chan struct{}, 1)}
}

func (m *mailbox) post(f func()) {
	m.mu.Lock()
	m.queue = append(m.queue, f)
	m.mu.Unlock()
	select {
	case m.notify <- struct{}{}:
	default:
	}
}

// drain runs everything queued so far, in order, on the calling goroutine.
func (m *mailbox) drain() {
	m.mu.Lock()
	q := m.queue
	m.queue = nil
	m.mu.Unlock()
	for _, f := range q {
		f()
	}
}
