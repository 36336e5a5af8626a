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
	"strconv"
	"strings"
	"time"

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
	// bearer is sent with the calls that read a meeting's routing,
	// report or audit log, or the whole deployment's (WithBearer).
	bearer string
	// retryFor bounds the retries of a 503 unavailable (retry.go); nil
	// is DefaultRetryFor.
	retryFor *time.Duration
}

// New returns a client of the control plane at base (e.g.
// "http://127.0.0.1:8080"); hc nil means http.DefaultClient.
func New(base string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimRight(base, "/"), hc: hc}
}

// WithBearer returns a client that sends tok as the bearer token of
// Routing, MeetingReport, Report, Audit and AuditExport: a meeting's host
// token or join secret for that meeting, or the operator token for all.
func (c *Client) WithBearer(tok string) *Client {
	n := *c
	n.bearer = tok
	return &n
}

// Health is GET /healthz.
func (c *Client) Health(ctx context.Context) (api.Health, error) {
	return call[api.Health](ctx, c, http.MethodGet, api.PathHealth, "", nil, http.StatusOK)
}

// Config is GET /api/config.
func (c *Client) Config(ctx context.Context) (api.Config, error) {
	return call[api.Config](ctx, c, http.MethodGet, api.PathConfig, "", nil, http.StatusOK)
}

// Nodes is every node GET /api/nodes lists, read a page at a time.
func (c *Client) Nodes(ctx context.Context) ([]api.Node, error) {
	var all []api.Node
	after := ""
	for {
		q := url.Values{"limit": {strconv.Itoa(api.NodesPageMax)}}
		if after != "" {
			q.Set("after", after)
		}
		page, err := call[[]api.Node](ctx, c, http.MethodGet, api.PathNodes+"?"+q.Encode(), "", nil, http.StatusOK)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < api.NodesPageMax || page[len(page)-1].ID <= after {
			if all == nil {
				all = page
			}
			return all, nil
		}
		after = page[len(page)-1].ID
	}
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

// SetPolicy is PUT /api/meetings/{id}/policy with the host token and no
// host statement, which only a meeting made without a host key accepts
// (Host.SetPolicy signs one).
func (c *Client) SetPolicy(ctx context.Context, id, hostToken string, p policy.Policy) (api.Meeting, error) {
	return c.PutPolicy(ctx, id, hostToken, api.PolicyRequest{Policy: p})
}

// PutPolicy is PUT /api/meetings/{id}/policy with the host token.
func (c *Client) PutPolicy(ctx context.Context, id, hostToken string, req api.PolicyRequest) (api.Meeting, error) {
	return call[api.Meeting](ctx, c, http.MethodPut, api.MeetingPath(id, "policy"), hostToken, req, http.StatusOK)
}

// Join is POST /api/meetings/{id}/join, asked again from the lobby until
// the host decides or ctx ends. A refusal is an *api.Error with the
// refusal's code (e.g. 503 no_capacity_in_allowed_regions, 403
// lobby_denied).
func (c *Client) Join(ctx context.Context, id string, req api.JoinRequest) (api.JoinResponse, error) {
	return c.JoinLobby(ctx, id, req, nil)
}

// JoinLobby is Join that calls waiting (when not nil) with each lobby
// answer, so a client can say it waits for the host.
func (c *Client) JoinLobby(ctx context.Context, id string, req api.JoinRequest, waiting func(api.LobbyWait)) (api.JoinResponse, error) {
	for {
		jr, wait, err := c.JoinOnce(ctx, id, req)
		if err != nil || wait == nil {
			return jr, err
		}
		if waiting != nil {
			waiting(*wait)
		}
		req.LobbyTicket = wait.Ticket
	}
}

// JoinOnce is one POST /api/meetings/{id}/join: the join's answer, or the
// lobby's (202) when the join waits for the host, to ask again with its
// ticket (JoinRequest.LobbyTicket).
func (c *Client) JoinOnce(ctx context.Context, id string, req api.JoinRequest) (api.JoinResponse, *api.LobbyWait, error) {
	return c.joinOnce(ctx, id, "", req)
}

func (c *Client) joinOnce(ctx context.Context, id, hostToken string, req api.JoinRequest) (api.JoinResponse, *api.LobbyWait, error) {
	path := api.MeetingPath(id, "join")
	resp, err := c.do(ctx, http.MethodPost, path, hostToken, req)
	if err != nil {
		return api.JoinResponse{}, nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusAccepted:
		var w api.LobbyWait
		if err := decode(resp, http.MethodPost, path, &w); err != nil {
			return api.JoinResponse{}, nil, err
		}
		if w.Code != api.CodeLobby || w.Ticket == "" {
			return api.JoinResponse{}, nil, fmt.Errorf("join meeting %s: 202 answer without a lobby ticket", id)
		}
		return api.JoinResponse{}, &w, nil
	case http.StatusOK:
		var jr api.JoinResponse
		if err := decode(resp, http.MethodPost, path, &jr); err != nil {
			return api.JoinResponse{}, nil, err
		}
		if jr.Token == "" || jr.Node.URL == "" {
			return api.JoinResponse{}, nil, fmt.Errorf("join meeting %s: answer without token or node url", id)
		}
		return jr, nil, nil
	}
	return api.JoinResponse{}, nil, readError(resp)
}

// Routing is GET /api/meetings/{id}/routing.
func (c *Client) Routing(ctx context.Context, id string) (api.Routing, error) {
	return call[api.Routing](ctx, c, http.MethodGet, api.MeetingPath(id, "routing"), c.bearer, nil, http.StatusOK)
}

// MeetingReport is GET /api/meetings/{id}/report.
func (c *Client) MeetingReport(ctx context.Context, id string) (api.MeetingReport, error) {
	return call[api.MeetingReport](ctx, c, http.MethodGet, api.MeetingPath(id, "report"), c.bearer, nil, http.StatusOK)
}

// Report is GET /api/report.
func (c *Client) Report(ctx context.Context) (api.DeploymentReport, error) {
	return call[api.DeploymentReport](ctx, c, http.MethodGet, api.PathReport, c.bearer, nil, http.StatusOK)
}

// Audit reads one meeting's audit log ("" = every chain) through GET
// /api/audit, page after page, and returns all of it. The answer's More,
// Next and Size are those of the last page.
func (c *Client) Audit(ctx context.Context, meeting string) (api.AuditEntries, error) {
	var all api.AuditEntries
	for start := int64(0); ; {
		p, err := c.AuditPage(ctx, meeting, start, 0)
		if err != nil {
			return api.AuditEntries{}, err
		}
		all.PublicKey, all.Size, all.Next, all.More = p.PublicKey, p.Size, p.Next, p.More
		all.Entries = append(all.Entries, p.Entries...)
		if !p.More {
			if all.Entries == nil {
				all.Entries = p.Entries // the server's [] rather than nil
			}
			return all, nil
		}
		if p.Next <= start {
			return api.AuditEntries{}, fmt.Errorf("GET %s: a page from %d says more from %d", api.PathAudit, start, p.Next)
		}
		start = p.Next
	}
}

// AuditPage is one page of GET /api/audit from index start; limit 0 asks
// for the largest page (api.AuditPageMax).
func (c *Client) AuditPage(ctx context.Context, meeting string, start int64, limit int) (api.AuditEntries, error) {
	return call[api.AuditEntries](ctx, c, http.MethodGet, api.PathAudit+"?"+pageQuery(meeting, start, limit), c.bearer, nil, http.StatusOK)
}

// pageQuery is the query of a page of the audit log.
func pageQuery(meeting string, start int64, limit int) string {
	q := url.Values{"start": {strconv.FormatInt(start, 10)}}
	if meeting != "" {
		q.Set("meeting", meeting)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	return q.Encode()
}

// AuditExport streams GET /api/audit/export for one meeting ("" = every
// chain) into w, whole.
func (c *Client) AuditExport(ctx context.Context, meeting string, w io.Writer) error {
	resp, err := c.do(ctx, http.MethodGet, auditPath(api.PathAuditExport, meeting), c.bearer, nil)
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
	var v T
	if want == http.StatusNoContent {
		return v, nil
	}
	if err := decode(resp, method, path, &v); err != nil {
		return zero, err
	}
	return v, nil
}

// decode reads an answer's JSON body into v.
func decode(resp *http.Response, method, path string, v any) error {
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if len(data) > maxResponse {
		return fmt.Errorf("%s %s: answer larger than %d bytes", method, path, maxResponse)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, path, bearer string, body any) (*http.Response, error) {
	var rd io.Reader
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
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
	resp, err := c.send(ctx, req, b)
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

// Raw sends one request as given and checks that the answer has status
// want; any other is returned as *api.Error. It is for the requests no
// typed method sends: a host statement made by hand, say.
func Raw(ctx context.Context, c *Client, method, path, bearer string, body any, want int) error {
	resp, err := c.do(ctx, method, path, bearer, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		return readError(resp)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	return nil
}

// Checkpoint is GET /api/audit/checkpoint: the newest signed checkpoint,
// as the note's text. The caller opens it with the log's verifier key.
func (c *Client) Checkpoint(ctx context.Context) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, api.PathAuditCheckpoint, "", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, readError(resp)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxCheckpoint+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: read answer: %w", api.PathAuditCheckpoint, err)
	}
	if len(data) > maxCheckpoint {
		return nil, fmt.Errorf("GET %s: answer larger than %d bytes", api.PathAuditCheckpoint, maxCheckpoint)
	}
	return data, nil
}

// maxCheckpoint bounds a checkpoint answer: three lines and a few
// signatures.
const maxCheckpoint = 4096

// InclusionProof is GET /api/audit/proof: entry index in the tree of size.
func (c *Client) InclusionProof(ctx context.Context, index, size int64) (api.InclusionProof, error) {
	q := url.Values{"index": {strconv.FormatInt(index, 10)}, "size": {strconv.FormatInt(size, 10)}}
	return call[api.InclusionProof](ctx, c, http.MethodGet, api.PathAuditProof+"?"+q.Encode(), "", nil, http.StatusOK)
}

// ConsistencyProof is GET /api/audit/consistency from one tree size to a
// larger one.
func (c *Client) ConsistencyProof(ctx context.Context, from, to int64) (api.ConsistencyProof, error) {
	q := url.Values{"from": {strconv.FormatInt(from, 10)}, "to": {strconv.FormatInt(to, 10)}}
	return call[api.ConsistencyProof](ctx, c, http.MethodGet, api.PathAuditConsistency+"?"+q.Encode(), "", nil, http.StatusOK)
}

// AuditEntries is one page of GET /api/audit/entries: a meeting's entries
// ("" = every meeting's, with the operator token) from index start; limit
// 0 asks for the largest page.
func (c *Client) AuditEntries(ctx context.Context, meeting string, start int64, limit int) (api.AuditPage, error) {
	return call[api.AuditPage](ctx, c, http.MethodGet, api.PathAuditEntries+"?"+pageQuery(meeting, start, limit), c.bearer, nil, http.StatusOK)
}
