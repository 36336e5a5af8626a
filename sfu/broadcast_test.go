package sfu

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/signal"
)

// discardConn is a signaling connection that takes every write at once.
type discardConn struct{ closed chan struct{} }

func (c discardConn) Read(ctx context.Context) ([]byte, error) {
	select {
	case <-c.closed:
	case <-ctx.Done():
	}
	return nil, context.Canceled
}
func (discardConn) Write(context.Context, []byte) error { return nil }
func (discardConn) Close(string) error                  { return nil }

// benchRoom is a room with n local members whose outboxes drain into
// discardConns; stop ends their writers.
func benchRoom(tb testing.TB, n int) (*room, func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &room{meeting: "m1", mbox: newMailbox(), log: slog.New(slog.DiscardHandler), maxRelay: signal.MaxRelayBytes}
	for i := range n {
		s := &session{id: Identity{Meeting: "m1", Participant: fmt.Sprintf("p%04d", i)}}
		s.open(ctx, nil, discardConn{}, slog.New(slog.DiscardHandler), sessionQueue(Config{MaxRelayBytes: signal.MaxRelayBytes}), "signaling")
		go s.out.run(s.conn, s.finish)
		r.members = append(r.members, s)
	}
	return r, func() {
		for _, s := range r.members {
			s.out.close()
			<-s.out.done
		}
		cancel()
	}
}

// relayPayload is an opaque JSON payload of about size bytes, shaped like
// a key message: a base64 string.
func relayPayload(size int) json.RawMessage {
	raw := make([]byte, size*3/4)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	b, _ := json.Marshal(map[string]string{"sealed": base64.StdEncoding.EncodeToString(raw)})
	return b
}

// BenchmarkBroadcastLargeRelay is one 400 KB key message sent to everyone
// in a meeting of 200 local participants.
func BenchmarkBroadcastLargeRelay(b *testing.B) {
	r, stop := benchRoom(b, 201)
	defer stop()
	from, payload := r.members[0], relayPayload(400_000)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		r.relay(from, "", payload)
	}
	b.StopTimer()
	for _, s := range r.members {
		if err := context.Cause(s.ctx); err != nil {
			b.Fatalf("%s disconnected: %v", s.id.Participant, err)
		}
	}
}

// gateConn is a signaling connection whose writes wait until open is
// closed; it records what was written.
type gateConn struct {
	open    chan struct{}
	mu      sync.Mutex
	written [][]byte
}

func (c *gateConn) Read(ctx context.Context) ([]byte, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (c *gateConn) Write(ctx context.Context, b []byte) error {
	select {
	case <-c.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	c.mu.Lock()
	c.written = append(c.written, b)
	c.mu.Unlock()
	return nil
}

func (c *gateConn) Close(string) error { return nil }

func (c *gateConn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.written)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestOutboxBoundsBytesUntilWritten(t *testing.T) {
	o := newOutbox(100, 1000)
	c := &gateConn{open: make(chan struct{})}
	go o.run(c, func(err error) { t.Errorf("write failed: %v", err) })
	msg := make([]byte, 400)
	for i := range 2 {
		if err := o.put(msg); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	// The first is being written and still counts: 1200 bytes would be
	// held.
	err := o.put(msg)
	if !errors.Is(err, ErrSlowPeer) || !strings.Contains(err.Error(), "1200 bytes") {
		t.Fatalf("third put: %v, want ErrSlowPeer naming the bytes", err)
	}
	if err := o.put(make([]byte, 200)); err != nil {
		t.Fatalf("a message that fits was refused: %v", err)
	}
	close(c.open)
	waitUntil(t, "the queue written", func() bool { return c.count() == 3 })
	for range 2 {
		if err := o.put(msg); err != nil {
			t.Fatalf("put after the queue drained: %v", err)
		}
	}
	o.close()
	<-o.done
	if c.count() != 5 {
		t.Fatalf("%d messages written, want 5", c.count())
	}
	if err := o.put(msg); err != nil {
		t.Fatalf("put after close: %v, want it dropped", err)
	}
}

func TestOutboxBoundsMessages(t *testing.T) {
	o := newOutbox(2, 1<<20)
	for i := range 2 {
		if err := o.put([]byte("x")); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if err := o.put([]byte("x")); !errors.Is(err, ErrSlowPeer) || !strings.Contains(err.Error(), "2 messages") {
		t.Fatalf("third put: %v, want ErrSlowPeer naming the count", err)
	}
}

func TestOutboxStopsAfterAFailedWrite(t *testing.T) {
	o := newOutbox(10, 1000)
	c := &gateConn{open: make(chan struct{})}
	if err := o.put([]byte("x")); err != nil {
		t.Fatal(err)
	}
	failed := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	go o.run(ctxConn{c, ctx}, func(err error) { failed <- err })
	if err := <-failed; !errors.Is(err, context.Canceled) {
		t.Fatalf("failure reported as %v", err)
	}
	<-o.done
	if err := o.put([]byte("y")); err != nil {
		t.Fatalf("put after a failed write: %v, want it dropped", err)
	}
}

// ctxConn writes with a fixed context, so a test can make writes fail.
type ctxConn struct {
	*gateConn
	ctx context.Context
}

func (c ctxConn) Write(_ context.Context, b []byte) error { return c.gateConn.Write(c.ctx, b) }

func TestSlowMemberIsDisconnectedOthersStay(t *testing.T) {
	r, stop := benchRoom(t, 3)
	defer stop()
	// Member 1 stops reading: its writes never finish.
	slow := &session{id: Identity{Meeting: "m1", Participant: "slow"}}
	gate := &gateConn{open: make(chan struct{})}
	slow.open(context.Background(), nil, gate, slog.New(slog.DiscardHandler), sessionQueue(Config{MaxRelayBytes: signal.MaxRelayBytes}), "signaling")
	go slow.out.run(slow.conn, slow.finish)
	defer func() {
		close(gate.open)
		slow.out.close()
		<-slow.out.done
	}()
	r.members = append(r.members, slow)

	payload := relayPayload(400_000)
	limit := sessionQueue(Config{MaxRelayBytes: signal.MaxRelayBytes}).bytes
	sent := limit/len(payload) + 2
	for range sent {
		r.relay(r.members[0], "", payload)
	}
	cause := context.Cause(slow.ctx)
	if !errors.Is(cause, ErrSlowPeer) || !strings.HasPrefix(cause.Error(), "signaling: ") {
		t.Fatalf("slow member's cause = %v, want ErrSlowPeer", cause)
	}
	if len(closeReason(cause.Error())) != len(cause.Error()) {
		t.Fatalf("the reason %q does not fit a close frame", cause)
	}
	for _, s := range r.members[:3] {
		if err := context.Cause(s.ctx); err != nil {
			t.Fatalf("%s disconnected: %v", s.id.Participant, err)
		}
	}
}
