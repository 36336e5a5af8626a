package control

import (
	"github.com/oakmeet/oakmeet/api"
	"sort"
	"sync"
	"time"

	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/placement"
)

// nodeState is what the control plane knows of one node.
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
}

// registry tracks nodes from their heartbeats. Health changes are returned
// to the caller, which audits them outside the lock.
type registry struct {
	mu       sync.Mutex
	nodes    map[string]*nodeState
	assigned map[string]int // participants placed per node and not yet gone
	version  uint64
	snap     *placement.Snapshot
	snapVer  uint64
}

func newRegistry() *registry {
	return &registry{nodes: map[string]*nodeState{}, assigned: map[string]int{}, version: 1}
}

// known adds a registration read from storage; it stays unhealthy until a
// heartbeat arrives.
func (r *registry) known(info cluster.NodeInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.nodes[info.ID]; !ok {
		r.nodes[info.ID] = &nodeState{Info: info}
		r.version++
	}
}

// heartbeat records a report; it returns true if the node just became
// healthy.
func (r *registry) heartbeat(hb cluster.Heartbeat, now time.Time) (cameUp bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, ok := r.nodes[hb.Node.ID]
	if !ok {
		n = &nodeState{}
		r.nodes[hb.Node.ID] = n
	}
	changed := !ok || !n.Healthy || n.Draining != hb.Draining || n.Load.Participants != hb.Load.Participants ||
		n.Load.BitrateInBps+n.Load.BitrateOutBps != hb.Load.BitrateInBps+hb.Load.BitrateOutBps || !sameInfo(n.Info, hb.Node)
	cameUp = !n.Healthy
	n.Info, n.Load, n.Draining, n.LastSeen, n.Healthy = hb.Node, hb.Load, hb.Draining, now, true
	if hb.MeetingBytes != nil {
		n.MeetingBytes = hb.MeetingBytes
	}
	n.Relays = hb.Relays
	if changed {
		r.version++
	}
	return cameUp
}

// expire marks nodes silent for longer than the timeout unhealthy and
// returns them.
func (r *registry) expire(now time.Time) []cluster.NodeInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	var down []cluster.NodeInfo
	for _, n := range r.nodes {
		if n.Healthy && now.Sub(n.LastSeen) > cluster.DefaultTiming().HeartbeatTimeout {
			n.Healthy = false
			n.Relays = nil // a silent node's links are gone with it
			down = append(down, n.Info)
		}
	}
	if len(down) > 0 {
		r.version++
	}
	sort.Slice(down, func(i, j int) bool { return down[i].ID < down[j].ID })
	return down
}

func (r *registry) assign(nodeID string, delta int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.assigned[nodeID] += delta
	if r.assigned[nodeID] <= 0 {
		delete(r.assigned, nodeID)
	}
	r.version++
}

func (r *registry) resetAssigned(counts map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.assigned = counts
	r.version++
}

// snapshot returns the placement view of the node set, rebuilt only when
// something placement cares about changed.
func (r *registry) snapshot() *placement.Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.snap != nil && r.snapVer == r.version {
		return r.snap
	}
	nodes := make([]placement.Node, 0, len(r.nodes))
	for _, n := range r.nodes {
		nodes = append(nodes, placement.Node{
			ID: n.Info.ID, Country: n.Info.Country, Region: n.Info.Region,
			Lat: n.Info.Lat, Lon: n.Info.Lon,
			Healthy: n.Healthy, Draining: n.Draining,
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

func (r *registry) list() []api.Node {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]api.Node, 0, len(r.nodes))
	for _, n := range r.nodes {
		v := api.Node{
			ID: n.Info.ID, Country: n.Info.Country, Region: n.Info.Region, URL: n.Info.URL,
			Healthy: n.Healthy, Draining: n.Draining,
			Load:     api.Load{Load: n.Load, Assigned: r.assigned[n.Info.ID]},
			Capacity: api.Capacity{MaxParticipants: n.Info.MaxParticipants, MaxBitrateBps: n.Info.MaxBitrateBps},
		}
		if !n.LastSeen.IsZero() {
			t := n.LastSeen.UTC()
			v.LastSeen = &t
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// states returns a copy of every node's state, sorted by id.
func (r *registry) states() []nodeState {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]nodeState, 0, len(r.nodes))
	for _, n := range r.nodes {
		out = append(out, *n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Info.ID < out[j].Info.ID })
	return out
}

func (r *registry) get(id string) (nodeState, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, ok := r.nodes[id]
	if !ok {
		return nodeState{}, false
	}
	return *n, true
}

func (r *registry) healthyCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := 0
	for _, n := range r.nodes {
		if n.Healthy {
			c++
		}
	}
	return c
}

func sameInfo(a, b cluster.NodeInfo) bool {
	return a.ID == b.ID && a.Country == b.Country && a.Region == b.Region && a.URL == b.URL &&
		a.MaxParticipants == b.MaxParticipants && a.MaxBitrateBps == b.MaxBitrateBps &&
		a.Lat == b.Lat && a.Lon == b.Lon && string(a.IdentityKey) == string(b.IdentityKey) &&
		(a.TURN == nil) == (b.TURN == nil)
}
