// Package sfutest runs an SFU behind a real WebSocket endpoint for tests,
// standing in for the node shell: it reads the join message, checks a fake
// token of the form "meeting|participant|name", and hands the connection to
// SFU.Serve.
package sfutest

import (
	"context"
	"crypto/ed25519"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"

	"github.com/oakmeet/oakmeet/sfu"
	"github.com/oakmeet/oakmeet/signal"
)

// Server is an SFU with a WebSocket endpoint at URL.
type Server struct {
	SFU *sfu.SFU
	URL string // ws://127.0.0.1:PORT/ws
	// IdentityKey is the public half of the key the SFU signs its SDPs
	// to participants with (sfu.Config.Key).
	IdentityKey ed25519.PublicKey
	http        *httptest.Server

	mu      sync.Mutex
	results map[string]error // Serve's result per participant, last connection wins
	serving sync.WaitGroup
}

// Token makes the fake join token this server accepts.
func Token(meeting, participant, name string) string {
	return meeting + "|" + participant + "|" + name
}

// Start runs an SFU with cfg (LoopbackOnly is forced; without a Key it
// gets one of its own) and stops it when the test ends.
func Start(t testing.TB, cfg sfu.Config) *Server {
	t.Helper()
	cfg.LoopbackOnly = true
	if cfg.Key == nil {
		_, key, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Key = key
	}
	s, err := sfu.New(cfg)
	if err != nil {
		t.Fatalf("sfu.New: %v", err)
	}
	srv := &Server{SFU: s, IdentityKey: cfg.Key.Public().(ed25519.PublicKey), results: map[string]error{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", srv.handle)
	srv.http = httptest.NewServer(mux)
	srv.URL = "ws" + strings.TrimPrefix(srv.http.URL, "http") + "/ws"
	t.Cleanup(srv.Close)
	return srv
}

// Close stops the SFU and the HTTP server; safe to call twice.
func (s *Server) Close() {
	_ = s.SFU.Close()
	s.serving.Wait()
	s.http.Close()
}

// Result reports what Serve returned for a participant, once it has.
func (s *Server) Result(participant string) (error, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	err, ok := s.results[participant]
	return err, ok
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	s.serving.Add(1)
	defer s.serving.Done()
	ctx := context.Background()
	_, data, err := ws.Read(ctx)
	if err != nil {
		return
	}
	m, err := signal.Decode(data)
	parts := strings.Split(m.Token, "|")
	if err != nil || m.Type != signal.TypeJoin || len(parts) != 3 {
		b, _ := signal.Encode(signal.Message{Type: signal.TypeError, Code: "bad_token", Message: "join with a valid token first"})
		_ = ws.Write(ctx, websocket.MessageText, b)
		_ = ws.Close(websocket.StatusPolicyViolation, "bad token")
		return
	}
	id := sfu.Identity{Meeting: parts[0], Participant: parts[1], Name: parts[2], Nonce: m.Nonce}
	err = s.SFU.Serve(ctx, sfu.WebSocketConn(ws), id)
	s.mu.Lock()
	s.results[id.Participant] = err
	s.mu.Unlock()
}
