package client

import "testing"

// What is queued when a session closes, its EventClosed last, reaches a
// reader that is still reading: closing used to race the hand-over and
// could drop the final event.
func TestEventQueueDeliversWhatIsQueuedOnClose(t *testing.T) {
	for range 200 {
		q := newEventQueue()
		q.push(Event{Type: EventParticipantJoined})
		q.push(Event{Type: EventClosed})
		got := make(chan []EventType)
		go func() {
			var seen []EventType
			for e := range q.ch {
				seen = append(seen, e.Type)
			}
			got <- seen
		}()
		q.close()
		if seen := <-got; len(seen) != 2 || seen[1] != EventClosed {
			t.Fatalf("a reader got %v, want the join and then EventClosed", seen)
		}
	}
}

// A reader that takes nothing does not hold close up for ever: after
// closeGrace what is left is dropped and Events is closed.
func TestEventQueueCloseWithoutAReader(t *testing.T) {
	q := newEventQueue()
	q.push(Event{Type: EventClosed})
	q.close()
	if _, open := <-q.ch; open {
		t.Fatal("an event delivered after close returned")
	}
}
