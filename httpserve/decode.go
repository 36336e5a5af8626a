package httpserve

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
)

// BodyError is why a request body was not accepted: Status is the HTTP
// status to answer with (400, 408 or 413).
type BodyError struct {
	Status int
	Err    error
}

func (e *BodyError) Error() string { return e.Err.Error() }
func (e *BodyError) Unwrap() error { return e.Err }

// DecodeJSON reads r's body, at most max bytes, as one JSON value into v,
// strictly: unknown fields and data after the value are errors, so typos
// do not silently weaken a request. Every error is a *BodyError.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any, max int64) error {
	r.Body = http.MaxBytesReader(w, r.Body, max)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	// Only white space may follow the value.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if be := bodyError(err); err != nil && be.Status != http.StatusBadRequest {
			return be
		}
		return &BodyError{Status: http.StatusBadRequest, Err: errors.New("request body: unexpected data after the JSON value")}
	}
	return nil
}

func bodyError(err error) *BodyError {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &BodyError{Status: http.StatusRequestEntityTooLarge, Err: fmt.Errorf("request body larger than %d bytes", mbe.Limit)}
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return &BodyError{Status: http.StatusRequestTimeout, Err: errors.New("request body: not received within the server's read timeout")}
	}
	return &BodyError{Status: http.StatusBadRequest, Err: fmt.Errorf("request body: %w", err)}
}
