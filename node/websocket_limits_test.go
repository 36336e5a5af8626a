package node

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/oakmeet/oakmeet/signal"
)

// joined dials f's node as a participant with a good token and reads the
// welcome. The caller decides whether anything reads afterwards.
func (f *fixture) joined(t *testing.T, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, f.node.Info().URL, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.CloseNow() })
	ws.SetReadLimit(-1)
	if err := ws.Write(ctx, websocket.MessageText, []byte(joinMsg(f.token(t, f.key, f.node.Info().ID, time.Now().Add(time.Minute))))); err != nil {
		t.Fatal(err)
	}
	_, data, err := ws.Read(ctx)
	if err != nil {
		t.Fatalf("read welcome: %v", err)
	}
	if m, err := signal.Decode(data); err != nil || m.Type != signal.TypeWelcome {
		t.Fatalf("want a welcome, got %+v %v", m, err)
	}
	return ws
}

// readUntilClosed reads and discards until the connection ends, and
// returns the error that ended it.
func readUntilClosed(ctx context.Context, ws *websocket.Conn) error {
	for {
		if _, _, err := ws.Read(ctx); err != nil {
			return err
		}
	}
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (f *fixture) participants() int { return f.node.sfu.Load().Participants }

func TestWebSocketOversizedFirstMessageEndsConnection(t *testing.T) {
	f := start(t, Config{ID: "de-fra", Country: "DE", WebSocket: WebSocketLimits{FirstMessageBytes: 1 << 10}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, f.node.Info().URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	// A join padded past the limit, before any token is checked.
	big := `{"v":1,"type":"join","token":"` + strings.Repeat("A", 4<<10) + `"}`
	if err := ws.Write(ctx, websocket.MessageText, []byte(big)); err != nil {
		t.Fatal(err)
	}
	err = readUntilClosed(ctx, ws)
	if got := websocket.CloseStatus(err); got != websocket.StatusMessageTooBig {
		t.Fatalf("closed with %v (%v), want %v", got, err, websocket.StatusMessageTooBig)
	}
}

func TestWebSocketOversizedMessageAfterJoinEndsConnection(t *testing.T) {
	f := start(t, Config{ID: "de-fra", Country: "DE", WebSocket: WebSocketLimits{MessageBytes: 8 << 10}})
	ws := f.joined(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- readUntilClosed(ctx, ws) }()
	if err := ws.Write(ctx, websocket.MessageText, []byte(strings.Repeat(" ", 16<<10))); err != nil {
		t.Fatal(err)
	}
	if got := websocket.CloseStatus(<-done); got != websocket.StatusMessageTooBig {
		t.Fatalf("closed with %v, want %v", got, websocket.StatusMessageTooBig)
	}
	waitUntil(t, "participant still counted", 5*time.Second, func() bool { return f.participants() == 0 })
}

func TestWebSocketPeerThatNeverAnswersPingsIsClosed(t *testing.T) {
	f := start(t, Config{ID: "de-fra", Country: "DE", WebSocket: WebSocketLimits{
		PingInterval: 20 * time.Millisecond, PongTimeout: 50 * time.Millisecond, IdleTimeout: -1}})
	began := time.Now() // before the node accepts: the first ping is due after it
	ws := f.joined(t, nil)
	if f.participants() != 1 {
		t.Fatalf("%d participants after the welcome, want 1", f.participants())
	}
	// The client stops reading, so it answers no ping.
	waitUntil(t, "a peer that never answers pings is still connected", 5*time.Second, func() bool { return f.participants() == 0 })
	if d := time.Since(began); d < 50*time.Millisecond {
		t.Fatalf("closed %v after dialing, before a pong could be late", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := readUntilClosed(ctx, ws); errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("the connection is still open from the client's side")
	}
}

func TestWebSocketIdleConnectionIsClosed(t *testing.T) {
	const idle = 80 * time.Millisecond
	f := start(t, Config{ID: "de-fra", Country: "DE", WebSocket: WebSocketLimits{PingInterval: -1, IdleTimeout: idle}})
	began := time.Now() // before its join, the last thing the node hears
	ws := f.joined(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// It reads (it would answer pings) but sends nothing.
	err := readUntilClosed(ctx, ws)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("an idle connection is still open")
	}
	if d := time.Since(began); d < idle {
		t.Fatalf("closed %v after dialing, sooner than the idle timeout %v", d, idle)
	}
	waitUntil(t, "participant still counted", 5*time.Second, func() bool { return f.participants() == 0 })
}

func TestWebSocketMessagesKeepConnectionAlive(t *testing.T) {
	// Wide enough margins that a loaded machine's scheduling does not
	// look like silence.
	const idle = 300 * time.Millisecond
	f := start(t, Config{ID: "de-fra", Country: "DE", WebSocket: WebSocketLimits{PingInterval: -1, IdleTimeout: idle}})
	ws := f.joined(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- readUntilClosed(ctx, ws) }()
	// A message every idle/6 for over two idle timeouts: never quiet
	// long enough to be closed.
	ping, _ := signal.Encode(signal.Message{Type: signal.TypePing})
	for range 14 {
		if err := ws.Write(ctx, websocket.MessageText, ping); err != nil {
			t.Fatalf("write: %v", err)
		}
		select {
		case err := <-closed:
			t.Fatalf("closed while sending messages: %v", err)
		case <-time.After(idle / 6):
		}
	}
}

func TestWebSocketPongsKeepConnectionAlive(t *testing.T) {
	const idle = 300 * time.Millisecond
	f := start(t, Config{ID: "de-fra", Country: "DE", WebSocket: WebSocketLimits{
		PingInterval: 20 * time.Millisecond, PongTimeout: time.Second, IdleTimeout: idle}})
	var pings atomic.Int64
	ws := f.joined(t, &websocket.DialOptions{OnPingReceived: func(context.Context, []byte) bool {
		pings.Add(1)
		return true
	}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- readUntilClosed(ctx, ws) }()
	// Thirty pings answered take at least 600 ms, two idle timeouts,
	// without a single message from the client.
	waitUntil(t, "thirty pings", 10*time.Second, func() bool {
		select {
		case err := <-closed:
			t.Fatalf("closed though it answers pings (after %d): %v", pings.Load(), err)
		default:
		}
		return pings.Load() >= 30
	})
	if f.participants() != 1 {
		t.Fatalf("%d participants, want 1", f.participants())
	}
}

func TestWebSocketSilentBeforeJoinIsRefused(t *testing.T) {
	f := start(t, Config{ID: "de-fra", Country: "DE", WebSocket: WebSocketLimits{JoinTimeout: 50 * time.Millisecond}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, f.node.Info().URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	// A read that outlives its deadline ends the connection: the node
	// answers nothing more.
	began := time.Now()
	if err := readUntilClosed(ctx, ws); errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("a connection that sends no join is still open")
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Fatalf("closed after %v, want about the 50ms join timeout", d)
	}
}

func TestWebSocketLimitDefaults(t *testing.T) {
	d := DefaultWebSocketLimits()
	if got := (WebSocketLimits{}).withDefaults(); got != d {
		t.Fatalf("zero limits: %+v, want %+v", got, d)
	}
	if d.MessageBytes <= signal.MaxRelayBytes || d.FirstMessageBytes < signal.MaxMessageBytes {
		t.Fatalf("defaults below the protocol's own limits: %+v", d)
	}
	if d.PongTimeout >= d.IdleTimeout || d.PingInterval >= d.IdleTimeout {
		t.Fatalf("an answered ping must come within the idle timeout: %+v", d)
	}
	off := WebSocketLimits{PingInterval: -1, IdleTimeout: -1, JoinTimeout: -1}.withDefaults()
	if off.PingInterval > 0 || off.IdleTimeout > 0 || off.JoinTimeout != d.JoinTimeout {
		t.Fatalf("negative durations: %+v", off)
	}
}
