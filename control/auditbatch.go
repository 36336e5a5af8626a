package control

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/store"
)

// Appends are group-committed: callers queue their entries, and the
// appender goroutine takes every entry queued since it last looked, seals
// them in order and stores them with one pipelined write, an atomic batch
// (store.AppendAudits), instead of one round trip each. Under a burst of
// joins the appender's throughput is then bounded by sealing, not by the
// store's latency. Order, numbering and the rule that a second writer
// cannot fork the log are those of one append at a time: an entry is
// stored only right after the one sealed before it.

// appendQueue holds the entries waiting for the appender.
type appendQueue struct {
	mu      sync.Mutex // guards pending; nothing else is locked while it is held
	pending []*pendingAppend
}

// pendingAppend is one queued entry and, once done is closed, its outcome.
type pendingAppend struct {
	ctx    context.Context
	e      audit.Entry
	sealed audit.Entry
	err    error
	done   chan struct{}
}

func (p *pendingAppend) finish(sealed audit.Entry, err error) {
	p.sealed, p.err = sealed, err
	close(p.done)
}

// maxPipelined bounds the entries of one pipelined write.
const maxPipelined = 256

// pipelineAckWait bounds the wait for one pipelined write's answer. A
// write sent to a stream leader that dies is answered by nobody, so every
// join waiting on it waits this long before its 503: as long as one
// append or one key's write (store's bounds), so that a client's bounded
// retry still has room for a second attempt after the new stream leader
// is elected.
const pipelineAckWait = 5 * time.Second

// append seals e into its meeting's chain, gives it the next index of the
// log and stores it, on the appender goroutine: the only writer of the
// log in this process. Once queued the caller waits for the outcome
// whatever ctx does, as with a mailbox call.
func (a *auditor) append(ctx context.Context, e audit.Entry) (audit.Entry, error) {
	if err := ctx.Err(); err != nil {
		return audit.Entry{}, err
	}
	select {
	case <-a.mbox.done:
		return audit.Entry{}, errStopped
	default:
	}
	p := &pendingAppend{ctx: ctx, e: e, done: make(chan struct{})}
	a.queue.mu.Lock()
	a.queue.pending = append(a.queue.pending, p)
	first := len(a.queue.pending) == 1
	a.queue.mu.Unlock()
	if first {
		a.mbox.post(a.flush)
	}
	select {
	case <-p.done:
	case <-a.mbox.done:
		// The goroutine closes done only after the closure it was running
		// returned, so the entry was either taken in full or never will be.
		select {
		case <-p.done:
		default:
			return audit.Entry{}, errStopped
		}
	}
	return p.sealed, p.err
}

// flush stores every queued entry, in order. On the appender goroutine.
func (a *auditor) flush() {
	a.queue.mu.Lock()
	ps := a.queue.pending
	a.queue.pending = nil
	a.queue.mu.Unlock()
	for len(ps) > 0 {
		if n := a.pipelinable(ps); n > 1 {
			stored, err := a.appendPipelined(ps[:n])
			ps = ps[stored:]
			switch {
			case err == nil:
				continue
			case !errors.Is(err, store.ErrConflict):
				// The rest of the write may or may not be stored: each
				// caller hears so, as with one append, and nothing of
				// it is sent again.
				for _, p := range ps[:n-stored] {
					p.finish(audit.Entry{}, err)
				}
				ps = ps[n-stored:]
				continue
			case stored > 0:
				continue // the next write starts after what was stored
			}
			// The stream moved on before the first entry: appendNow
			// takes in what another writer stored and seals it again.
		}
		p := ps[0]
		p.finish(a.appendNow(p.ctx, p.e))
		ps = ps[1:]
	}
}

// pipelinable is how many of ps, from the first, can be sealed ahead of
// their storage: none that needs a policy change recorded before it
// (appendNow adds that), and none after an entry that introduces a
// policy, whose effect on the next entries' checks only storing it makes.
func (a *auditor) pipelinable(ps []*pendingAppend) int {
	n := 0
	for _, p := range ps {
		if n == maxPipelined || a.unannounced(p.e) {
			break
		}
		n++
		if p.e.Kind == audit.KindMeetingCreated || p.e.Kind == audit.KindPolicyChange {
			break
		}
	}
	return n
}

// appendPipelined seals ps in order after the log's newest entry and
// stores them in one pipelined write, finishing each entry stored; it
// returns how many were (a prefix of ps) and why the next one was not.
func (a *auditor) appendPipelined(ps []*pendingAppend) (int, error) {
	base := a.tree.Size()
	heads := map[string]audit.Head{}
	sealed := make([]audit.Entry, 0, len(ps))
	recs := make([]store.AuditAppend, 0, len(ps))
	for i, p := range ps {
		e := p.e
		if e.Time.IsZero() {
			e.Time = a.now().UTC()
		}
		head, ok := heads[e.Meeting]
		if !ok {
			if c := a.chains[e.Meeting]; c != nil {
				head = c.Head()
			}
		}
		e.Index = base + int64(i)
		s := audit.NewChain(a.key, e.Meeting, head).Seal(e)
		leaf, err := audit.LeafData(&s)
		if err != nil {
			ps = ps[:i] // this one goes alone, and gets its error there
			break
		}
		heads[e.Meeting] = s.Head()
		sealed = append(sealed, s)
		recs = append(recs, store.AuditAppend{Chain: s.Meeting, Record: leaf})
	}
	if len(recs) == 0 {
		return 0, store.ErrConflict // nothing sealed: one at a time
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ps[0].ctx), pipelineAckWait)
	defer cancel()
	seqs, err := a.store.AppendAudits(ctx, recs, a.lastSeq)
	for i, seq := range seqs {
		a.add(seq, recs[i].Record, &sealed[i])
		ps[i].finish(sealed[i], nil)
	}
	if len(seqs) > 0 {
		a.due()
	}
	if err == nil && len(seqs) < len(ps) {
		err = store.ErrConflict // the rest were not sealed: one at a time
	}
	return len(seqs), err
}
