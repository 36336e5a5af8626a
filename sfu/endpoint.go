package sfu

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/oakmeet/oakmeet/signal"
)

// endpoint is what a participant's session and a relay link have in
// common: a signaling connection written through an outbox and read by a
// reader goroutine, a goroutine that owns the state and takes work from
// mbox, and the media goroutines that teardown waits for.
type endpoint struct {
	sfu  *SFU
	room *room
	conn Conn
	log  *slog.Logger
	mbox *mailbox
	out  *outbox
	// what names the signaling channel in errors.
	what string

	ctx  context.Context
	stop context.CancelCauseFunc

	wg         sync.WaitGroup // media goroutines
	readerDone chan struct{}
}

// queueLimits bound what an endpoint's outbox may hold.
type queueLimits struct{ messages, bytes int }

// open sets the endpoint up for c, with a send queue of at most q and a
// context that ends with ctx.
func (e *endpoint) open(ctx context.Context, s *SFU, c Conn, log *slog.Logger, q queueLimits, what string) {
	e.sfu, e.conn, e.log, e.what = s, c, log, what
	e.mbox, e.out = newMailbox(), newOutbox(q.messages, q.bytes)
	e.ctx, e.stop = context.WithCancelCause(ctx)
}

// finish ends the endpoint with a cause; the first cause wins.
func (e *endpoint) finish(cause error) { e.stop(cause) }

// post queues work for the owner goroutine.
func (e *endpoint) post(f func()) { e.mbox.post(f) }

// goMedia starts a goroutine that teardown waits for.
func (e *endpoint) goMedia(f func()) { e.wg.Go(f) }

// send queues a message without blocking; a peer that cannot keep up with
// its own signaling is disconnected.
func (e *endpoint) send(m signal.Message) {
	b, err := signal.Encode(m)
	if err != nil {
		e.log.Error("encode "+e.what+" message", "type", m.Type, "err", err)
		return
	}
	e.sendEncoded(b)
}

// sendEncoded queues an encoded message, which may be shared with other
// endpoints and is never changed.
func (e *endpoint) sendEncoded(b []byte) {
	if err := e.out.put(b); err != nil {
		e.finish(fmt.Errorf("%s: %w", e.what, err))
	}
}

// startIO starts writing the outbox to the connection and reading it with
// readLoop.
func (e *endpoint) startIO(readLoop func()) {
	go e.out.run(e.conn, e.finish)
	e.readerDone = make(chan struct{})
	go func() {
		defer close(e.readerDone)
		readLoop()
	}()
}

func (e *endpoint) closePCs(pcs ...*webrtc.PeerConnection) {
	for _, pc := range pcs {
		if err := pc.Close(); err != nil {
			e.log.Debug("close peer connection", "err", err)
		}
	}
}

// hangUp flushes what is queued for the peer (for at most flushTimeout),
// closes the connection with reason and waits for every goroutine startIO
// and goMedia started.
func (e *endpoint) hangUp(reason string) {
	e.out.close()
	select {
	case <-e.out.done:
	case <-time.After(flushTimeout):
	}
	_ = e.conn.Close(reason)
	<-e.out.done
	<-e.readerDone
	e.wg.Wait()
}
