package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/oakmeet/oakmeet/cluster"
)

// eventsMaxAge bounds how long a node event waits for a control plane to
// take it in: far longer than any leadership change, and short enough that
// a deployment left without a control plane does not replay stale
// connections when one comes back.
const eventsMaxAge = time.Hour

// eventsStreamConfig is the stream that keeps node events (nodes publish
// them plainly on cluster.SubjectEvents) until the control plane has
// acknowledged them, with replicas JetStream copies.
// eventsPerNode bounds what the stream keeps of one node, and so how far
// one node's flood can put back the events of others: several times the
// connects and leaves a full node makes while a control plane fails over.
const eventsPerNode = 5_000

// eventsMaxBytes bounds the whole stream (MaxMsgSize times the per-node
// cap is 10 MB a node): room for hundreds of nodes, and a bound on the
// disk a deployment gives node events.
const eventsMaxBytes = 256 << 20

func eventsStreamConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        cluster.StreamEvents,
		Description: "oakmeet node events, kept until the control plane has taken them in",
		Subjects:    []string{cluster.SubjectEvents("*")},
		Retention:   jetstream.LimitsPolicy,
		// No acknowledgement to publishers: JetStream would send it to
		// whatever reply subject a node names, with the account's rights
		// (into a bucket's key, the audit log, the lease); nodes publish
		// plainly and never read one.
		NoAck:  true,
		MaxAge: eventsMaxAge,
		// Each node has a subject of its own: a node that floods it
		// pushes out only its own oldest events, never another's.
		MaxMsgsPerSubject: eventsPerNode,
		MaxMsgSize:        cluster.MaxEventBytes, // the control plane refuses larger ones anyway
		MaxBytes:          eventsMaxBytes,
		Discard:           jetstream.DiscardOld,
		Storage:           jetstream.FileStorage,
		Replicas:          max(replicas, 1),
	}
}

// EventMsg is one node event taken from the stream. Ack tells the stream it
// was processed; an event not acknowledged is delivered again (to this
// consumer or, after a restart, to the next one on the same name).
type EventMsg struct {
	Subject string
	Data    []byte
	// Delivered counts the deliveries of this event, this one included.
	Delivered uint64
	msg       jetstream.Msg
}

// Ack acknowledges the event.
func (e EventMsg) Ack() error { return e.msg.Ack() }

// Nak asks for the event to be delivered again at once.
func (e EventMsg) Nak() error { return e.msg.Nak() }

// NakWithDelay asks for the event to be delivered again after d.
func (e EventMsg) NakWithDelay(d time.Duration) error { return e.msg.NakWithDelay(d) }

// EventConsumer is a durable consumer of the events stream.
type EventConsumer struct {
	cons jetstream.Consumer
}

// EventConsumer binds to (creating where missing) the durable pull
// consumer name of the events stream: every event not yet acknowledged on
// that name is delivered, in order, so a control plane that starts after
// another stopped resumes where the last one acknowledged. An event not
// acknowledged within ackWait is delivered again, up to maxDeliver times
// in all (0: without end); the caller acknowledges the last delivery
// itself (JetStream delivers it no more, but would count it pending).
func (s *Store) EventConsumer(ctx context.Context, name string, ackWait time.Duration, maxDeliver int) (*EventConsumer, error) {
	if s.events == nil {
		return nil, errors.New("events stream: not opened by this handle")
	}
	c, err := s.events.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "the control plane's intake of node events",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    cmp.Or(maxDeliver, -1),
		// Events of one participant must be taken in in order (a
		// connection before its departure); a handful in flight keeps
		// redeliveries after a stall in that order too.
		MaxAckPending: 256,
		FilterSubject: cluster.SubjectEvents("*"),
	})
	if err != nil {
		return nil, fmt.Errorf("events consumer %s: %w", name, err)
	}
	return &EventConsumer{cons: c}, nil
}

// Consume calls fn for each event, one at a time, until ctx ends. fn
// acknowledges (or not) the events it is given.
func (c *EventConsumer) Consume(ctx context.Context, fn func(EventMsg)) error {
	cc, err := c.cons.Consume(func(m jetstream.Msg) {
		ev := EventMsg{Subject: m.Subject(), Data: m.Data(), msg: m, Delivered: 1}
		if md, err := m.Metadata(); err == nil {
			ev.Delivered = md.NumDelivered
		}
		fn(ev)
	})
	if err != nil {
		return fmt.Errorf("consume events: %w", err)
	}
	<-ctx.Done()
	// Drain lets the event being processed finish (and be acknowledged)
	// before Consume returns.
	cc.Drain()
	<-cc.Closed()
	return nil
}
