package sfu_test

import (
	"context"
	"testing"
	"time"

	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/sfu"
	"github.com/oakmeet/oakmeet/sfu/sfutest"
	"github.com/oakmeet/oakmeet/signal"
)

// A track's declared source reaches every receiver: those in the meeting
// by track_published, a later joiner by its welcome, and on both the
// undeclared tracks get the default of their kind.
func TestDeclaredScreenTrackIsAnnouncedWithItsSource(t *testing.T) {
	t.Parallel()
	srv := sfutest.Start(t, sfu.Config{})
	bob := join(t, srv, "m1", "bob", client.Options{})
	alice := join(t, srv, "m1", "alice", client.Options{})
	alice.publish(mediaOpts{keyEvery: 30})
	screen, err := alice.s.PublishVideo(client.TrackOptions{ID: "screen", Source: signal.SourceScreen})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for n := uint32(1); ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				_ = screen.WriteSample(media.Sample{Data: vp8Frame(n%20 == 1, "", n, 400), Duration: 50 * time.Millisecond})
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })

	// sources is what p was told of alice's tracks: source by kind and
	// source, from track events (published, added) of either kind.
	sources := func(p *participant) map[string]int {
		p.recv.mu.Lock()
		defer p.recv.mu.Unlock()
		seen := map[string]string{}
		for _, e := range p.recv.events {
			if (e.Type == client.EventTrackPublished || e.Type == client.EventTrackAdded) && e.Info.Participant == "alice" {
				seen[e.Info.ID] = e.Info.Kind + "/" + e.Info.Source
			}
		}
		out := map[string]int{}
		for _, s := range seen {
			out[s]++
		}
		return out
	}
	want := map[string]int{"audio/microphone": 1, "video/camera": 1, "video/screen": 1}
	check := func(p *participant, who string) {
		eventually(t, 15*time.Second, who+" learns alice's three tracks with their sources", func() bool {
			got := sources(p)
			return len(got) == len(want) && got["audio/microphone"] == 1 && got["video/camera"] == 1 && got["video/screen"] == 1
		})
	}
	check(bob, "bob")
	carol := join(t, srv, "m1", "carol", client.Options{})
	check(carol, "carol (welcome)")

	// Stopping the screen unpublishes it, and only it.
	if err := screen.Stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "bob sees the screen track removed", func() bool {
		bob.recv.mu.Lock()
		defer bob.recv.mu.Unlock()
		for _, e := range bob.recv.events {
			if e.Type == client.EventTrackRemoved && e.Info.Source == signal.SourceScreen {
				return true
			}
		}
		return false
	})
}
