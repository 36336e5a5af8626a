package store

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// MeetingChange is one change to the meetings bucket as a watch saw it.
type MeetingChange struct {
	ID       string
	Revision uint64
	Value    []byte
	// Deleted: the meeting was deleted or purged (Value is empty).
	Deleted bool
	// Current marks the end of the values present when the watch began:
	// from here on every change is a new one. It carries no meeting.
	Current bool
}

// WatchMeetings delivers every meeting's current value, then a change
// with Current set, then every change as it is stored, until ctx ends;
// the channel is closed then (or if the watch fails). A slow reader holds
// the watch up: nothing is dropped.
func (s *Store) WatchMeetings(ctx context.Context) (<-chan MeetingChange, error) {
	w, err := s.meetings.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch meetings: %w", err)
	}
	out := make(chan MeetingChange, 64)
	go func() {
		defer close(out)
		defer w.Stop()
		for {
			var e jetstream.KeyValueEntry
			var ok bool
			select {
			case <-ctx.Done():
				return
			case e, ok = <-w.Updates():
				if !ok {
					return
				}
			}
			c := MeetingChange{Current: true}
			if e != nil {
				c = MeetingChange{ID: e.Key(), Revision: e.Revision(), Value: e.Value(), Deleted: e.Operation() != jetstream.KeyValuePut}
			}
			select {
			case <-ctx.Done():
				return
			case out <- c:
			}
		}
	}()
	return out, nil
}
