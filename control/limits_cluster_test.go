package control_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/control"
	"github.com/oakmeet/oakmeet/placement"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// from is an HTTP client whose connections leave from loopback address
// ip (Linux routes all of 127.0.0.0/8 to lo), so one test speaks as many
// client addresses.
func from(t *testing.T, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// capture keeps the body of the last POST /api/meetings it carries.
type capture struct{ body json.RawMessage }

func (c *capture) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && r.URL.Path == api.PathMeetings {
		data, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		c.body = data
		r.Body = io.NopCloser(bytes.NewReader(data))
	}
	return http.DefaultTransport.RoundTrip(r)
}

// answer is one raw HTTP answer.
type answer struct {
	status int
	header http.Header
	err    api.Error
}

func send(t *testing.T, hc *http.Client, method, url, bearer string, body any) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set(api.AuthHeader, "Bearer "+bearer)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(data, &a.err); err != nil {
			t.Fatalf("%s %s: %d answer not in the error shape: %s", method, url, resp.StatusCode, data)
		}
	}
	return a
}

// wantRateLimited checks a 429 in full: Retry-After a whole number of
// seconds, at least 1, and the JSON code rate_limited.
func wantRateLimited(t *testing.T, what string, a answer) {
	t.Helper()
	retry, err := strconv.Atoi(a.header.Get("Retry-After"))
	if a.status != http.StatusTooManyRequests || err != nil || retry < 1 || a.err.Code != api.CodeRateLimited || a.err.RetryAfter != retry {
		t.Fatalf("%s: %d Retry-After %q %+v; want 429, Retry-After >= 1 s, code %s", what, a.status, a.header.Get("Retry-After"), a.err, api.CodeRateLimited)
	}
}

func ensureLoopbackAliases(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("this machine's loopback has no 127.0.0.2: %v", err)
	}
	ln.Close()
}

// Every limited kind of request: over its bucket an address is answered
// 429 with Retry-After, while another address is still served.
func TestOverLimitRequestsAre429WhileOthersSucceed(t *testing.T) {
	ensureLoopbackAliases(t)
	one := control.Rate{PerMinute: 1, Burst: 2}
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1], testcluster.WithLimits(control.Limits{
		Create: one, Join: one, Preview: one, Audit: one,
	}))
	m := c.CreateMeeting(policy.Policy{}) // from 127.0.0.1, which the rest do not use
	// A create request as a host sends it (with its key and signed
	// statement), to send again as is.
	var create capture
	if _, _, err := apiclient.New(c.URL, &http.Client{Transport: &create}).CreateHosted(t.Context(), api.CreateRequest{Title: "t"}); err != nil {
		t.Fatal(err)
	}
	join := api.JoinRequest{Name: "x", Secret: c.Secret(m.ID), Location: api.Hint{Country: "DE"}}
	cases := []struct {
		name, method, path, bearer string
		body                       any
		ok                         int
	}{
		{"create", http.MethodPost, api.PathMeetings, "", create.body, http.StatusCreated},
		{"join", http.MethodPost, api.MeetingPath(m.ID, "join"), "", join, http.StatusOK},
		{"preview", http.MethodPost, api.PathPreview, "", policy.Policy{}, http.StatusOK},
		{"audit", http.MethodGet, api.PathAudit + "?meeting=" + m.ID, c.OperatorToken(), nil, http.StatusOK},
		{"audit checkpoint", http.MethodGet, api.PathAuditCheckpoint, "", nil, http.StatusOK},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Each case its own pair of addresses: the audit routes share
			// one bucket.
			abuser, other := from(t, "127.0.1."+strconv.Itoa(i+1)), from(t, "127.0.2."+strconv.Itoa(i+1))
			for n := range 2 {
				if a := send(t, abuser, tc.method, c.URL+tc.path, tc.bearer, tc.body); a.status != tc.ok {
					t.Fatalf("request %d within the burst: %d %+v", n, a.status, a.err)
				}
			}
			wantRateLimited(t, "third request", send(t, abuser, tc.method, c.URL+tc.path, tc.bearer, tc.body))
			if a := send(t, other, tc.method, c.URL+tc.path, tc.bearer, tc.body); a.status != tc.ok {
				t.Fatalf("another address: %d %+v", a.status, a.err)
			}
		})
	}
	// The audit routes share a bucket: the checkpoint's abuser is out of
	// tokens for the listing too.
	wantRateLimited(t, "audit listing after checkpoints", send(t, from(t, "127.0.1.5"), http.MethodGet, c.URL+api.PathAudit+"?meeting="+m.ID, c.OperatorToken(), nil))
}

// The probe: joins that never connect filled a GB-only meeting's
// one GB node for two minutes. Now they hold their seats only for the
// pending hold, a participant that connects keeps its seat, and one that
// comes after its hold is disconnected to join again.
func TestJoinsThatNeverConnectGiveTheirSeatsBack(t *testing.T) {
	// The hold is long enough for a real client to connect on a loaded
	// machine, short enough to wait for twice.
	const max, hold = 4, 1500 * time.Millisecond
	c := testcluster.Start(t, policy.Policy{}, []testcluster.NodeSpec{{ID: "gb-lon", Country: "GB", Region: "eu-west-2", Max: max}},
		testcluster.WithLimits(control.Limits{PendingHold: hold, PendingSeatsPerMeeting: 50, PendingSeatsPerAddress: 50,
			Join: control.Rate{PerMinute: -1}}))
	m := c.CreateMeeting(policy.Policy{AllowedCountries: []string{"GB"}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	join := func(name string) (client.JoinResult, error) {
		return client.Join(ctx, nil, c.URL, m.ID, client.JoinRequest{Name: name, Country: "GB", Secret: m.JoinSecret})
	}
	var silent []client.JoinResult
	for range max {
		jr, err := join("silent")
		if err != nil {
			t.Fatalf("silent join: %v", err)
		}
		silent = append(silent, jr)
	}
	var ae *api.Error
	if _, err := join("one too many"); !errors.As(err, &ae) || ae.Code != placement.CodeNoCapacity {
		t.Fatalf("join to a full node: %v; want %s", err, placement.CodeNoCapacity)
	}
	// Within a hold or so (no sleep: the first join that succeeds) a
	// real participant gets a seat, and connects.
	var real client.JoinResult
	testcluster.WaitFor(t, 10*hold, "a seat given back", func() bool {
		jr, err := join("real")
		real = jr
		return err == nil
	})
	s, err := client.Connect(ctx, real, client.Options{LoopbackOnly: true})
	if err != nil {
		t.Fatalf("real participant connects: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	go func() {
		for range s.Events() {
		}
	}()
	routing := func() map[string]bool {
		r, err := c.API.Routing(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]bool{}
		for _, p := range r.Participants {
			ids[p.ID] = true
		}
		return ids
	}
	testcluster.WaitFor(t, 10*hold, "the silent joins recorded as gone", func() bool {
		ids := routing()
		for _, jr := range silent {
			if ids[jr.ParticipantID] {
				return false
			}
		}
		return true
	})
	// A silent one that turns up after its hold is sent away, reason
	// pending_expired; its seat went to others.
	late, err := client.Connect(ctx, silent[0], client.Options{LoopbackOnly: true})
	if err == nil {
		t.Cleanup(func() { _ = late.Close() })
		go func() {
			for range late.Events() {
			}
		}()
		testcluster.WaitFor(t, 10*time.Second, "the late participant disconnected", func() bool { return late.Err() != nil })
		err = late.Err()
	}
	var le *client.LeftError
	if !errors.As(err, &le) || le.Reason != api.ReasonPendingExpired {
		t.Fatalf("late connection: %v; want sent away with %s", err, api.ReasonPendingExpired)
	}
	// Another join that never connects, made after the real one
	// connected, goes after a hold: by then the real one's hold has
	// passed too, and it is still there.
	extra, err := join("extra")
	if err != nil {
		t.Fatalf("join beside the real participant: %v", err)
	}
	testcluster.WaitFor(t, 10*hold, "the extra join's seat given back", func() bool { return !routing()[extra.ParticipantID] })
	if ids := routing(); !ids[real.ParticipantID] || len(ids) != 1 {
		t.Fatalf("in the meeting after the holds: %v; want only the real participant %s", ids, real.ParticipantID)
	}
	// Every placement is in the audit log, the released ones too.
	entries, err := c.API.Audit(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	placed := map[string]bool{}
	for _, e := range entries.Entries {
		if e.Kind == audit.KindPlacement {
			placed[e.Participant] = true
		}
	}
	for _, jr := range append(silent, real, extra) {
		if !placed[jr.ParticipantID] {
			t.Fatalf("placement of %s not in the audit log", jr.ParticipantID)
		}
	}
}

// Caps on seats of joins not yet connected: per address, and per meeting
// (which the host's own join passes).
func TestPendingSeatCapsAnswer429(t *testing.T) {
	ensureLoopbackAliases(t)
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1],
		testcluster.WithLimits(control.Limits{PendingSeatsPerAddress: 2, PendingSeatsPerMeeting: 3, PendingHold: time.Minute}))
	m := c.CreateMeeting(policy.Policy{})
	join := api.JoinRequest{Name: "x", Secret: c.Secret(m.ID), Location: api.Hint{Country: "DE"}}
	path := c.URL + api.MeetingPath(m.ID, "join")
	a, b, d := from(t, "127.0.3.1"), from(t, "127.0.3.2"), from(t, "127.0.3.3")
	for i, hc := range []*http.Client{a, a, b} {
		if r := send(t, hc, http.MethodPost, path, "", join); r.status != http.StatusOK {
			t.Fatalf("join %d: %d %+v", i, r.status, r.err)
		}
	}
	r := send(t, a, http.MethodPost, path, "", join)
	wantRateLimited(t, "third waiting seat of one address", r)
	if r.err.RetryAfter != 60 {
		t.Fatalf("Retry-After %d; want the hold, 60 s", r.err.RetryAfter)
	}
	wantRateLimited(t, "fourth waiting seat of the meeting", send(t, d, http.MethodPost, path, "", join))
	if r := send(t, d, http.MethodPost, path, c.Host(m.ID).Token, join); r.status != http.StatusOK {
		t.Fatalf("the host's own join: %d %+v", r.status, r.err)
	}
}

// The zero Limits are the defaults, and NoLimits (testcluster's own, and
// serve --limits off) limits nothing.
func TestZeroLimitsAreTheDefaultsAndNoLimitsNone(t *testing.T) {
	burst := control.DefaultLimits().Preview.Burst
	for _, tc := range []struct {
		name   string
		limits control.Limits
		want   int // the status of the request after the default burst
	}{
		{"zero", control.Limits{}, http.StatusTooManyRequests},
		{"none", control.NoLimits(), http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testcluster.Start(t, policy.Policy{}, nil, testcluster.WithLimits(tc.limits))
			for i := range burst {
				if a := send(t, http.DefaultClient, http.MethodPost, c.URL+api.PathPreview, "", policy.Policy{}); a.status != http.StatusOK {
					t.Fatalf("preview %d: %d %+v", i, a.status, a.err)
				}
			}
			if a := send(t, http.DefaultClient, http.MethodPost, c.URL+api.PathPreview, "", policy.Policy{}); a.status != tc.want {
				t.Fatalf("preview %d: %d %+v; want %d", burst, a.status, a.err, tc.want)
			}
		})
	}
}
