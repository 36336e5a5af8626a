package store

import (
	"context"
	"errors"
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

// MeetingRecord is one stored meeting as a snapshot read it.
type MeetingRecord struct {
	ID string
	Record
}

// Meetings reads every stored meeting's current value through one watch
// of the bucket (one ordered consumer delivering each key's newest value)
// rather than one request per meeting: at ten thousand meetings the
// difference is most of a control plane's start.
func (s *Store) Meetings(ctx context.Context) ([]MeetingRecord, error) {
	w, err := s.meetings.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read meetings: %w", err)
	}
	defer w.Stop()
	var out []MeetingRecord
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("read meetings: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("read meetings: the watch stopped before it delivered every meeting")
			}
			if e == nil { // every value present when the watch began
				return out, nil
			}
			out = append(out, MeetingRecord{ID: e.Key(), Record: Record{Value: e.Value(), Revision: e.Revision()}})
		}
	}
}
