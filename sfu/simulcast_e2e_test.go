package sfu_test

import (
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/sfu"
	"github.com/oakmeet/oakmeet/sfu/sfutest"
)

func TestSimulcastSubscriberGetsRequestedLayer(t *testing.T) {
	t.Parallel()
	srv := sfutest.Start(t, sfu.Config{})
	alice := join(t, srv, "m", "alice", client.Options{})
	alice.publish(mediaOpts{noAudio: true, simulcast: []string{"q", "h", "f"}, frameBytes: 300})
	bob := join(t, srv, "m", "bob", client.Options{})

	var trackID string
	eventually(t, 10*time.Second, "bob receives the high layer", func() bool {
		ts, id, ok := bob.recv.stats("alice", video)
		trackID = id
		return ok && ts.lastLayer == 'f' && ts.layers['f'] >= 10
	})
	for _, step := range []struct {
		ask  string
		want byte
	}{
		{"low", 'q'},
		{"h", 'h'}, // by rid
		{"high", 'f'},
	} {
		before, _, _ := bob.recv.stats("alice", video)
		if err := bob.s.Subscribe(trackID, step.ask); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "bob switched to "+step.ask, func() bool {
			ts, _, _ := bob.recv.stats("alice", video)
			return ts.lastLayer == step.want && ts.layers[step.want] >= before.layers[step.want]+10
		})
	}
	// Every switch was seamless: the subscriber saw one unbroken run of
	// sequence numbers.
	ts, _, _ := bob.recv.stats("alice", video)
	first, last := ts.seqOrder[0], ts.seqOrder[len(ts.seqOrder)-1]
	for s := first; s != last; s++ {
		if !ts.seqs[s] {
			t.Fatalf("sequence number %d missing between %d and %d", s, first, last)
		}
	}
	if err := bob.s.Subscribe(trackID, "ultra"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "an error for an unknown layer", func() bool {
		return bob.recv.has(func(e client.Event) bool {
			se, ok := e.Err.(*client.ServerError)
			return e.Type == client.EventError && ok && se.Code == sfu.CodeBadLayer
		})
	})
}
