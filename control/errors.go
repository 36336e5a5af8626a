package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/oakmeet/oakmeet/geo"
	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/placement"
)

// Stable error codes of the HTTP API (docs/API.md lists them).
const (
	CodeBadJSON      = "bad_json"
	CodeBadRequest   = "bad_request"
	CodeNotFound     = "not_found"
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeInternal     = "internal"
	CodeUnavailable  = "unavailable"
)

// APIError is an error with an HTTP status and a stable machine code.
type APIError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"error"`
}

func (e *APIError) Error() string { return e.Code + ": " + e.Message }

func apiErr(status int, code, format string, args ...any) *APIError {
	return &APIError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// toAPIError maps an error from any part of the control plane to what the
// client sees. Unknown errors become a 500 without internal detail.
func toAPIError(err error) *APIError {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae
	}
	var uce *geo.UnknownCodeError
	if errors.As(err, &uce) {
		return apiErr(http.StatusBadRequest, "unknown_"+uce.Kind, "%s", err.Error())
	}
	if errors.Is(err, locate.ErrConflictingHint) {
		return apiErr(http.StatusBadRequest, CodeBadRequest, "%s", err.Error())
	}
	var ref *placement.Refusal
	if errors.As(err, &ref) {
		return &APIError{Status: http.StatusServiceUnavailable, Code: ref.Code, Message: ref.Reason}
	}
	return apiErr(http.StatusInternalServerError, CodeInternal, "internal error")
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

func writeError(w http.ResponseWriter, e *APIError) {
	writeJSON(w, e.Status, e)
}
