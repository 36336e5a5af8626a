package system

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/oakmeet/oakmeet/node"
	"github.com/oakmeet/oakmeet/signal"
	"github.com/oakmeet/oakmeet/testcluster"
)

// censor decides what a lying node tells one participant: given the
// participant a message goes to and the message, it returns the message to
// send (possibly edited) or false to withhold it.
type censor func(to string, m signal.Message) (signal.Message, bool)

// liar is a malicious media node: a real node (SFU, relays, NATS, its
// enrollment) whose signaling reaches participants only through a front
// that edits what each one is told. Media flows as the real node forwards
// it. Clients are sent to the front: it is the node's public URL.
type liar struct {
	t        *testing.T
	upstream string // the real node's signaling URL
	srv      *http.Server
	ln       net.Listener

	mu     sync.Mutex
	censor censor
	down   map[string]*websocket.Conn // participant connections, by id
	conns  sync.WaitGroup
}

// startLiar starts a lying node in cluster c: a real node registered as
// id, whose public signaling URL is the front's.
func startLiar(t *testing.T, c *testcluster.Cluster, spec testcluster.NodeSpec) *liar {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	realPort := freePort(t)
	l := &liar{t: t, upstream: fmt.Sprintf("ws://127.0.0.1:%d/ws", realPort), ln: ln, down: map[string]*websocket.Conn{}}
	l.srv = &http.Server{Handler: http.HandlerFunc(l.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = l.srv.Serve(ln) }()

	nc, err := c.NATS().ConnectNode(spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	identity, cert := c.Enroll(spec.ID, spec.Country, spec.Region, time.Hour)
	n, err := node.New(context.Background(), node.Config{
		ID: spec.ID, Country: spec.Country, Region: spec.Region, NATS: nc, Logger: slog.New(slog.DiscardHandler),
		Listen: fmt.Sprintf("127.0.0.1:%d", realPort), PublicURL: "ws://" + ln.Addr().String() + "/ws",
		LoopbackOnly: true, Timing: c.Timing, IdentityKey: identity, Cert: cert, Interceptors: spec.Interceptors,
		// No TokenKey: the node trusts the key the control plane stored.
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := n.Run(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("lying node %s: %v", spec.ID, err)
		}
	}()
	t.Cleanup(func() {
		_ = l.srv.Close()
		cancel()
		<-done
		nc.Close()
		l.conns.Wait()
	})
	return l
}

func (l *liar) setCensor(c censor) {
	l.mu.Lock()
	l.censor = c
	l.mu.Unlock()
}

func (l *liar) judge(to string, m signal.Message) (signal.Message, bool) {
	l.mu.Lock()
	c := l.censor
	l.mu.Unlock()
	if c == nil {
		return m, true
	}
	return c(to, m)
}

// serve fronts one signaling connection: the client's messages go to the
// node as they are; the node's are decoded, judged and re-encoded.
func (l *liar) serve(w http.ResponseWriter, r *http.Request) {
	l.conns.Add(1)
	defer l.conns.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	up, _, err := websocket.Dial(ctx, l.upstream, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer up.CloseNow()
	down, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer down.CloseNow()
	up.SetReadLimit(signal.MaxRelayBytes)
	down.SetReadLimit(signal.MaxRelayBytes)
	go func() {
		defer cancel()
		for {
			typ, data, err := down.Read(ctx)
			if err != nil || up.Write(ctx, typ, data) != nil {
				return
			}
		}
	}()
	var self string
	for {
		typ, data, err := up.Read(ctx)
		if err != nil {
			return
		}
		m, err := signal.DecodeLimit(data, signal.MaxRelayBytes)
		if err == nil {
			if m.Type == signal.TypeWelcome {
				self = m.ID
				l.mu.Lock()
				l.down[self] = down
				l.mu.Unlock()
				defer func() {
					l.mu.Lock()
					delete(l.down, self)
					l.mu.Unlock()
				}()
			}
			out, ok := l.judge(self, m)
			if !ok {
				continue
			}
			if b, err := signal.Encode(out); err == nil {
				data = b
			}
		}
		if down.Write(ctx, typ, data) != nil {
			return
		}
	}
}

// inject sends a message of the node's own making to every participant
// connected through the front.
func (l *liar) inject(m signal.Message) {
	b, err := signal.Encode(m)
	if err != nil {
		l.t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, c := range l.down {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := c.Write(ctx, websocket.MessageText, b); err != nil {
			l.t.Logf("inject to %s: %v", id, err)
		}
		cancel()
	}
}
