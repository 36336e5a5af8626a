package control

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/oakmeet/oakmeet/api"
)

// A store that does not answer in time is answered 503, which a client
// retries; only what is really unknown is a 500.
func TestStoreTimeoutsAreUnavailableNotInternal(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("meeting x: %w", context.DeadlineExceeded), http.StatusServiceUnavailable, api.CodeUnavailable},
		{fmt.Errorf("meeting x: %w", nats.ErrTimeout), http.StatusServiceUnavailable, api.CodeUnavailable},
		{fmt.Errorf("meeting x unreadable: %w", fmt.Errorf("bad json")), http.StatusInternalServerError, api.CodeInternal},
	} {
		ae := toAPIError(tc.err)
		if ae.Status != tc.status || ae.Code != tc.code {
			t.Errorf("%v: %d %s, want %d %s", tc.err, ae.Status, ae.Code, tc.status, tc.code)
		}
	}
}
