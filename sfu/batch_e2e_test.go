package sfu_test

import (
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"

	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/sfu"
	"github.com/oakmeet/oakmeet/sfu/sfutest"
)

// noMarker clears the marker bit of every video packet a client sends:
// frames that never end.
type noMarker struct{ interceptor.NoOp }

func (n *noMarker) NewInterceptor(string) (interceptor.Interceptor, error) { return n, nil }

func (n *noMarker) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	if info.MimeType != "video/VP8" {
		return w
	}
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		h.Marker = false
		return w.Write(h, payload, a)
	})
}

// The node's sockets are held from a frame's first packet to its marker
// bit. A publisher whose frames never end holds them for good; what anyone
// else is sent must still leave within the batch delay, not when a queue
// fills.
func TestAPublisherWhoseFramesNeverEndHoldsNoOneBack(t *testing.T) {
	t.Parallel()
	srv := sfutest.Start(t, sfu.Config{SendBatchDelay: 5 * time.Millisecond})
	mallory := join(t, srv, "m1", "mallory", client.Options{Interceptors: []interceptor.Factory{&noMarker{}}})
	mallory.publish(mediaOpts{keyEvery: 30, noAudio: true})
	alice := join(t, srv, "m1", "alice", client.Options{})
	alice.publish(mediaOpts{keyEvery: 30})
	bob := join(t, srv, "m1", "bob", client.Options{})
	eventually(t, 15*time.Second, "bob receives mallory's video and alice's audio", func() bool {
		return bob.recv.packets("mallory", video) >= 30 && bob.recv.packets("alice", audio) >= 50
	})
	from := time.Now()
	eventually(t, 10*time.Second, "a second of alice's audio", func() bool {
		st, _, _ := bob.recv.stats("alice", audio)
		return len(st.arrivals) > 0 && st.arrivals[len(st.arrivals)-1].Sub(from) > time.Second
	})
	st, _, _ := bob.recv.stats("alice", audio)
	// Audio comes every 20 ms; a queue left to fill (512 datagrams at a
	// few hundred a second here) would hold it for seconds. A second
	// leaves room for a busy machine.
	var gap time.Duration
	prev := from
	for _, at := range st.arrivals {
		if at.Before(from) {
			continue
		}
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	if gap > time.Second {
		t.Fatalf("alice's audio reached bob with a gap of %s while mallory held the node's sockets", gap)
	}
}
