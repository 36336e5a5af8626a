package control

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/policy"
)

// boundsEnv is a running control plane on its own JetStream, its API
// served over HTTP, and the NATS connection it does all its I/O on, whose
// counters tell how much a request cost.
type boundsEnv struct {
	env *logEnv
	srv *Server
	api *apiclient.Client
	url string
}

func newBoundsEnv(t *testing.T) *boundsEnv {
	t.Helper()
	env := newLogEnv(t)
	srv, err := env.server(policy.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.run(srv))
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &boundsEnv{env: env, srv: srv, api: apiclient.New(hs.URL, nil).WithBearer(rigOperator), url: hs.URL}
}

// appendEntries appends n entries spread over three meetings and signs a
// checkpoint, so that no signing is due while a request is measured.
func (b *boundsEnv) appendEntries(t *testing.T, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		if _, err := b.srv.audit.append(ctx, audit.Entry{Kind: audit.KindPlacement, Meeting: fmt.Sprintf("m%d", i%3),
			Participant: fmt.Sprintf("p%d", i), Node: "de-fra", NodeCountry: "DE"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.srv.audit.signNow(ctx); err != nil {
		t.Fatal(err)
	}
}

// cost is what a call made the control plane's NATS connection carry:
// messages sent (requests) and received (records among them).
type cost struct{ out, in uint64 }

func (b *boundsEnv) measure(t *testing.T, call func() error) cost {
	t.Helper()
	before := b.env.nc.Stats()
	if err := call(); err != nil {
		t.Fatal(err)
	}
	after := b.env.nc.Stats()
	return cost{out: after.OutMsgs - before.OutMsgs, in: after.InMsgs - before.InMsgs}
}

func TestAuditPageCostDoesNotGrowWithTheLog(t *testing.T) {
	t.Parallel() // a thousand appends, each a stored, signed record
	b := newBoundsEnv(t)
	ctx := context.Background()
	page := func(start int64, limit int) (api.AuditEntries, cost) {
		var p api.AuditEntries
		c := b.measure(t, func() (err error) {
			p, err = b.api.AuditPage(ctx, "", start, limit)
			return err
		})
		return p, c
	}

	b.appendEntries(t, 30)
	small, smallCost := page(5, 10)
	if len(small.Entries) != 10 || !small.More || small.Next != 15 || small.Size != 30 || small.Entries[0].Index != 5 {
		t.Fatalf("page of a small log: %d entries, more=%v next=%d size=%d", len(small.Entries), small.More, small.Next, small.Size)
	}

	const big = api.AuditPageMax // the log outgrows the largest page
	b.appendEntries(t, big)
	large, largeCost := page(5, 10)
	if len(large.Entries) != 10 || !large.More || large.Size != 30+big {
		t.Fatalf("page of a large log: %d entries, more=%v size=%d", len(large.Entries), large.More, large.Size)
	}
	t.Logf("a page of 10: %+v NATS messages (out, in) with 30 entries, %+v with %d", smallCost, largeCost, 30+big)
	// The same page costs the same however long the log is: a few
	// requests (a consumer, a fetch, its deletion) and the page's records.
	const slack = 4 // a heartbeat or checkpoint that happened to fall inside
	if largeCost.out > smallCost.out+slack || largeCost.in > smallCost.in+slack || largeCost.in > 10+slack {
		t.Fatalf("a page of 10 cost %+v with %d entries, %+v with 30", largeCost, 30+big, smallCost)
	}

	// No limit: the largest page, never the whole log.
	full, fullCost := page(0, 0)
	if len(full.Entries) != api.AuditPageMax || !full.More || full.Next != api.AuditPageMax {
		t.Fatalf("default page: %d entries, more=%v next=%d", len(full.Entries), full.More, full.Next)
	}
	t.Logf("the default page of a log of %d: %+v", 30+big, fullCost)
	if fullCost.in > api.AuditPageMax+slack || fullCost.out > smallCost.out+slack {
		t.Fatalf("default page of a log of %d cost %+v", 30+big, fullCost)
	}
	// A limit above the maximum is cut to it.
	if p, _ := page(0, 5*api.AuditPageMax); len(p.Entries) != api.AuditPageMax {
		t.Fatalf("limit %d: %d entries", 5*api.AuditPageMax, len(p.Entries))
	}
	// The client that wants it all walks the pages, and gets every entry
	// once, in order.
	all, err := b.api.Audit(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Entries) != 30+big || all.More {
		t.Fatalf("whole log: %d entries, more=%v", len(all.Entries), all.More)
	}
	for i, e := range all.Entries {
		if e.Index != int64(i) {
			t.Fatalf("entry %d has index %d", i, e.Index)
		}
	}
}

func TestAuditPageBadNumbers(t *testing.T) {
	b := newBoundsEnv(t)
	for _, q := range []string{"limit=0", "limit=-1", "start=x", "limit=1e3", "start=99999999999999999999"} {
		req, _ := http.NewRequest(http.MethodGet, b.url+api.PathAudit+"?"+q, nil)
		req.Header.Set("Authorization", "Bearer "+rigOperator)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e api.Error
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || e.Code != "bad_number" {
			t.Errorf("%s: %d %+v, want 400 bad_number", q, resp.StatusCode, e)
		}
	}
}

func TestDeploymentReportIsReadOnceForManyRequests(t *testing.T) {
	b := newBoundsEnv(t)
	ctx := context.Background()
	const meetings = 12
	for i := range meetings {
		if _, _, err := b.api.CreateHosted(ctx, api.CreateRequest{Title: fmt.Sprintf("m%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b.srv.report.now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	}

	// Twenty requests at once: one read of the meetings between them.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	c := b.measure(t, func() error {
		for range 20 {
			wg.Go(func() {
				rep, err := b.api.Report(ctx)
				if err == nil && rep.Meetings != meetings {
					err = fmt.Errorf("report counts %d meetings, want %d", rep.Meetings, meetings)
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	})
	if n := b.srv.report.computed.Load(); n != 1 {
		t.Fatalf("%d computations for 20 requests, want 1", n)
	}
	// One read is a listing and a get per meeting: 20 requests did not
	// cost 20 of them.
	if c.out > 2*(meetings+2) {
		t.Fatalf("20 reports cost %d NATS requests for %d meetings", c.out, meetings)
	}

	// Within ReportMaxAge the figures stay; after it they are read again.
	if _, _, err := b.api.CreateHosted(ctx, api.CreateRequest{Title: "late"}); err != nil {
		t.Fatal(err)
	}
	if rep, err := b.api.Report(ctx); err != nil || rep.Meetings != meetings || b.srv.report.computed.Load() != 1 {
		t.Fatalf("within max age: %+v %v, computations %d", rep, err, b.srv.report.computed.Load())
	}
	mu.Lock()
	clock = clock.Add(api.ReportMaxAge)
	mu.Unlock()
	if rep, err := b.api.Report(ctx); err != nil || rep.Meetings != meetings+1 || b.srv.report.computed.Load() != 2 {
		t.Fatalf("after max age: %+v %v, computations %d", rep, err, b.srv.report.computed.Load())
	}
}

func TestNodesPages(t *testing.T) {
	r := newRegistry()
	const n = 7
	for i := range n {
		r.known(cluster.NodeInfo{ID: fmt.Sprintf("de-%02d", n-1-i), Country: "DE"})
	}
	v := r.publish(nil)
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > n {
			t.Fatal("paging does not end")
		}
		p, more := v.page(after, 3)
		if len(p) > 3 {
			t.Fatalf("page of %d, limit 3", len(p))
		}
		for _, x := range p {
			got = append(got, x.ID)
		}
		if !more {
			break
		}
		after = p[len(p)-1].ID
	}
	want := []string{"de-00", "de-01", "de-02", "de-03", "de-04", "de-05", "de-06"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pages gave %v, want %v", got, want)
	}
	if p, more := v.page("de-03x", 10); len(p) != 3 || p[0].ID != "de-04" || more {
		t.Fatalf("after an id between nodes: %v %v", p, more)
	}
	if p, more := v.page("zz", 10); len(p) != 0 || more {
		t.Fatalf("after the last: %v %v", p, more)
	}
}

func TestNodesAndLobbyBadLimit(t *testing.T) {
	b := newBoundsEnv(t)
	for _, q := range []string{"limit=0", "limit=-3", "limit=x"} {
		resp, err := http.Get(b.url + api.PathNodes + "?" + q)
		if err != nil {
			t.Fatal(err)
		}
		var e api.Error
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || e.Code != "bad_number" {
			t.Errorf("nodes %s: %d %+v, want 400 bad_number", q, resp.StatusCode, e)
		}
	}
	resp, err := http.Get(b.url + api.PathNodes + "?limit=100000")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a limit above the maximum is cut to it, not refused: %d", resp.StatusCode)
	}
}

func TestLobbyListingIsPaged(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := &meeting{}
	for i := range api.LobbyPageMax + 5 {
		m.Tickets = append(m.Tickets, lobbyTicket{Ticket: fmt.Sprintf("t%03d", i), Name: "n", Since: now, LastAsk: now})
	}
	// A decided and an expired ticket are not listed.
	m.Tickets[1].Decision = "admit"
	m.Tickets[2].LastAsk = now.Add(-2 * lobbyTicketTTL)

	first := m.waiting(now, "", api.LobbyPageMax)
	if len(first.Waiting) != api.LobbyPageMax || !first.More || first.Waiting[0].Ticket != "t000" || first.Waiting[1].Ticket != "t003" {
		t.Fatalf("first page: %d entries, more=%v", len(first.Waiting), first.More)
	}
	rest := m.waiting(now, first.Waiting[len(first.Waiting)-1].Ticket, api.LobbyPageMax)
	if len(rest.Waiting) != 3 || rest.More {
		t.Fatalf("second page: %d entries, more=%v", len(rest.Waiting), rest.More)
	}
	if seen := len(first.Waiting) + len(rest.Waiting); seen != api.LobbyPageMax+5-2 {
		t.Fatalf("%d listed, want %d", seen, api.LobbyPageMax+3)
	}
	if small := m.waiting(now, "", 2); len(small.Waiting) != 2 || !small.More {
		t.Fatalf("limit 2: %+v", small)
	}
}

func TestNodesPagedOverHTTP(t *testing.T) {
	r := startRig(t, "de-fra:DE", "fr-par:FR", "jp-tyo:JP")
	ctx := context.Background()
	r.waitFor("three nodes listed", func() bool {
		nodes, err := r.api.Nodes(ctx)
		return err == nil && len(nodes) == 3
	})
	resp, err := http.Get(r.url + api.PathNodes + "?limit=2")
	if err != nil {
		t.Fatal(err)
	}
	var first []api.Node
	_ = json.NewDecoder(resp.Body).Decode(&first)
	resp.Body.Close()
	link := resp.Header.Get("Link")
	if len(first) != 2 || first[0].ID != "de-fra" || first[1].ID != "fr-par" || link != `</api/nodes?after=fr-par&limit=2>; rel="next"` {
		t.Fatalf("first page %v, Link %q", first, link)
	}
	resp, err = http.Get(r.url + api.PathNodes + "?after=fr-par&limit=2")
	if err != nil {
		t.Fatal(err)
	}
	var rest []api.Node
	_ = json.NewDecoder(resp.Body).Decode(&rest)
	resp.Body.Close()
	if len(rest) != 1 || rest[0].ID != "jp-tyo" || resp.Header.Get("Link") != "" {
		t.Fatalf("last page %v, Link %q", rest, resp.Header.Get("Link"))
	}
}
