package sfutest

import (
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/oakmeet/oakmeet/signal"
)

// peerWait bounds how long a Peer waits for a message or for the node to
// close its connection.
const peerWait = 15 * time.Second

// Peer is a participant that speaks signaling only, over a real WebSocket,
// and records every message the node sends it. It negotiates no media.
type Peer struct {
	ID string
	// Nonce is the challenge the peer sent in its join
	// (signal.JoinNonceBytes): the node signs its SDPs to it over it.
	Nonce []byte
	t     testing.TB
	ws    *websocket.Conn

	mu   sync.Mutex
	msgs []signal.Message
	end  error // why reading stopped
	done chan struct{}
}

// Join connects participant id to the node at url with token and waits for
// its welcome. The connection closes when the test ends.
func Join(t testing.TB, url, id, token string) *Peer {
	t.Helper()
	return JoinWith(t, url, id, signal.Message{Token: token})
}

// JoinWith is Join with the join message join (its type is set, and a
// fresh nonce unless it has one): a participant that names a host key and
// statement, or sends a nonce of its choosing.
func JoinWith(t testing.TB, url, id string, join signal.Message) *Peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), peerWait)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("%s: dial %s: %v", id, url, err)
	}
	// Above anything the node may send, so that a message over the
	// protocol's limits is seen and refused here rather than cut off.
	ws.SetReadLimit(4 << 20)
	join.Type = signal.TypeJoin
	if join.Nonce == nil {
		join.Nonce = make([]byte, signal.JoinNonceBytes)
		_, _ = rand.Read(join.Nonce)
	}
	p := &Peer{ID: id, Nonce: join.Nonce, t: t, ws: ws, done: make(chan struct{})}
	p.Send(join)
	go p.read()
	t.Cleanup(p.Close)
	p.WaitFor("welcome", func(m signal.Message) bool { return m.Type == signal.TypeWelcome })
	return p
}

func (p *Peer) read() {
	defer close(p.done)
	for {
		_, data, err := p.ws.Read(context.Background())
		if err != nil {
			p.mu.Lock()
			p.end = err
			p.mu.Unlock()
			return
		}
		m, err := signal.Decode(data)
		if err != nil {
			p.t.Errorf("%s: the node sent a message the protocol refuses: %v", p.ID, err)
			continue
		}
		p.mu.Lock()
		p.msgs = append(p.msgs, m)
		p.mu.Unlock()
	}
}

// Send encodes m and writes it.
func (p *Peer) Send(m signal.Message) {
	p.t.Helper()
	b, err := signal.Encode(m)
	if err != nil {
		p.t.Fatal(err)
	}
	p.SendRaw(b)
}

// SendRaw writes b as one message.
func (p *Peer) SendRaw(b []byte) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), peerWait)
	defer cancel()
	if err := p.ws.Write(ctx, websocket.MessageText, b); err != nil {
		p.t.Fatalf("%s: write: %v", p.ID, err)
	}
}

// Received returns a copy of what the peer has got so far, in order.
func (p *Peer) Received() []signal.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.msgs)
}

// Count is how many messages matching pred the peer has got.
func (p *Peer) Count(pred func(signal.Message) bool) int {
	n := 0
	for _, m := range p.Received() {
		if pred(m) {
			n++
		}
	}
	return n
}

// WaitFor waits until the peer has got a message matching pred and returns
// the first one.
func (p *Peer) WaitFor(what string, pred func(signal.Message) bool) signal.Message {
	p.t.Helper()
	deadline := time.Now().Add(peerWait)
	for {
		msgs := p.Received()
		if i := slices.IndexFunc(msgs, pred); i >= 0 {
			return msgs[i]
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: timed out after %v waiting for %s; got %d messages", p.ID, peerWait, what, len(msgs))
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// Closed waits for the node to close the connection and returns the close
// status it gave.
func (p *Peer) Closed() websocket.StatusCode {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(peerWait):
		p.t.Fatalf("%s: the node did not close the connection", p.ID)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var ce websocket.CloseError
	if !errors.As(p.end, &ce) {
		p.t.Fatalf("%s: connection ended with %v, not a close frame", p.ID, p.end)
	}
	return ce.Code
}

// Open reports whether the connection is still up.
func (p *Peer) Open() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Close closes the connection and waits for the reader; safe to call
// twice.
func (p *Peer) Close() {
	_ = p.ws.CloseNow()
	<-p.done
}
