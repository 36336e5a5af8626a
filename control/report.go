package control

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
)

// traffic is what one node forwarded for a meeting, accumulated across
// node restarts (a node's counters start again at zero).
type traffic struct {
	Bytes        uint64     `json:"bytes"`
	LastReported uint64     `json:"last_reported"`
	FirstTraffic *time.Time `json:"first_traffic,omitempty"`
	LastTraffic  *time.Time `json:"last_traffic,omitempty"`
	Country      string     `json:"country"`
	Region       string     `json:"region,omitempty"`
}

// recordTraffic folds the nodes' byte counters for a meeting into its
// stored state, so the report survives node loss and restarts.
func (s *Server) recordTraffic(ctx context.Context, meetingID string, reported map[string]nodeBytes, now time.Time) {
	_, _, err := s.meetings.update(ctx, meetingID, func(m *meeting) error {
		if !foldTraffic(m, reported, now) {
			return errNoChange
		}
		return nil
	})
	if err != nil && !errors.Is(err, errNoChange) {
		s.log.Warn("record traffic", "meeting", meetingID, "err", err)
	}
}

// foldTraffic adds what the nodes reported since the last fold to m's
// traffic and reports whether anything changed. A node's counter that went
// down means the node restarted and counts from zero again; one the node no
// longer reports (Gone) counts from zero when the meeting comes back.
func foldTraffic(m *meeting, reported map[string]nodeBytes, now time.Time) (changed bool) {
	if m.Traffic == nil {
		m.Traffic = map[string]*traffic{}
	}
	for node, r := range reported {
		t := m.Traffic[node]
		if t == nil {
			t = &traffic{Country: r.Country, Region: r.Region}
			m.Traffic[node] = t
		}
		if r.Gone {
			if t.LastReported != 0 {
				t.LastReported, changed = 0, true
			}
			continue
		}
		b := r.Bytes
		delta := b - t.LastReported
		if b < t.LastReported { // the node restarted
			delta = b
		}
		if b != t.LastReported {
			changed = true
			t.LastReported = b
		}
		if delta > 0 {
			at := now.UTC()
			t.Bytes += delta
			t.LastTraffic = &at
			if t.FirstTraffic == nil {
				t.FirstTraffic = &at
			}
		}
	}
	return changed
}

func (s *Server) meetingReport(ctx context.Context, m *meeting) (*api.MeetingReport, error) {
	r := &api.MeetingReport{Meeting: m.ID, Title: m.Title, Created: m.Created, Policies: m.PolicyHistory,
		Refusals: []audit.Entry{}, Migrations: []audit.Entry{}, Participants: len(m.Participants) + m.FoldedCount}
	r.Nodes = nodeUsage(m, s.now().UTC())
	r.Countries = byCountry(r.Nodes)

	entries, err := s.audit.entries(ctx, m.ID, false)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		switch e.Kind {
		case audit.KindRefusal, audit.KindNodeRefused:
			// A node a participant's own client refused is as much a
			// refusal on the meeting's record as one of placement.
			r.Refusals = append(r.Refusals, e)
		case audit.KindMigration, audit.KindDisconnect:
			r.Migrations = append(r.Migrations, e)
		}
	}
	return r, nil
}

// nodeUsage is what each node did for a meeting up to now, by node id.
func nodeUsage(m *meeting, now time.Time) []api.NodeUsage {
	nodes := map[string]*api.NodeUsage{}
	for id, f := range m.Folded {
		if f != nil {
			u := *f
			nodes[id] = &u
		}
	}
	use := func(id, country, region string) *api.NodeUsage {
		u := nodes[id]
		if u == nil {
			u = &api.NodeUsage{Node: id, Country: country, Region: region}
			nodes[id] = u
		}
		return u
	}
	for _, p := range m.Participants {
		if p.Connected == nil {
			continue // placed but never there
		}
		u := use(p.Node.ID, p.Node.Country, p.Node.Region)
		u.Participants++
		end := now
		if p.Left != nil {
			end = *p.Left
		}
		u.ParticipantMinutes += end.Sub(*p.Connected).Minutes()
		if u.From == nil || p.Connected.Before(*u.From) {
			t := *p.Connected
			u.From = &t
		}
		if p.Left == nil {
			u.Until = nil
		} else if u.Participants == 1 || (u.Until != nil && p.Left.After(*u.Until)) {
			t := *p.Left
			u.Until = &t
		}
	}
	// A node with someone still on it is in use.
	for _, p := range m.active() {
		if u := nodes[p.Node.ID]; u != nil {
			u.Until = nil
		}
	}
	for id, t := range m.Traffic {
		u := use(id, t.Country, t.Region)
		u.Bytes, u.LastTraffic = t.Bytes, t.LastTraffic
	}
	var out []api.NodeUsage
	for _, u := range nodes {
		out = append(out, *u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

func byCountry(nodes []api.NodeUsage) []api.CountryUsage {
	by := map[string]*api.CountryUsage{}
	var total uint64
	for _, u := range nodes {
		c := by[u.Country]
		if c == nil {
			c = &api.CountryUsage{Country: u.Country}
			by[u.Country] = c
		}
		c.Nodes = append(c.Nodes, u.Node)
		c.ParticipantMinutes += u.ParticipantMinutes
		c.Bytes += u.Bytes
		total += u.Bytes
		if u.LastTraffic != nil && (c.LastTraffic == nil || u.LastTraffic.After(*c.LastTraffic)) {
			c.LastTraffic = u.LastTraffic
		}
	}
	out := make([]api.CountryUsage, 0, len(by))
	for _, c := range by {
		if total > 0 {
			c.Share = float64(c.Bytes) / float64(total)
		}
		sort.Strings(c.Nodes)
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Bytes != out[j].Bytes {
			return out[i].Bytes > out[j].Bytes
		}
		return out[i].Country < out[j].Country
	})
	return out
}

func (s *Server) handleMeetingReport(w http.ResponseWriter, r *http.Request) {
	m, ok := s.readRequest(w, r)
	if !ok {
		return
	}
	rep, err := s.meetingReport(r.Context(), m)
	if err != nil {
		s.fail(w, "report", err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) handleReport(w http.ResponseWriter, r *http.Request) {
	if e := s.operatorCheck(r); e != nil {
		writeError(w, e)
		return
	}
	rep, err := s.report.get(r.Context(), s.deploymentReport)
	if err != nil {
		s.fail(w, "report", err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// deploymentReport reads every meeting: its cost grows with the
// deployment, so it runs only through reportCache.
func (s *Server) deploymentReport(ctx context.Context) (api.DeploymentReport, error) {
	all, err := s.meetings.all(ctx)
	if err != nil {
		return api.DeploymentReport{}, err
	}
	// Only the nodes' usage counts here, not each meeting's audit chain.
	now := s.now().UTC()
	var nodes []api.NodeUsage
	for _, m := range all {
		nodes = append(nodes, nodeUsage(m, now)...)
	}
	return api.DeploymentReport{Meetings: len(all), Countries: byCountry(nodes), Computed: now}, nil
}

// reportCache keeps the last deployment report for api.ReportMaxAge and
// lets one request compute a new one while the others wait for it, so the
// store sees at most one full read per ReportMaxAge whatever the request
// rate. mu is never held across the computation. The zero value is ready.
type reportCache struct {
	mu       sync.Mutex
	rep      api.DeploymentReport
	at       time.Time     // when rep was computed; zero: none yet
	inflight chan struct{} // closed when the running computation ends
	// maxAge and now are for tests; zero and nil mean api.ReportMaxAge
	// and time.Now.
	maxAge time.Duration
	now    func() time.Time
	// computed counts computations.
	computed atomic.Int64
}

func (c *reportCache) get(ctx context.Context, compute func(context.Context) (api.DeploymentReport, error)) (api.DeploymentReport, error) {
	for {
		c.mu.Lock()
		now, maxAge := time.Now(), c.maxAge
		if c.now != nil {
			now = c.now()
		}
		if maxAge <= 0 {
			maxAge = api.ReportMaxAge
		}
		if !c.at.IsZero() && now.Sub(c.at) < maxAge {
			rep := c.rep
			c.mu.Unlock()
			return rep, nil
		}
		if wait := c.inflight; wait != nil {
			c.mu.Unlock()
			select {
			case <-wait:
				continue // computed (or failed: then this request tries)
			case <-ctx.Done():
				return api.DeploymentReport{}, ctx.Err()
			}
		}
		done := make(chan struct{})
		c.inflight = done
		c.mu.Unlock()

		c.computed.Add(1)
		rep, err := compute(ctx)
		c.mu.Lock()
		c.inflight = nil
		if err == nil {
			c.rep, c.at = rep, now
		}
		c.mu.Unlock()
		close(done)
		return rep, err
	}
}
