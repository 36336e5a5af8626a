package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
)

func TestJoin(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Name     string `json:"name"`
			Location struct {
				Country string `json:"country"`
			} `json:"location"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || r.Method != http.MethodPost {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		switch r.URL.Path {
		case "/api/meetings/m/1/join": // the decoded path of an id with a slash
			if r.URL.EscapedPath() != "/api/meetings/m%2F1/join" {
				t.Errorf("meeting id not escaped: %s", r.URL.EscapedPath())
			}
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":"no such meeting","code":"meeting_not_found"}`))
		case "/api/meetings/ok/join":
			if body.Name != "Ann" || body.Location.Country != "DE" {
				t.Errorf("request body %+v", body)
			}
			_, _ = w.Write([]byte(`{"participant_id":"p1","node":{"id":"n1","country":"DE","region":"eu-central","url":"ws://127.0.0.1:1/ws"},"token":"tok","ice_servers":[{"urls":["stun:127.0.0.1:3478"]}]}`))
		case "/api/meetings/full/join":
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":"no node in the allowed regions has room","code":"no_capacity_in_allowed_regions"}`))
		default:
			http.Error(w, "upstream broke", http.StatusBadGateway)
		}
	}))
	defer srv.Close()
	ctx := context.Background()

	jr, err := Join(ctx, srv.Client(), srv.URL+"/", "ok", JoinRequest{Name: "Ann", Country: "DE"})
	if err != nil {
		t.Fatal(err)
	}
	if jr.ParticipantID != "p1" || jr.Token != "tok" || jr.Node != (NodeInfo{ID: "n1", Country: "DE", Region: "eu-central", URL: "ws://127.0.0.1:1/ws"}) ||
		len(jr.ICEServers) != 1 || jr.ICEServers[0].URLs[0] != "stun:127.0.0.1:3478" {
		t.Fatalf("JoinResult = %+v", jr)
	}

	tests := []struct {
		meeting string
		status  int
		code    string
	}{
		{"full", http.StatusServiceUnavailable, "no_capacity_in_allowed_regions"},
		{"m/1", http.StatusNotFound, "meeting_not_found"},
		{"other", http.StatusBadGateway, ""},
	}
	for _, tc := range tests {
		_, err := Join(ctx, srv.Client(), srv.URL, tc.meeting, JoinRequest{Name: "Ann"})
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != tc.status || ae.Code != tc.code || ae.Message == "" {
			t.Fatalf("Join(%s) error = %#v", tc.meeting, err)
		}
	}
}

// A join held in the lobby is asked again with its ticket until the host
// decides: admitted, the answer comes with the rejoin secret and the host
// state; denied, the refusal is the caller's.
func TestJoinWaitsInTheLobby(t *testing.T) {
	var asks []api.JoinRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req api.JoinRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		asks = append(asks, req)
		switch {
		case req.Secret != "s3cret":
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"error":"wrong secret","code":"bad_meeting_secret"}`))
		case req.LobbyTicket == "" || req.LobbyTicket == "t1" && len(asks) < 3:
			w.WriteHeader(http.StatusAccepted)
			_ = json.NewEncoder(w).Encode(api.LobbyWait{Code: api.CodeLobby, Ticket: "t1", Wait: time.Second, Message: "the host decides"})
		case r.URL.Path == "/api/meetings/deny/join":
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"error":"the host turned you away","code":"lobby_denied"}`))
		default:
			_ = json.NewEncoder(w).Encode(api.JoinResponse{ParticipantID: "p1", Node: api.JoinNode{ID: "n1", URL: "ws://127.0.0.1:1/ws"}, Token: "tok",
				RejoinSecret: "rj", Host: api.HostState{PolicyHash: "h"}})
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	waits := 0
	req := JoinRequest{Name: "Ann", Secret: "s3cret", Identity: []byte("id"), OnLobby: func(w api.LobbyWait) { waits++ }}
	jr, err := Join(ctx, srv.Client(), srv.URL, "ok", req)
	if err != nil || jr.ParticipantID != "p1" || jr.RejoinSecret != "rj" || jr.Host.PolicyHash != "h" {
		t.Fatalf("admitted join: %+v %v", jr, err)
	}
	if len(asks) != 3 || waits != 2 || asks[0].LobbyTicket != "" || asks[2].LobbyTicket != "t1" || string(asks[2].Identity) != "id" {
		t.Fatalf("asks %+v, %d lobby waits", asks, waits)
	}
	_, err = Join(ctx, srv.Client(), srv.URL, "deny", req)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != "lobby_denied" {
		t.Fatalf("denied join: %v", err)
	}
	req.Secret = "wrong"
	if _, err = Join(ctx, srv.Client(), srv.URL, "ok", req); !errors.As(err, &ae) || ae.Code != "bad_meeting_secret" {
		t.Fatalf("wrong secret: %v", err)
	}
}
