package control

import (
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/placement"
)

// nodeState is what the control plane knows of one node. A stored value is
// never changed (a report replaces it), so views may share it.
type nodeState struct {
	Info     cluster.NodeInfo
	Load     cluster.Load
	Draining bool
	LastSeen time.Time
	Healthy  bool
	// Bytes forwarded per meeting, as last reported.
	MeetingBytes map[string]uint64
	// Relays are the node's relay links, as last reported.
	Relays []cluster.RelayLink
	// Cert is where the node's certificate stands (certs.go): only a
	// certified node is given participants or relay links.
	Cert certStatus
}

// usable reports whether participants and relay links may go to the node.
func (n *nodeState) usable() bool { return n.Healthy && n.Cert.ok }

// registry tracks nodes from their heartbeats. It belongs to the owner
// goroutine and has no lock.
type registry struct {
	nodes    map[string]*nodeState
	assigned map[string]int // participants placed per node and not yet gone
	version  uint64         // changes whenever placement's view would
	snap     *placement.Snapshot
	snapVer  uint64
	// touched are nodes changed in a way a plan of their meetings looks at
	// (health, draining, registration, certificate) since the owner last
	// took them (takeTouched); relayed are the meetings whose relay links,
	// as some node reports them, changed meanwhile.
	touched map[string]bool
	relayed map[string]bool
}

func newRegistry() *registry {
	return &registry{nodes: map[string]*nodeState{}, assigned: map[string]int{}, version: 1, touched: map[string]bool{}, relayed: map[string]bool{}}
}

// takeTouched returns the nodes touched and the meetings whose reported
// links changed since the last call, sorted.
func (r *registry) takeTouched() (nodes, meetings []string) {
	if len(r.touched) > 0 {
		nodes = slices.Sorted(maps.Keys(r.touched))
		clear(r.touched)
	}
	if len(r.relayed) > 0 {
		meetings = slices.Sorted(maps.Keys(r.relayed))
		clear(r.relayed)
	}
	return nodes, meetings
}

// sameRelays reports whether two reports list the same relay links.
func sameRelays(a, b []cluster.RelayLink) bool {
	return slices.EqualFunc(a, b, func(x, y cluster.RelayLink) bool {
		return x.Meeting == y.Meeting && x.Peer == y.Peer && x.Dialer == y.Dialer && x.Connected == y.Connected && x.Since.Equal(y.Since)
	})
}

// known adds a registration read from storage; it stays unhealthy until a
// heartbeat arrives.
func (r *registry) known(info cluster.NodeInfo) {
	if _, ok := r.nodes[info.ID]; !ok {
		r.nodes[info.ID] = &nodeState{Info: info}
		r.touched[info.ID] = true
		r.version++
	}
}

// heartbeat records a report and where its certificate stands; it returns
// true if the node just became healthy.
func (r *registry) heartbeat(hb cluster.Heartbeat, cert certStatus, now time.Time) (cameUp bool) {
	old, ok := r.nodes[hb.Node.ID]
	if !ok {
		old = &nodeState{}
	}
	changed := !ok || !old.Healthy || old.Draining != hb.Draining || old.Load.Participants != hb.Load.Participants ||
		old.Load.BitrateInBps+old.Load.BitrateOutBps != hb.Load.BitrateInBps+hb.Load.BitrateOutBps || !sameInfo(old.Info, hb.Node) ||
		old.Cert.ok != cert.ok || old.Cert.code != cert.code
	// Every report replaces the byte counts whole: a node lists only its
	// live meetings, and a count that went down is taken as a restart.
	r.nodes[hb.Node.ID] = &nodeState{Info: hb.Node, Load: hb.Load, Draining: hb.Draining, LastSeen: now, Healthy: true,
		MeetingBytes: hb.MeetingBytes, Relays: hb.Relays, Cert: cert}
	if changed {
		r.version++
	}
	if !ok || !old.Healthy || old.Draining != hb.Draining || !sameInfo(old.Info, hb.Node) || old.Cert.ok != cert.ok ||
		old.Cert.code != cert.code {
		r.touched[hb.Node.ID] = true
	}
	if !sameRelays(old.Relays, hb.Relays) {
		for _, l := range old.Relays {
			r.relayed[l.Meeting] = true
		}
		for _, l := range hb.Relays {
			r.relayed[l.Meeting] = true
		}
	}
	return !old.Healthy
}

// expire marks nodes silent for longer than timeout unhealthy and returns
// them, sorted by id.
func (r *registry) expire(now time.Time, timeout time.Duration) []cluster.NodeInfo {
	var down []cluster.NodeInfo
	for id, n := range r.nodes {
		if n.Healthy && now.Sub(n.LastSeen) > timeout {
			c := *n
			c.Healthy = false
			c.Relays = nil // a silent node's links are gone with it
			r.nodes[id] = &c
			r.touched[id] = true
			down = append(down, n.Info)
		}
	}
	if len(down) > 0 {
		r.version++
	}
	sort.Slice(down, func(i, j int) bool { return down[i].ID < down[j].ID })
	return down
}

// nextExpiry is when the first healthy node will have been silent for
// longer than timeout (zero: no node is healthy).
func (r *registry) nextExpiry(timeout time.Duration) time.Time {
	var next time.Time
	for _, n := range r.nodes {
		if at := n.LastSeen.Add(timeout + time.Nanosecond); n.Healthy && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	return next
}

// setCert records a node's certificate status changing.
func (r *registry) setCert(id string, st certStatus) {
	if n, ok := r.nodes[id]; ok {
		c := *n
		c.Cert = st
		r.nodes[id] = &c
		r.touched[id] = true
		r.version++
	}
}

// ids lists the nodes' ids, sorted.
func (r *registry) ids() []string { return slices.Sorted(maps.Keys(r.nodes)) }

func (r *registry) assign(nodeID string, delta int) {
	r.assigned[nodeID] += delta
	if r.assigned[nodeID] <= 0 {
		delete(r.assigned, nodeID)
	}
	r.version++
}

func (r *registry) resetAssigned(counts map[string]int) {
	r.assigned = counts
	r.version++
}

// snapshot returns the placement view of the node set, rebuilt only when
// something placement cares about changed.
func (r *registry) snapshot() *placement.Snapshot {
	if r.snap != nil && r.snapVer == r.version {
		return r.snap
	}
	nodes := make([]placement.Node, 0, len(r.nodes))
	for _, n := range r.nodes {
		nodes = append(nodes, placement.Node{
			ID: n.Info.ID, Country: n.Info.Country, Region: n.Info.Region,
			Lat: n.Info.Lat, Lon: n.Info.Lon,
			// An uncertified node is never placed on, whatever its health.
			Healthy: n.usable(), Draining: n.Draining,
			// The node's own count lags a join by up to a heartbeat; what
			// the control plane has placed is never behind.
			Participants:    max(n.Load.Participants, r.assigned[n.Info.ID]),
			MaxParticipants: n.Info.MaxParticipants,
			BitrateBps:      n.Load.BitrateInBps + n.Load.BitrateOutBps,
			MaxBitrateBps:   n.Info.MaxBitrateBps,
		})
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	r.snap, r.snapVer = placement.NewSnapshot(nodes), r.version
	return r.snap
}

func (r *registry) view() nodeView {
	return nodeView{byID: r.nodes, snap: r.snapshot()}
}

// liveView is what the owner last published, for readers that must not wait
// for it. It is never changed once published.
type liveView struct {
	nodes    []*nodeState // sorted by id
	byID     map[string]*nodeState
	assigned map[string]int
	pending  map[string]*meetingPending // by meeting
	healthy  int
}

func (r *registry) publish(pending map[string]*meetingPending) *liveView {
	v := &liveView{byID: maps.Clone(r.nodes), assigned: maps.Clone(r.assigned), pending: maps.Clone(pending)}
	v.nodes = slices.SortedFunc(maps.Values(r.nodes), func(a, b *nodeState) int { return strings.Compare(a.Info.ID, b.Info.ID) })
	for _, n := range v.nodes {
		if n.Healthy {
			v.healthy++
		}
	}
	return v
}

func (v *liveView) node(id string) nodeState {
	if n, ok := v.byID[id]; ok {
		return *n
	}
	return nodeState{}
}

// handleNodes lists the nodes a page at a time, in id order
// (api.NodesPageMax).
func (s *Server) handleNodes(w http.ResponseWriter, r *http.Request) {
	limit, e := pageLimit(r, api.NodesPageMax)
	if e != nil {
		writeError(w, e)
		return
	}
	after := r.URL.Query().Get("after")
	nodes, more := s.owner.live().page(after, limit)
	if more {
		q := url.Values{"after": {nodes[len(nodes)-1].ID}, "limit": {strconv.Itoa(limit)}}
		w.Header().Set("Link", "<"+api.PathNodes+"?"+q.Encode()+`>; rel="next"`)
	}
	writeJSON(w, http.StatusOK, nodes)
}

// page is at most limit nodes with ids after after, in id order, and
// whether more follow.
func (v *liveView) page(after string, limit int) ([]api.Node, bool) {
	from, _ := slices.BinarySearchFunc(v.nodes, after, func(n *nodeState, id string) int { return strings.Compare(n.Info.ID, id) })
	if from < len(v.nodes) && v.nodes[from].Info.ID == after {
		from++
	}
	rest := v.nodes[from:]
	more := len(rest) > limit
	if more {
		rest = rest[:limit]
	}
	out := make([]api.Node, 0, len(rest))
	for _, n := range rest {
		out = append(out, v.apiNode(n))
	}
	return out, more
}

func (v *liveView) list() []api.Node {
	out := make([]api.Node, 0, len(v.nodes))
	for _, n := range v.nodes {
		out = append(out, v.apiNode(n))
	}
	return out
}

func (v *liveView) apiNode(n *nodeState) api.Node {
	a := api.Node{
		ID: n.Info.ID, Country: n.Info.Country, Region: n.Info.Region, URL: n.Info.URL,
		Healthy: n.Healthy, Draining: n.Draining, Certified: n.Cert.ok, CertError: n.Cert.msg,
		Load:     api.Load{Load: n.Load, Assigned: v.assigned[n.Info.ID]},
		Capacity: api.Capacity{MaxParticipants: n.Info.MaxParticipants, MaxBitrateBps: n.Info.MaxBitrateBps},
	}
	if !n.LastSeen.IsZero() {
		t := n.LastSeen.UTC()
		a.LastSeen = &t
	}
	return a
}

func sameInfo(a, b cluster.NodeInfo) bool {
	return a.ID == b.ID && a.Country == b.Country && a.Region == b.Region && a.URL == b.URL &&
		a.MaxParticipants == b.MaxParticipants && a.MaxBitrateBps == b.MaxBitrateBps &&
		a.Lat == b.Lat && a.Lon == b.Lon && string(a.IdentityKey) == string(b.IdentityKey) && a.Cert == b.Cert &&
		(a.TURN == nil) == (b.TURN == nil)
}
