package client

import (
	"context"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
)

// askJoin sends one join request: the answer, or the lobby's 202 to wait
// on, or the refusal.
func askJoin(ctx context.Context, cl *apiclient.Client, meetingID string, req api.JoinRequest) (api.JoinResponse, *api.LobbyWait, error) {
	return cl.JoinOnce(ctx, meetingID, req)
}
