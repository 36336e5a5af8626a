package adversary

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"sync"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/httpserve"
)

// JoinEdit is what a lying control plane does to one join answer before
// the client sees it; it edits the answer in place. The meeting is the
// one the join was for.
type JoinEdit func(meeting string, jr *api.JoinResponse)

// Front is a lying control plane as its clients see it: an HTTP server
// that passes every request to the real control plane and every answer
// back, except that join answers go through the edit set with SetJoinEdit.
// Pages served through it (the web app) talk to the front, since the app
// calls its own origin. What the front cannot do is what the real control
// plane's keys do: sign tokens or, without the host key, host statements.
type Front struct {
	// URL is the front's base URL, to give clients instead of the
	// control plane's.
	URL string

	srv *httpserve.Server
	ln  net.Listener

	mu     sync.Mutex
	edit   JoinEdit
	edited []EditedJoin
}

// EditedJoin is one join answer the front changed.
type EditedJoin struct {
	Meeting, Participant string
	// Node is the node the control plane placed the participant on.
	Node string
}

// joinPath is a join request's path: POST /api/meetings/{id}/join.
var joinPath = regexp.MustCompile(`^/api/meetings/([^/]+)/join$`)

// StartFront starts a front before the control plane at upstream (its
// base URL). Close stops it.
func StartFront(upstream string) (*Front, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &Front{URL: "http://" + ln.Addr().String(), ln: ln}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = u.Host
		},
		ModifyResponse: f.modify,
		// Lobby asks are long polls; nothing here buffers a stream.
		FlushInterval: -1,
	}
	f.srv = httpserve.New(ln, httpserve.Config{Handler: rp})
	go func() { _ = f.srv.Serve() }()
	return f, nil
}

// Close stops the front.
func (f *Front) Close() error { return f.srv.Close() }

// SetJoinEdit makes the front edit every join answer with e from now on
// (nil: pass them unchanged).
func (f *Front) SetJoinEdit(e JoinEdit) {
	f.mu.Lock()
	f.edit = e
	f.mu.Unlock()
}

// Edited lists the join answers the front has changed so far.
func (f *Front) Edited() []EditedJoin {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]EditedJoin(nil), f.edited...)
}

func (f *Front) modify(resp *http.Response) error {
	req := resp.Request
	m := joinPath.FindStringSubmatch(req.URL.Path)
	if req.Method != http.MethodPost || m == nil || resp.StatusCode != http.StatusOK {
		return nil
	}
	f.mu.Lock()
	edit := f.edit
	f.mu.Unlock()
	if edit == nil {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return err
	}
	meeting, err := url.PathUnescape(m[1])
	if err != nil {
		meeting = m[1]
	}
	var jr api.JoinResponse
	if err := json.Unmarshal(body, &jr); err != nil {
		return fmt.Errorf("front: join answer: %w", err)
	}
	// A lobby answer (202) was let through above; a 200 is a placement.
	before := jr.Node.ID
	edited, err := json.Marshal(jr)
	if err != nil {
		return err
	}
	edit(meeting, &jr)
	out, err := json.Marshal(jr)
	if err != nil {
		return err
	}
	if bytes.Equal(out, edited) {
		out = body // nothing to lie about: the answer goes as it came
	} else {
		f.mu.Lock()
		f.edited = append(f.edited, EditedJoin{Meeting: meeting, Participant: jr.ParticipantID, Node: before})
		f.mu.Unlock()
	}
	resp.Body = io.NopCloser(bytes.NewReader(out))
	resp.ContentLength = int64(len(out))
	resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
	return nil
}

// OnNode is a JoinEdit that edits only answers placing on node id.
func OnNode(id string, e func(jr *api.JoinResponse)) JoinEdit {
	return func(_ string, jr *api.JoinResponse) {
		if jr.Node.ID == id {
			e(jr)
		}
	}
}
