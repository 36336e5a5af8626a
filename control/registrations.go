package control

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/nats-io/nats.go"

	"github.com/oakmeet/oakmeet/cluster"
)

// registrations stores the registration each node announces in its
// heartbeats, so that a restarted control plane knows the nodes before
// they next report. Nodes cannot write KV themselves: only the control
// plane's NATS identity can, and it stores a registration only as heard on
// the node's own subject.
//
// stored is the last value written per node. It belongs to the heartbeat
// subscription's handler, which NATS calls for one message at a time.
type registrations struct {
	stored map[string][]byte
}

func newRegistrations() *registrations { return &registrations{stored: map[string][]byte{}} }

// heartbeat stores hb's registration if it changed, and forgets it when the
// node says it is leaving.
func (r *registrations) heartbeat(ctx context.Context, s *Server, hb cluster.Heartbeat) {
	id := hb.Node.ID
	if hb.Leaving {
		delete(r.stored, id)
		if err := s.cfg.Store.DeleteNode(ctx, id); err != nil {
			s.log.Warn("forget node registration", "node", id, "err", err)
		}
		return
	}
	value, err := json.Marshal(hb.Node)
	if err != nil || bytes.Equal(r.stored[id], value) {
		return
	}
	if err := s.cfg.Store.PutNode(ctx, id, value); err != nil {
		s.log.Warn("store node registration", "node", id, "err", err)
		return
	}
	r.stored[id] = value
}

// fromNode decodes a node's message of kind and returns it only if the node
// it names (id) is the one whose subject it came on: that subject is the
// only one the node's NATS identity may publish on, so anything else is one
// node speaking for another.
func fromNode[T any](s *Server, m *nats.Msg, kind string, id func(T) string) (T, bool) {
	v, err := cluster.Decode[T](kind, m.Data)
	if err != nil {
		s.log.Warn("ignoring malformed "+kind, "subject", m.Subject, "err", err)
		return v, false
	}
	sender, ok := cluster.SubjectNode(m.Subject)
	if !ok || id(v) != sender {
		s.log.Warn("ignoring "+kind+" naming another node", "subject", m.Subject, "names", id(v))
		return v, false
	}
	return v, true
}
