package node

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/signal"
)

// A participant that joins with a good token and then only reads (its
// WebSocket answers pings, so it is never idle) never negotiates media:
// the node drops it at the negotiation deadline, with a leave of its own
// reason, and tells the control plane it left, so its seat is freed.
func TestSignalingDropsParticipantThatNeverNegotiates(t *testing.T) {
	const deadline = 300 * time.Millisecond
	f := start(t, Config{ID: "de-fra", Country: "DE", WebSocket: WebSocketLimits{
		NegotiationTimeout: deadline, PingInterval: 20 * time.Millisecond, IdleTimeout: 200 * time.Millisecond}})
	events, err := f.nc.SubscribeSync(cluster.SubjectEvents("de-fra"))
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	ws := f.joined(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var leave signal.Message
	for leave.Type != signal.TypeLeave {
		_, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("connection ended before a leave: %v", err)
		}
		leave, _ = signal.Decode(data)
	}
	took := time.Since(began)
	if leave.Reason != signal.ReasonNegotiationTimeout {
		t.Fatalf("leave reason %q, want %q", leave.Reason, signal.ReasonNegotiationTimeout)
	}
	if took < deadline || took > deadline+3*time.Second {
		t.Fatalf("dropped after %v, want about the %v deadline", took, deadline)
	}
	if err := readUntilClosed(ctx, ws); websocket.CloseStatus(err) == -1 && ctx.Err() != nil {
		t.Fatal("the connection stays open after the leave")
	}
	for {
		msg, err := events.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("no disconnected event: %v", err)
		}
		e, _ := cluster.Decode[cluster.Event]("event", msg.Data)
		if e.Kind == cluster.EventDisconnected && e.Participant == "p1" {
			if e.Reason != signal.ReasonNegotiationTimeout {
				t.Fatalf("disconnected with reason %q, want %q", e.Reason, signal.ReasonNegotiationTimeout)
			}
			break
		}
	}
	waitUntil(t, "the seat is given up", 5*time.Second, func() bool { return f.participants() == 0 })
}

// dialUpgrade opens a WebSocket to the node and returns it, or the HTTP
// status it was refused with.
func dialUpgrade(t *testing.T, url string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, url, nil)
	if ws != nil {
		t.Cleanup(func() { _ = ws.CloseNow() })
	}
	return ws, resp, err
}

func checkRefusal(t *testing.T, resp *http.Response, err error, status int, code string) {
	t.Helper()
	if err == nil || resp == nil || resp.StatusCode != status {
		t.Fatalf("upgrade: %v %v, want refused %d", resp, err, status)
	}
	var e api.Error
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Code != code || e.Message == "" {
		t.Fatalf("refusal body: %+v %v, want code %q", e, err, code)
	}
}

func (f *fixture) pendingCount() int {
	f.node.pending.mu.Lock()
	defer f.node.pending.mu.Unlock()
	return f.node.pending.total
}

// Upgrades that have not yet sent their first message are capped per
// address: one over is answered 429 before the upgrade; one that joins no
// longer counts, and one that goes away frees its place.
func TestSignalingCapsNotYetJoinedPerAddress(t *testing.T) {
	f := start(t, Config{ID: "de-fra", Country: "DE", WebSocket: WebSocketLimits{MaxPending: -1, MaxPendingPerIP: 3}})
	url := f.node.Info().URL
	var held []*websocket.Conn
	for range 3 {
		ws, _, err := dialUpgrade(t, url)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, ws)
	}
	_, resp, err := dialUpgrade(t, url)
	checkRefusal(t, resp, err, http.StatusTooManyRequests, api.CodeRateLimited)
	if resp.Header.Get("Retry-After") == "" {
		t.Fatal("a 429 without Retry-After")
	}

	// One of them joins: it is a participant now, not a pending upgrade.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := held[0].Write(ctx, websocket.MessageText, []byte(joinMsg(f.token(t, f.key, "de-fra", time.Now().Add(time.Minute))))); err != nil {
		t.Fatal(err)
	}
	if _, data, err := held[0].Read(ctx); err != nil || !strings.Contains(string(data), `"welcome"`) {
		t.Fatalf("join: %s %v", data, err)
	}
	if _, _, err := dialUpgrade(t, url); err != nil {
		t.Fatalf("after one joined: %v", err)
	}
	_, resp, err = dialUpgrade(t, url)
	checkRefusal(t, resp, err, http.StatusTooManyRequests, api.CodeRateLimited)

	// One goes away without joining: its place is free again.
	_ = held[1].CloseNow()
	waitUntil(t, "the closed upgrade stops counting", 5*time.Second, func() bool { return f.pendingCount() == 2 })
	if _, _, err := dialUpgrade(t, url); err != nil {
		t.Fatalf("after one went away: %v", err)
	}
}

// The node-wide cap answers 503 once that many upgrades wait for their
// first message, whichever addresses they came from.
func TestSignalingCapsNotYetJoinedNodeWide(t *testing.T) {
	f := start(t, Config{ID: "de-fra", Country: "DE", WebSocket: WebSocketLimits{MaxPending: 4, MaxPendingPerIP: -1}})
	url := f.node.Info().URL
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			if _, _, err := dialUpgrade(t, url); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("upgrade within the cap: %v", err)
	}
	_, resp, err := dialUpgrade(t, url)
	checkRefusal(t, resp, err, http.StatusServiceUnavailable, api.CodeUnavailable)
	if n := f.pendingCount(); n != 4 {
		t.Fatalf("%d pending, want 4", n)
	}
}
