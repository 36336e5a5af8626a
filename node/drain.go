package node

import (
	"context"
	"time"
)

// Participants is how many participants this node serves now.
func (n *Node) Participants() int { return n.sfu.Load().Participants }

// DrainAndWait stops taking participants, reports it at once so the control
// plane moves the node's participants elsewhere, and waits until none is
// left or ctx ends.
func (n *Node) DrainAndWait(ctx context.Context) error {
	n.Drain()
	n.heartbeat()
	// Participants leave as the control plane moves them, which it does
	// on heartbeats: looking a few times a heartbeat is soon enough.
	t := time.NewTicker(max(n.cfg.Timing.HeartbeatInterval/5, time.Millisecond))
	defer t.Stop()
	for n.Participants() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
