package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/oakmeet/oakmeet/api"
)

// A control-plane replica answers 503 unavailable while no leader can take
// the request (an election in progress), or when the leader it forwarded
// to stopped answering. Either way asking again, a little later, is what a
// client would do; a join asked again makes a new participant, as after
// any failed join.
const (
	retryFirst = 200 * time.Millisecond
	retryCap   = 2 * time.Second
	// DefaultRetryFor bounds the time a request is retried in all, the
	// first attempt's included. A NATS server that dies can leave the
	// streams it led without a leader for up to about 9 s, and a request
	// sent to the dead one waits out the control plane's 5 s bound on a
	// store operation before its 503: the bound leaves room for an
	// attempt after the election.
	DefaultRetryFor = 20 * time.Second
)

// WithRetry returns a client that retries a 503 unavailable answer for
// at most total (0: never).
func (c *Client) WithRetry(total time.Duration) *Client {
	n := *c
	n.retryFor = &total
	return &n
}

func (c *Client) retryTotal() time.Duration {
	if c.retryFor == nil {
		return DefaultRetryFor
	}
	return *c.retryFor
}

// send sends req, asking again with back-off while the answer is 503
// unavailable and the time allowed lasts; body is the request's body,
// sent again with each.
func (c *Client) send(ctx context.Context, req *http.Request, body []byte) (*http.Response, error) {
	deadline := time.Now().Add(c.retryTotal())
	wait := retryFirst
	for {
		resp, err := c.hc.Do(req)
		if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
			return resp, err
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(data))
		var e api.Error
		if json.Unmarshal(data, &e) != nil || e.Code != api.CodeUnavailable {
			return resp, nil
		}
		d := wait
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			d = max(d, time.Duration(s)*time.Second)
		}
		d = min(d, retryCap)
		if time.Now().Add(d).After(deadline) {
			return resp, nil
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, retryCap)
		req = req.Clone(ctx)
		if body != nil {
			req.Body = io.NopCloser(bytes.NewReader(body))
		}
	}
}
