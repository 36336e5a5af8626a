// Package client is oakmeet's Go client: it asks the control plane to join a
// meeting, connects to the media node it was placed on, publishes local
// audio and video and receives everyone else's. It is used by the bot, the
// load generator and the tests. Media keys, when end-to-end encryption is
// on, live only here and in browsers, never on the node.
//
// A Call checks every node it is placed on by itself, before it connects:
// the node's certificate against the enrollment key and rules of the
// newest policy statement the host signed (HostView, pinned by the link's
// fingerprint; the meeting's first policy statement fixes the enrollment
// key), and then the welcome's ICE URLs, each SDP and each trickled
// candidate of the node against the certified identity key, before any is
// used. A node it refuses is reported in its next join (RefusalError,
// docs/SECURITY.md). A newer host policy that rules out its node stops its
// sending there at once, before it moves.
package client

import (
	"context"
	"net/http"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/signal"
)

// JoinRequest is what a participant tells the control plane about itself.
type JoinRequest struct {
	Name    string
	Country string // ISO 3166-1 alpha-2 hint, where the deployment accepts hints
	// Secret is the join secret from the meeting link's fragment.
	Secret string
	// Identity is the client's Ed25519 identity public key, the one its
	// key messages are signed with.
	Identity []byte
	// Replaces is this client's previous participant id when it moves to
	// another node (after a move message or the loss of its node), and
	// RejoinSecret the secret that participant's join answer handed out.
	Replaces     string
	RejoinSecret string
	// Refused says this client refused the node of the placement Replaces
	// names, and why (a Call sets it after a RefusalError): the control
	// plane audits it and places the join elsewhere.
	Refused *api.NodeRefusal
	// OnLobby, if set, is told each time the join waits in the lobby for
	// the host's decision (the first time and every ask after).
	OnLobby func(api.LobbyWait)
}

// NodeInfo is the media node a participant was placed on.
type NodeInfo = api.JoinNode

// JoinResult is the control plane's answer to a join.
type JoinResult struct {
	ParticipantID string
	Node          NodeInfo
	Token         string
	ICEServers    []webrtc.ICEServer
	// RejoinSecret proves this participant when a move replaces it.
	RejoinSecret string
	// Host is the host key and statements in force, as the control plane
	// says: the caller checks them against its link (HostView).
	Host api.HostState
	// Audit is the transparency log's state at the join: the newest
	// checkpoint and the index of this join's own entry, which a Call's
	// AuditWatcher holds the log to.
	Audit api.JoinAudit
}

// APIError is a refusal from the control plane, e.g. Status 503 with Code
// "no_capacity_in_allowed_regions".
type APIError = api.Error

// minLobbyAsk spaces the asks of a join waiting in the lobby: the control
// plane holds each ask open until the host decides, so a quicker answer
// means it does not, and the client must not hammer it.
const minLobbyAsk = 250 * time.Millisecond

// Join asks the control plane at serverURL for a place in meeting. A join
// the control plane holds in the lobby is asked again with its ticket
// until the host admits it (the answer) or denies it (an *APIError with
// code lobby_denied), or ctx ends.
func Join(ctx context.Context, hc *http.Client, serverURL, meetingID string, req JoinRequest) (JoinResult, error) {
	cl := apiclient.New(serverURL, hc)
	areq := api.JoinRequest{
		Name: req.Name, Location: api.Hint{Country: req.Country}, Secret: req.Secret, Identity: req.Identity,
		Replaces: req.Replaces, RejoinSecret: req.RejoinSecret, Refused: req.Refused,
	}
	for {
		asked := time.Now()
		r, wait, err := askJoin(ctx, cl, meetingID, areq)
		if err != nil {
			return JoinResult{}, err
		}
		if wait == nil {
			return JoinResult{
				ParticipantID: r.ParticipantID, Node: r.Node, Token: r.Token, ICEServers: iceServers(r.ICEServers),
				RejoinSecret: r.RejoinSecret, Host: r.Host, Audit: r.Audit,
			}, nil
		}
		if req.OnLobby != nil {
			req.OnLobby(*wait)
		}
		areq.LobbyTicket = wait.Ticket
		if d := minLobbyAsk - time.Since(asked); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return JoinResult{}, ctx.Err()
			}
		}
	}
}

func iceServers(in []signal.ICEServer) []webrtc.ICEServer {
	var out []webrtc.ICEServer
	for _, s := range in {
		out = append(out, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return out
}
