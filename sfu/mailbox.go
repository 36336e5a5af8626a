package sfu

import mq "github.com/oakmeet/oakmeet/mailbox"

// mailbox is the queue of closures for the goroutine that owns a room, a
// session or a link: anyone posts, the owner runs them in order each time
// notify fires (see package mailbox).
type mailbox struct {
	q      *mq.Queue[func()]
	notify <-chan struct{}
}

func newMailbox() *mailbox {
	q := mq.New[func()]()
	return &mailbox{q: q, notify: q.Ready()}
}

func (m *mailbox) post(f func()) { m.q.Put(f) }

// drain runs everything queued so far, in order, on the calling goroutine.
func (m *mailbox) drain() {
	for _, f := range m.q.Take() {
		f()
	}
}
