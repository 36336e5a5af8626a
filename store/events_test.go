package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/natsauth"
)

// openWithNode is open, with a media node's connection to publish events.
func openWithNode(t *testing.T, node string) (*Store, func(string)) {
	t.Helper()
	dir := t.TempDir()
	auth, err := natsauth.LoadOrCreate(filepath.Join(dir, "nats"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := bus.Embed(bus.EmbedConfig{StoreDir: filepath.Join(dir, "jetstream"), Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	nc, err := e.ConnectControl("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	s, err := Open(context.Background(), nc)
	if err != nil {
		t.Fatal(err)
	}
	nodeConn, err := e.ConnectNode(node)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nodeConn.Close)
	publish := func(data string) {
		t.Helper()
		if err := nodeConn.Publish(cluster.SubjectEvents(node), []byte(data)); err != nil {
			t.Fatal(err)
		}
		if err := nodeConn.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	return s, publish
}

// consumeUntil takes events on consumer name until n were taken (acking
// them if ack), and returns their data and delivery counts.
func consumeUntil(t *testing.T, s *Store, name string, ackWait time.Duration, n int, ack bool) (data []string, delivered []uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := s.EventConsumer(ctx, name, ackWait, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan EventMsg, 64)
	done := make(chan error, 1)
	cctx, stop := context.WithCancel(ctx)
	go func() { done <- c.Consume(cctx, func(m EventMsg) { got <- m }) }()
	for len(data) < n {
		select {
		case m := <-got:
			if m.Subject != cluster.SubjectEvents("de-fra") {
				t.Errorf("subject %q", m.Subject)
			}
			data, delivered = append(data, string(m.Data)), append(delivered, m.Delivered)
			if ack {
				if err := m.Ack(); err != nil {
					t.Fatal(err)
				}
			}
		case <-ctx.Done():
			t.Fatalf("took %q, want %d events", data, n)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return data, delivered
}

// Events published before anyone consumes them are kept; a consumer
// resumes after what its name acknowledged; what it did not acknowledge
// is delivered again.
func TestEventsAreKeptUntilAcknowledged(t *testing.T) {
	s, publish := openWithNode(t, "de-fra")
	publish("e1")
	publish("e2")
	if got, _ := consumeUntil(t, s, "control", time.Minute, 2, true); got[0] != "e1" || got[1] != "e2" {
		t.Fatalf("first consumer took %q", got)
	}
	publish("e3")
	if got, _ := consumeUntil(t, s, "control", time.Minute, 1, false); got[0] != "e3" {
		t.Fatalf("the next consumer took %q, want only what was not acknowledged", got)
	}
	// Not acknowledged: delivered again once the ack wait has passed.
	got, delivered := consumeUntil(t, s, "control", 50*time.Millisecond, 1, true)
	if got[0] != "e3" || delivered[0] < 2 {
		t.Fatalf("redelivery %q (delivered %v)", got, delivered)
	}
}

func TestWatchMeetingsDeliversCurrentThenChanges(t *testing.T) {
	s, _ := openWithNode(t, "de-fra")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rev1, err := s.CreateMeeting(ctx, "m1", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	ch, err := s.WatchMeetings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := func() MeetingChange {
		t.Helper()
		select {
		case c, ok := <-ch:
			if !ok {
				t.Fatal("watch closed")
			}
			return c
		case <-ctx.Done():
			t.Fatal("no change delivered")
		}
		return MeetingChange{}
	}
	if c := next(); c.ID != "m1" || c.Revision != rev1 || string(c.Value) != "one" || c.Current {
		t.Fatalf("current value %+v", c)
	}
	if c := next(); !c.Current {
		t.Fatalf("want the end of current values, got %+v", c)
	}
	rev2, err := s.UpdateMeeting(ctx, "m1", []byte("two"), rev1)
	if err != nil {
		t.Fatal(err)
	}
	if c := next(); c.ID != "m1" || c.Revision != rev2 || string(c.Value) != "two" || c.Deleted {
		t.Fatalf("change %+v", c)
	}
	if err := s.meetings.Delete(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	if c := next(); c.ID != "m1" || !c.Deleted {
		t.Fatalf("deletion %+v", c)
	}
	cancel()
	for range ch { // closed once ctx ends
	}
}
