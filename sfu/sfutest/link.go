package sfutest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/oakmeet/oakmeet/sfu"
)

// errPipeClosed is what a closed pipe end returns.
var errPipeClosed = errors.New("sfutest: pipe closed")

// pipeEnd is one end of an in-memory signaling connection.
type pipeEnd struct {
	in     <-chan []byte
	out    chan<- []byte
	closed chan struct{}
	once   *sync.Once
}

// Pipe returns the two ends of an in-memory sfu.Conn, standing in for the
// WebSocket between two nodes. Closing either end closes both; messages
// already queued are still read first.
func Pipe() (sfu.Conn, sfu.Conn) {
	ab, ba := make(chan []byte, 4096), make(chan []byte, 4096)
	closed, once := make(chan struct{}), new(sync.Once)
	return pipeEnd{in: ba, out: ab, closed: closed, once: once}, pipeEnd{in: ab, out: ba, closed: closed, once: once}
}

func (p pipeEnd) Read(ctx context.Context) ([]byte, error) {
	select {
	case b := <-p.in:
		return b, nil
	default:
	}
	select {
	case b := <-p.in:
		return b, nil
	case <-p.closed:
		return nil, errPipeClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p pipeEnd) Write(ctx context.Context, b []byte) error {
	select {
	case <-p.closed:
		return errPipeClosed
	default:
	}
	select {
	case p.out <- append([]byte(nil), b...):
		return nil
	case <-p.closed:
		return errPipeClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p pipeEnd) Close(string) error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

// LinkResult is what the two ServeLink calls of a link returned.
type LinkResult struct {
	A, B error
}

// Link joins servers a (node id aID, the dialer) and b (bID) by a relay
// link for meeting, as the node shells would after a successful handshake,
// with fresh identity keys. The returned channel gets both ServeLink
// results once the link has ended on both sides.
func Link(t testing.TB, meeting string, a *Server, aID string, b *Server, bID string) <-chan LinkResult {
	t.Helper()
	ca, cb := Pipe()
	return LinkOver(t, meeting, a, aID, ca, b, bID, cb)
}

// LinkOver is Link over the two ends of a connection the test made, ca for
// a and cb for b (see WebSocketPipe).
func LinkOver(t testing.TB, meeting string, a *Server, aID string, ca sfu.Conn, b *Server, bID string, cb sfu.Conn) <-chan LinkResult {
	t.Helper()
	pa, ka, _ := ed25519.GenerateKey(nil)
	pb, kb, _ := ed25519.GenerateKey(nil)
	binding := make([]byte, 32)
	_, _ = rand.Read(binding)
	done := make(chan LinkResult, 1)
	var wg sync.WaitGroup
	var res LinkResult
	wg.Go(func() {
		res.A = a.SFU.ServeLink(context.Background(), ca, sfu.Link{
			Meeting: meeting, Self: aID, Peer: bID, Dialer: true, Key: ka, PeerKey: pb, Binding: binding,
		})
	})
	wg.Go(func() {
		res.B = b.SFU.ServeLink(context.Background(), cb, sfu.Link{
			Meeting: meeting, Self: bID, Peer: aID, Key: kb, PeerKey: pa, Binding: binding,
		})
	})
	go func() {
		wg.Wait()
		done <- res
	}()
	return done
}

// WebSocketPipe returns the two ends of a real WebSocket on loopback, each
// wrapped as the node shell wraps its connections (sfu.WebSocketConn, with
// its read limit): a stand-in for the connection between two nodes where
// what matters is the transport, not the handshake.
func WebSocketPipe(t testing.TB) (dialer, acceptor sfu.Conn) {
	t.Helper()
	accepted := make(chan *websocket.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		accepted <- ws
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatalf("sfutest: dial a websocket pipe: %v", err)
	}
	select {
	case other := <-accepted:
		return sfu.WebSocketConn(ws), sfu.WebSocketConn(other)
	case <-ctx.Done():
		t.Fatal("sfutest: websocket pipe not accepted")
		return nil, nil
	}
}
