package sfu_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/sfu"
	"github.com/oakmeet/oakmeet/sfu/sfutest"
)

// linkLayerBytes is what node s has received over its one relay link, by
// simulcast layer.
func linkLayerBytes(t *testing.T, s *sfutest.Server) [3]uint64 {
	t.Helper()
	rs := s.SFU.Relays()
	if len(rs) != 1 {
		t.Fatalf("%d relay links, want 1", len(rs))
	}
	return rs[0].LayerBytesReceived
}

// onlyLayerCrosses reports whether, over a window in which layer q brings
// at least grow more bytes over b's relay link, no other layer brings any.
// It says what crossed otherwise, for the failure message.
func onlyLayerCrosses(t *testing.T, b *sfutest.Server, q int, grow uint64) (bool, string) {
	before := linkLayerBytes(t, b)
	var after [3]uint64
	eventually(t, 10*time.Second, fmt.Sprintf("layer %d crosses the link", q), func() bool {
		after = linkLayerBytes(t, b)
		return after[q]-before[q] >= grow
	})
	var d [3]uint64
	ok := true
	for i := range d {
		d[i] = after[i] - before[i]
		if i != q && d[i] != 0 {
			ok = false
		}
	}
	return ok, fmt.Sprintf("bytes crossing per layer (low, medium, high): %v", d)
}

// A relay link carries only the simulcast layers some subscriber behind it
// receives: with bob asking for low, medium and high stay on node A; when
// he asks for high, high crosses and low stops; and so on.
func TestRelayForwardsOnlyWatchedLayers(t *testing.T) {
	t.Parallel()
	a, b := sfutest.Start(t, sfu.Config{}), sfutest.Start(t, sfu.Config{})
	alice := join(t, a, "m", "alice", client.Options{})
	alice.publish(mediaOpts{simulcast: []string{"q", "h", "f"}, keyEvery: 30, noAudio: true})
	sfutest.Link(t, "m", a, "node-a", b, "node-b")
	bob := join(t, b, "m", "bob", client.Options{})

	var id string
	eventually(t, 20*time.Second, "bob gets alice's video", func() bool {
		ts, tid, ok := bob.recv.stats("alice", video)
		id = tid
		return ok && ts.packets > 5
	})
	for _, step := range []struct {
		ask   string
		rid   byte
		layer int
	}{
		{"low", 'q', 0},
		{"high", 'f', 2},
		// Medium has not crossed since the start: its stream here is
		// stale, and still it comes back.
		{"medium", 'h', 1},
	} {
		if err := bob.s.Subscribe(id, step.ask); err != nil {
			t.Fatal(err)
		}
		before, _, _ := bob.recv.stats("alice", video)
		eventually(t, 20*time.Second, "bob receives "+step.ask, func() bool {
			ts, _, _ := bob.recv.stats("alice", video)
			return ts.lastLayer == step.rid && ts.layers[step.rid] >= before.layers[step.rid]+5
		})
		// The other layers stop within a tick or two; from then on a
		// window of a second or so of the watched layer brings nothing
		// else across.
		deadline := time.Now().Add(10 * time.Second)
		for {
			ok, what := onlyLayerCrosses(t, b, step.layer, 8_000)
			if ok {
				t.Logf("%s: %s", step.ask, what)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("bob asks for %s, but other layers still cross the link: %s", step.ask, what)
			}
		}
	}
}
