// Package client is oakmeet's Go client: it asks the control plane to join a
// meeting, connects to the media node it was placed on, publishes local
// audio and video and receives everyone else's. It is used by the bot, the
// load generator and the tests. Media keys, when end-to-end encryption is
// on, live only here and in browsers, never on the node.
package client

import (
	"context"
	"net/http"

	"github.com/pion/webrtc/v4"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
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
type NodeInfo = api.JoinNode

// JoinResult is the control plane's answer to a join.
type JoinResult struct {
	ParticipantID string
	Node          NodeInfo
	Token         string
	ICEServers    []webrtc.ICEServer
}

// APIError is a refusal from the control plane, e.g. Status 503 with Code
// "no_capacity_in_allowed_regions".
type APIError = api.Error

// Join asks the control plane at serverURL for a place in meeting.
func Join(ctx context.Context, hc *http.Client, serverURL, meetingID string, req JoinRequest) (JoinResult, error) {
	r, err := apiclient.New(serverURL, hc).Join(ctx, meetingID, api.JoinRequest{
		Name: req.Name, Location: api.Hint{Country: req.Country}, Replaces: req.Replaces,
	})
	if err != nil {
		return JoinResult{}, err
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
