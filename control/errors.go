package control

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/geo"
	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/placement"
)

func apiErr(status int, code, format string, args ...any) *api.Error {
	return api.Errorf(status, code, format, args...)
}

// toAPIError maps an error from any part of the control plane to what the
// client sees. Unknown errors become a 500 without internal detail.
func toAPIError(err error) *api.Error {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae
	}
	var uce *geo.UnknownCodeError
	if errors.As(err, &uce) {
		return apiErr(http.StatusBadRequest, "unknown_"+uce.Kind, "%s", err.Error())
	}
	if errors.Is(err, locate.ErrConflictingHint) {
		return apiErr(http.StatusBadRequest, api.CodeBadRequest, "%s", err.Error())
	}
	var ref *placement.Refusal
	if errors.As(err, &ref) {
		return &api.Error{Status: http.StatusServiceUnavailable, Code: ref.Code, Message: ref.Reason}
	}
	// A store that does not answer in time is a passing state of the
	// deployment, not a fault of the request: the client may try again.
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
		return apiErr(http.StatusServiceUnavailable, api.CodeUnavailable, "the store did not answer in time; try again")
	}
	// So is a connection between NATS servers (one of the cluster gone,
	// the connection moving to another) or a JetStream group electing.
	var jsErr *jetstream.APIError
	if errors.Is(err, nats.ErrDisconnected) || errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoHeartbeat) || errors.As(err, &jsErr) && jsErr.Code == http.StatusServiceUnavailable {
		w := apiErr(http.StatusServiceUnavailable, api.CodeUnavailable, "the store is changing servers; try again")
		w.RetryAfter = 1
		return w
	}
	return apiErr(http.StatusInternalServerError, api.CodeInternal, "internal error")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, e *api.Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	writeJSON(w, e.Status, e)
}

func badRequest(format string, args ...any) *api.Error {
	return apiErr(http.StatusBadRequest, api.CodeBadRequest, format, args...)
}
