// Package apiclient is the Go client of the control plane's HTTP API
// (package api holds the wire types). The command line, the bot, the load
// generator and the tests use it, so the API is spoken in one place.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/policy"
)

// maxResponse bounds what is read of an answer; an audit export is
// streamed instead, so a long log is never cut.
const maxResponse = 8 << 20

// Client talks to one control plane.
type Client struct {
	base string
	hc   *http.Client
}

// New returns a client of the control plane at base (e.g.
// "http://127.0.0.1:8080"); hc nil means http.DefaultClient.
func New(base string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimRight(base, "/"), hc: hc}
}

// Health is GET /healthz.
func (c *Client) Health(ctx context.Context) (api.Health, error) {
	return call[api.Health](ctx, c, http.MethodGet, api.PathHealth, "", nil, http.StatusOK)
}

// Config is GET /api/config.
func (c *Client) Config(ctx context.Context) (api.Config, error) {
	return call[api.Config](ctx, c, http.MethodGet, api.PathConfig, "", nil, http.StatusOK)
}

// Nodes is GET /api/nodes.
func (c *Client) Nodes(ctx context.Context) ([]api.Node, error) {
	return call[[]api.Node](ctx, c, http.MethodGet, api.PathNodes, "", nil, http.StatusOK)
}

// Preview is POST /api/policy/preview.
func (c *Client) Preview(ctx context.Context, p policy.Policy) (api.Preview, error) {
	return call[api.Preview](ctx, c, http.MethodPost, api.PathPreview, "", p, http.StatusOK)
}

// Create is POST /api/meetings.
func (c *Client) Create(ctx context.Context, req api.CreateRequest) (api.CreatedMeeting, error) {
	return call[api.CreatedMeeting](ctx, c, http.MethodPost, api.PathMeetings, "", req, http.StatusCreated)
}

// Meeting is GET /api/meetings/{id}.
func (c *Client) Meeting(ctx context.Context, id string) (api.Meeting, error) {
	return call[api.Meeting](ctx, c, http.MethodGet, api.MeetingPath(id), "", nil, http.StatusOK)
}

// SetPolicy is PUT /api/meetings/{id}/policy with the host token.
func (c *Client) SetPolicy(ctx context.Context, id, hostToken string, p policy.Policy) (api.Meeting, error) {
	return call[api.Meeting](ctx, c, http.MethodPut, api.MeetingPath(id, "policy"), hostToken, p, http.StatusOK)
}

// Join is POST /api/meetings/{id}/join. A refusal is an *api.Error with
// the refusal's code (e.g. 503 no_capacity_in_allowed_regions).
func (c *Client) Join(ctx context.Context, id string, req api.JoinRequest) (api.JoinResponse, error) {
	jr, err := call[api.JoinResponse](ctx, c, http.MethodPost, api.MeetingPath(id, "join"), "", req, http.StatusOK)
	if err == nil && (jr.Token == "" || jr.Node.URL == "") {
		return api.JoinResponse{}, fmt.Errorf("join meeting %s: answer without token or node url", id)
	}
	return jr, err
}

// Routing is GET /api/meetings/{id}/routing.
func (c *Client) Routing(ctx context.Context, id string) (api.Routing, error) {
	return call[api.Routing](ctx, c, http.MethodGet, api.MeetingPath(id, "routing"), "", nil, http.StatusOK)
}

// MeetingReport is GET /api/meetings/{id}/report.
func (c *Client) MeetingReport(ctx context.Context, id string) (api.MeetingReport, error) {
	return call[api.MeetingReport](ctx, c, http.MethodGet, api.MeetingPath(id, "report"), "", nil, http.StatusOK)
}

// Report is GET /api/report.
func (c *Client) Report(ctx context.Context) (api.DeploymentReport, error) {
	return call[api.DeploymentReport](ctx, c, http.MethodGet, api.PathReport, "", nil, http.StatusOK)
}

// Audit is GET /api/audit for one meeting ("" = every chain).
func (c *Client) Audit(ctx context.Context, meeting string) (api.AuditEntries, error) {
	return call[api.AuditEntries](ctx, c, http.MethodGet, auditPath(api.PathAudit, meeting), "", nil, http.StatusOK)
}

// AuditExport streams GET /api/audit/export for one meeting ("" = every
// chain) into w, whole.
func (c *Client) AuditExport(ctx context.Context, meeting string, w io.Writer) error {
	resp, err := c.do(ctx, http.MethodGet, auditPath(api.PathAuditExport, meeting), "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return readError(resp)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	return nil
}

func auditPath(path, meeting string) string {
	if meeting == "" {
		return path
	}
	return path + "?meeting=" + url.QueryEscape(meeting)
}

// call sends one request and decodes the answer, which must have status
// want; any other status is returned as *api.Error.
func call[T any](ctx context.Context, c *Client, method, path, bearer string, body any, want int) (T, error) {
	var zero T
	resp, err := c.do(ctx, method, path, bearer, body)
	if err != nil {
		return zero, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		return zero, readError(resp)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return zero, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if len(data) > maxResponse {
		return zero, fmt.Errorf("%s %s: answer larger than %d bytes", method, path, maxResponse)
	}
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return zero, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return v, nil
}

func (c *Client) do(ctx context.Context, method, path, bearer string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return resp, nil
}

// readError turns an error answer into *api.Error; an answer that is not
// the API's JSON (a proxy's page, say) keeps its text as the message.
func readError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &api.Error{Status: resp.StatusCode}
	if json.Unmarshal(data, e) != nil || e.Code == "" {
		e.Code = ""
		e.Message = strings.TrimSpace(string(data))
		if e.Message == "" {
			e.Message = http.StatusText(resp.StatusCode)
		}
	}
	return e
}
