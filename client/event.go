package client

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/mailbox"
	"github.com/oakmeet/oakmeet/signal"
)

// EventType says what an Event reports.
type EventType int

// Event types.
const (
	EventParticipantJoined EventType = iota + 1
	EventParticipantLeft
	EventTrackPublished // announced; media arrives with EventTrackAdded
	EventTrackAdded     // media of another participant's track is arriving
	EventTrackRemoved   // the publisher stopped the track or left
	EventChat
	EventRelay
	EventError  // the node refused something, or negotiation failed
	EventClosed // the session ended; Err says why
	// EventMove: the node asks this participant to join again through the
	// control plane and move (Text is why, e.g. "policy_change"); this
	// session keeps working until it is closed.
	EventMove
	// EventHost: a host statement (Payload, hoststmt's wire form) the node
	// passes on; it is unverified until checked against the host key. On
	// the legs of a Call it has been: Statement is set if the call's
	// HostView accepted it, Err says why not otherwise.
	EventHost
)

func (t EventType) String() string {
	switch t {
	case EventParticipantJoined:
		return "participant_joined"
	case EventParticipantLeft:
		return "participant_left"
	case EventTrackPublished:
		return "track_published"
	case EventTrackAdded:
		return "track_added"
	case EventTrackRemoved:
		return "track_removed"
	case EventChat:
		return "chat"
	case EventRelay:
		return "relay"
	case EventError:
		return "error"
	case EventClosed:
		return "closed"
	case EventMove:
		return "move"
	case EventHost:
		return "host"
	}
	return "unknown"
}

// Event is something that happened in the meeting. Only the fields of its
// Type are set.
type Event struct {
	Type        EventType
	Participant signal.Participant // who joined, left, chatted, relayed or publishes the track
	Info        signal.Track       // track events
	Track       *webrtc.TrackRemote
	Receiver    *webrtc.RTPReceiver
	Text        string
	Time        time.Time
	Payload     json.RawMessage // relay payload or host statement, exactly as sent
	// Statement is a host statement a Call's HostView accepted (EventHost).
	Statement *hoststmt.Statement
	Err       error
}

// eventQueue decouples the session from a slow reader of Events: pushes
// never block, and a goroutine hands events over in order.
type eventQueue struct {
	ch     chan Event
	q      *mailbox.Queue[Event]
	done   chan struct{}
	exited chan struct{}
	once   sync.Once
}

func newEventQueue() *eventQueue {
	q := &eventQueue{ch: make(chan Event), q: mailbox.New[Event](), done: make(chan struct{}), exited: make(chan struct{})}
	go q.pump()
	return q
}

func (q *eventQueue) push(e Event) { q.q.Put(e) }

func (q *eventQueue) pump() {
	defer close(q.exited)
	defer close(q.ch)
	for {
		batch := q.q.Take()
		for i, e := range batch {
			select {
			case q.ch <- e:
			case <-q.done:
				q.flush(batch[i:]...)
				return
			}
		}
		select {
		case <-q.q.Ready():
		case <-q.done:
			q.flush()
			return
		}
	}
}

// closeGrace is how long close waits for a reader to take what is still
// queued (the session's EventClosed among it) before dropping it.
const closeGrace = time.Second

// flush hands over held and then every queued event to a reader that
// still reads, giving up after closeGrace for one that does not.
func (q *eventQueue) flush(held ...Event) {
	t := time.NewTimer(closeGrace)
	defer t.Stop()
	for _, e := range append(held, q.q.Take()...) {
		select {
		case q.ch <- e:
		case <-t.C:
			return
		}
	}
}

// close stops delivery once what is queued is taken, or after closeGrace
// for a reader that takes nothing; what is left then is dropped.
func (q *eventQueue) close() {
	q.once.Do(func() { close(q.done) })
	<-q.exited
}
