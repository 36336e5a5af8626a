package sfu_test

import (
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/sfu"
	"github.com/oakmeet/oakmeet/sfu/sfutest"
	"github.com/oakmeet/oakmeet/signal"
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

// A paused subscription forwards nothing; resumed, it starts on a key frame
// and its sequence numbers continue where they stopped. Both for a
// simulcast track and a single-layer one.
func TestPausedTrackDeliversNothingUntilResumed(t *testing.T) {
	t.Parallel()
	for _, layers := range [][]string{{"q", "h", "f"}, nil} {
		name := "single"
		if layers != nil {
			name = "simulcast"
		}
		t.Run(name, func(t *testing.T) {
			srv := sfutest.Start(t, sfu.Config{})
			alice := join(t, srv, "m", "alice", client.Options{})
			alice.publish(mediaOpts{noAudio: true, simulcast: layers, frameBytes: 300})
			bob := join(t, srv, "m", "bob", client.Options{})
			carol := join(t, srv, "m", "carol", client.Options{})

			var trackID string
			eventually(t, 10*time.Second, "bob receives video", func() bool {
				ts, id, ok := bob.recv.stats("alice", video)
				trackID = id
				return ok && ts.keyFrames >= 1 && ts.packets >= 20
			})
			if err := bob.s.Subscribe(trackID, signal.LayerOff); err != nil {
				t.Fatal(err)
			}
			// The pause takes effect within a few packets; from then on,
			// while carol keeps receiving, bob receives nothing.
			var paused trackStats
			eventually(t, 10*time.Second, "bob's track stops", func() bool {
				before, _, _ := bob.recv.stats("alice", video)
				c0 := carol.recv.packets("alice", video)
				eventually(t, 10*time.Second, "carol gets more", func() bool { return carol.recv.packets("alice", video) >= c0+10 })
				after, _, _ := bob.recv.stats("alice", video)
				paused = after
				return after.packets == before.packets
			})
			c0 := carol.recv.packets("alice", video)
			eventually(t, 10*time.Second, "carol gets 60 more packets", func() bool { return carol.recv.packets("alice", video) >= c0+60 })
			if ts, _, _ := bob.recv.stats("alice", video); ts.packets != paused.packets {
				t.Fatalf("paused track delivered %d packets", ts.packets-paused.packets)
			}
			if err := bob.s.Subscribe(trackID, "high"); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, "bob receives again", func() bool {
				ts, _, _ := bob.recv.stats("alice", video)
				return ts.packets >= paused.packets+20
			})
			ts, _, _ := bob.recv.stats("alice", video)
			last := paused.seqOrder[len(paused.seqOrder)-1]
			first := ts.seqOrder[len(paused.seqOrder)]
			if first != last+1 {
				t.Errorf("resumed at sequence number %d after %d", first, last)
			}
			if !ts.keySeqs[first] {
				t.Errorf("the first packet after resuming (%d) does not start a key frame", first)
			}
		})
	}
}
