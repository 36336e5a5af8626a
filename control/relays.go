package control

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/cluster"
)

// closedWindow is how long a link ordered closed is shown as closing: the
// nodes' heartbeats may list it for up to about two heartbeats after the
// order (three heartbeat intervals, three seconds by default).
func closedWindow(t cluster.Timing) time.Duration { return 3 * t.HeartbeatInterval }

// relays keeps a relay link between every two nodes the meeting uses, and
// none to a node its policy does not allow.
func (p *planner) relays(used map[string]*nodeState) {
	ids := slices.Sorted(maps.Keys(used))
	want := map[[2]string]bool{}
	for i := range ids {
		for j := i + 1; j < len(ids); j++ {
			a, b := used[ids[i]], used[ids[j]]
			if p.Policy.Allows(a.Info.Country, a.Info.Region) && p.Policy.Allows(b.Info.Country, b.Info.Region) {
				want[[2]string{ids[i], ids[j]}] = true
			}
		}
	}
	have, closed := p.next.relays, p.next.closed
	for _, pair := range slices.SortedFunc(maps.Keys(have), comparePairs) {
		if want[pair] {
			continue
		}
		delete(have, pair)
		closed[pair] = p.Now
		p.add(action{Kind: actCommand, Node: pair[0], Cmd: cluster.Command{Kind: cluster.CommandUnrelay, Peer: pair[1]}, Note: "relay closed"})
		p.add(action{Kind: actCommand, Node: pair[1], Cmd: cluster.Command{Kind: cluster.CommandUnrelay, Peer: pair[0]}})
	}
	for pair, at := range closed {
		if want[pair] || p.Now.Sub(at) > closedWindow(p.Timing) {
			delete(closed, pair)
		}
	}
	for _, pair := range slices.SortedFunc(maps.Keys(want), comparePairs) {
		last, ok := have[pair]
		if ok && p.Now.Sub(last) < p.Timing.RelayResend {
			continue
		}
		have[pair] = p.Now
		a, b := used[pair[0]], used[pair[1]]
		p.add(action{Kind: actRelay, Node: a.Info.ID, Relay: relayOrder{From: a.Info, To: b.Info, Policy: p.Policy}})
		if !ok {
			p.add(action{Kind: actAudit, Entry: audit.Entry{Kind: audit.KindRelay, Meeting: p.Meeting.ID, Node: a.Info.ID, NodeCountry: a.Info.Country,
				PolicyHash: p.Policy.Hash(), Reason: fmt.Sprintf("relay link %s (%s) <-> %s (%s)", a.Info.ID, a.Info.Country, b.Info.ID, b.Info.Country)}})
		}
	}
	// Defence in depth: a link a node reports that the policy does not
	// allow, or to a node heard from but not certified, is closed at once,
	// whoever asked for it.
	for _, id := range ids {
		for _, l := range used[id].Relays {
			if l.Meeting != p.Meeting.ID {
				continue
			}
			if peer, ok := p.Nodes.byID[l.Peer]; ok && (!p.Policy.Allows(peer.Info.Country, peer.Info.Region) || peer.Healthy && !peer.Cert.ok) {
				p.add(action{Kind: actCommand, Node: id, Cmd: cluster.Command{Kind: cluster.CommandUnrelay, Peer: l.Peer},
					Note: "closing a relay to a blocked node", Warn: true})
			}
		}
	}
}

func comparePairs(a, b [2]string) int {
	if c := strings.Compare(a[0], b[0]); c != 0 {
		return c
	}
	return strings.Compare(a[1], b[1])
}

// traffic stores the nodes' byte counters for the meeting every
// TrafficEvery while it has participants; while it rests, whenever a count
// changed, so the final counts nodes send after a room closes are kept.
func (p *planner) traffic(resting bool) {
	if !resting && p.Now.Sub(p.next.trafficAt) < p.Timing.TrafficEvery {
		return
	}
	reported := map[string]nodeBytes{}
	changed := false
	for id, ns := range p.Nodes.byID {
		stored := p.Meeting.Traffic[id]
		b, ok := ns.MeetingBytes[p.Meeting.ID]
		switch {
		case ok:
			reported[id] = nodeBytes{Bytes: b, Country: ns.Info.Country, Region: ns.Info.Region}
			changed = changed || stored == nil || stored.LastReported != b
		case ns.Healthy && stored != nil && stored.LastReported > 0:
			// The node has forgotten the meeting: should it come back, its
			// count starts from zero, and all of it is new.
			reported[id] = nodeBytes{Country: ns.Info.Country, Region: ns.Info.Region, Gone: true}
			changed = true
		}
	}
	if !changed {
		return
	}
	p.next.trafficAt = p.Now
	p.add(action{Kind: actTraffic, Traffic: reported})
}
