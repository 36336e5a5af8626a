package testcluster

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/oakmeet/oakmeet/api"
)

// Do sends one request as given, for the tests of bad input that no typed
// client would send: body is sent as JSON, or as is when it is a string
// (malformed JSON, say). The answer is decoded into out, an api type or
// *APIError, and its status returned. Everything else speaks through API.
func (c *Cluster) Do(method, path, auth string, body any, out any) int {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			c.t.Fatalf("%s %s: encode body: %v", method, path, err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.URL+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := c.HTTPClient().Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read answer: %v", method, path, err)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			c.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

// Get is Do for a GET with the operator token, which may read every
// meeting's routing, report and audit log; Do with no token tests what
// others may read.
func (c *Cluster) Get(path string, out any) int {
	return c.Do(http.MethodGet, path, c.operator, nil, out)
}

// APIError is an error answer as Do decodes it: the code and, as Error,
// the message. It is read through api.Error, so the wire form stays
// declared in package api alone.
type APIError struct {
	Code  string
	Error string
}

// UnmarshalJSON reads an api.Error.
func (e *APIError) UnmarshalJSON(data []byte) error {
	var ae api.Error
	if err := json.Unmarshal(data, &ae); err != nil {
		return err
	}
	*e = APIError{Code: ae.Code, Error: ae.Message}
	return nil
}
