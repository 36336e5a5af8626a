package control

import (
	"context"
	"fmt"
	"time"

	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/store"
)

// eventsConsumer is the durable name under which the control plane takes
// node events from their stream: one name for every control plane of a
// deployment, so the next one resumes where the last acknowledged.
const eventsConsumer = "control"

// eventsAckWait is how long an event handed out waits for its
// acknowledgement before it is delivered again (5 s by default): well past
// one event's store round trips, short enough that the events a control
// plane held when it was killed reach the next one soon after it starts.
// (One that stops cleanly hands them back at once.)
func eventsAckWait(t cluster.Timing) time.Duration {
	return max(5*t.HeartbeatInterval, 200*time.Millisecond)
}

// eventsMaxDeliver is how many times an event whose store update fails
// is delivered before it is given up (logged, and acknowledged): with
// eventsRetryDelay, about two minutes by default, well past a store's
// failover.
const eventsMaxDeliver = 20

// eventsRetryDelay is how long an event whose store update failed waits
// before its next delivery: growing with each delivery, from one
// heartbeat interval to ten.
func eventsRetryDelay(t cluster.Timing, delivered uint64) time.Duration {
	return max(t.HeartbeatInterval, 10*time.Millisecond) * time.Duration(min(delivered, 10))
}

// consumeEvents takes in node events from the events stream until ctx
// ends, one at a time and in order, acknowledging each once nodeEvent has
// returned. An event cut off by ctx is left unacknowledged, for the next
// control plane to take in. Events are processed idempotently, so one
// delivered again changes nothing more.
func (s *Server) consumeEvents(ctx context.Context, c *store.EventConsumer) error {
	return c.Consume(ctx, func(m store.EventMsg) {
		ev, ok := s.decodeEvent(m)
		if !ok {
			_ = m.Ack() // never valid, whoever takes it in
			return
		}
		err := s.nodeEvent(ctx, ev)
		if ctx.Err() != nil {
			// Cut off, or never begun (handed out before the stop): the
			// next control plane takes it at once.
			_ = m.Nak()
			return
		}
		if err != nil {
			if m.Delivered < eventsMaxDeliver {
				// The store failed (during a failover, mostly): the
				// event comes again once it may be back.
				s.log.Warn("node event not taken in: will retry", "subject", m.Subject, "meeting", ev.Meeting,
					"participant", ev.Participant, "kind", ev.Kind, "delivery", m.Delivered, "err", err)
				_ = m.NakWithDelay(eventsRetryDelay(s.cfg.Timing, m.Delivered))
				return
			}
			s.log.Error("node event given up after repeated store failures: its participant's state may be stale until the next plan",
				"subject", m.Subject, "meeting", ev.Meeting, "participant", ev.Participant, "kind", ev.Kind, "deliveries", m.Delivered, "err", err)
		}
		if err := m.Ack(); err != nil {
			s.log.Warn("acknowledge node event", "subject", m.Subject, "err", err)
		}
	})
}

// decodeEvent checks an event from the stream (cluster.DecodeEvent) and
// that the node it names is the one that sent it.
func (s *Server) decodeEvent(m store.EventMsg) (cluster.Event, bool) {
	ev, err := cluster.DecodeEvent(m.Data)
	if err != nil {
		s.log.Warn("ignoring malformed node event", "subject", m.Subject, "err", err)
		return ev, false
	}
	if sender, ok := cluster.SubjectNode(m.Subject); !ok || ev.Node != sender {
		s.log.Warn("ignoring node event naming another node", "subject", m.Subject, "names", ev.Node)
		return ev, false
	}
	return ev, true
}

// openEvents binds the control plane's consumer of node events.
func (s *Server) openEvents(ctx context.Context) (*store.EventConsumer, error) {
	c, err := s.cfg.Store.EventConsumer(ctx, eventsConsumer, eventsAckWait(s.cfg.Timing), eventsMaxDeliver)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	return c, nil
}
