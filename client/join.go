// Package client is oakmeet's Go client: it asks the control plane to join a
// meeting, connects to the media node it was placed on, publishes local
// audio and video and receives everyone else's. It is used by the bot, the
// load generator and the tests. Media keys, when end-to-end encryption is
// on, live only here and in browsers, never on the node.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/pion/webrtc/v4"

	"github.com/oakmeet/oakmeet/signal"
)

// JoinRequest is what a participant tells the control plane about itself.
type JoinRequest struct {
	Name    string
	Country string // ISO 3166-1 alpha-2 hint, where the deployment accepts hints
	// Replaces is this client's previous participant id when it moves to
	// another node (after a move message or the loss of its node).
	Replaces string
}

// NodeInfo is the media node a participant was placed on.
type NodeInfo struct {
	ID      string `json:"id"`
	Country string `json:"country"`
	Region  string `json:"region"`
	URL     string `json:"url"`
}

// JoinResult is the control plane's answer to a join.
type JoinResult struct {
	ParticipantID string
	Node          NodeInfo
	Token         string
	ICEServers    []webrtc.ICEServer
}

// APIError is a refusal from the control plane, e.g. Status 409 with Code
// "no_capacity_in_allowed_regions".
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("control plane: %d %s: %s", e.Status, e.Code, e.Message)
}

const maxAPIResponse = 1 << 20

// Join asks the control plane at serverURL for a place in meeting.
func Join(ctx context.Context, hc *http.Client, serverURL, meetingID string, req JoinRequest) (JoinResult, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	body := struct {
		Name     string `json:"name"`
		Location struct {
			Country string `json:"country,omitempty"`
		} `json:"location"`
		Replaces string `json:"replaces,omitempty"`
	}{Name: req.Name, Replaces: req.Replaces}
	body.Location.Country = req.Country
	b, err := json.Marshal(body)
	if err != nil {
		return JoinResult{}, fmt.Errorf("encode join request: %w", err)
	}
	u := strings.TrimRight(serverURL, "/") + "/api/meetings/" + url.PathEscape(meetingID) + "/join"
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return JoinResult{}, fmt.Errorf("join request: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(hr)
	if err != nil {
		return JoinResult{}, fmt.Errorf("join meeting %s: %w", meetingID, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIResponse))
	if err != nil {
		return JoinResult{}, fmt.Errorf("read join response: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		apiErr := &APIError{Status: resp.StatusCode}
		var e struct {
			Error string `json:"error"`
			Code  string `json:"code"`
		}
		if json.Unmarshal(data, &e) == nil {
			apiErr.Code, apiErr.Message = e.Code, e.Error
		}
		if apiErr.Message == "" {
			apiErr.Message = strings.TrimSpace(string(data))
		}
		return JoinResult{}, apiErr
	}
	var r struct {
		ParticipantID string             `json:"participant_id"`
		Node          NodeInfo           `json:"node"`
		Token         string             `json:"token"`
		ICEServers    []signal.ICEServer `json:"ice_servers"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return JoinResult{}, fmt.Errorf("decode join response: %w", err)
	}
	if r.Token == "" || r.Node.URL == "" {
		return JoinResult{}, fmt.Errorf("join response without token or node url")
	}
	return JoinResult{ParticipantID: r.ParticipantID, Node: r.Node, Token: r.Token, ICEServers: iceServers(r.ICEServers)}, nil
}

func iceServers(in []signal.ICEServer) []webrtc.ICEServer {
	var out []webrtc.ICEServer
	for _, s := range in {
		out = append(out, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return out
}
