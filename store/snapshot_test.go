package store

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// Meetings reads each meeting's newest value and revision, leaves out the
// deleted ones, and reads an empty bucket as no meetings.
func TestMeetingsReadsEveryCurrentValue(t *testing.T) {
	s, stop := open(t, t.TempDir())
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if got, err := s.Meetings(ctx); err != nil || len(got) != 0 {
		t.Fatalf("empty bucket: %v, %v", got, err)
	}
	want := map[string]Record{}
	for i := range 300 {
		id := fmt.Sprintf("m%03d", i)
		value := "v0 " + id
		rev, err := s.CreateMeeting(ctx, id, []byte(value))
		if err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			value = "v1 " + id
			if rev, err = s.UpdateMeeting(ctx, id, []byte(value), rev); err != nil {
				t.Fatal(err)
			}
		}
		want[id] = Record{Value: []byte(value), Revision: rev}
	}
	for _, id := range []string{"m007", "m150"} {
		if err := s.meetings.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
		delete(want, id)
	}
	got, err := s.Meetings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d meetings, want %d", len(got), len(want))
	}
	for _, r := range got {
		w, ok := want[r.ID]
		if !ok {
			t.Fatalf("read meeting %s, deleted or never stored", r.ID)
		}
		if r.Revision != w.Revision || !slices.Equal(r.Value, w.Value) {
			t.Fatalf("meeting %s: read %q at %d, stored %q at %d", r.ID, r.Value, r.Revision, w.Value, w.Revision)
		}
	}
}

// A read whose context ends says so rather than returning part of the
// meetings as all of them.
func TestMeetingsCancelled(t *testing.T) {
	s, stop := open(t, t.TempDir())
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := s.CreateMeeting(ctx, "m1", []byte("a")); err != nil {
		t.Fatal(err)
	}
	cancel()
	if got, err := s.Meetings(ctx); err == nil {
		t.Fatalf("cancelled read returned %d meetings and no error", len(got))
	}
}
