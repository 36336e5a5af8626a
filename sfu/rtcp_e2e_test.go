package sfu_test

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"

	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/sfu"
	"github.com/oakmeet/oakmeet/sfu/sfutest"
)

func TestLateJoinerGetsKeyFramePromptly(t *testing.T) {
	srv := sfutest.Start(t, sfu.Config{})
	alice := join(t, srv, "m", "alice", client.Options{})
	// Alice sends key frames only when asked: a key frame at Bob's proves
	// that the node asked her for one when Bob subscribed.
	alice.publish(mediaOpts{noAudio: true})
	bob := join(t, srv, "m", "bob", client.Options{})
	eventually(t, 10*time.Second, "bob receives a key frame from alice", func() bool {
		ts, _, ok := bob.recv.stats("alice", video)
		return ok && ts.keyFrames > 0
	})
	ts, _, _ := bob.recv.stats("alice", video)
	if wait := ts.firstKey.Sub(ts.added); wait > 2*time.Second {
		t.Fatalf("first key frame %v after the track arrived", wait)
	}
	if srv.SFU.Stats().PLISent == 0 {
		t.Fatal("no PLI was sent to the publisher")
	}
	// The first video packet Bob decodes must be a key frame: the node
	// holds a new subscription back until one arrives.
	if !ts.firstIsKey {
		t.Fatal("bob received video before the first key frame")
	}
}

// dropOnce drops outgoing video RTP packets whose sequence number matches
// a deterministic pattern, each only the first time it is sent, so that
// only a retransmission can fill the gap.
type dropOnce struct {
	interceptor.NoOp
	mu      sync.Mutex
	dropped map[uint32]map[uint16]bool
	count   int
}

func (d *dropOnce) NewInterceptor(string) (interceptor.Interceptor, error) { return d, nil }

func (d *dropOnce) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	if info.MimeType != "video/VP8" {
		return w
	}
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		d.mu.Lock()
		seen := d.dropped[h.SSRC]
		if seen == nil {
			seen = map[uint16]bool{}
			d.dropped[h.SSRC] = seen
		}
		drop := h.SequenceNumber%7 == 3 && !seen[h.SequenceNumber]
		if drop {
			seen[h.SequenceNumber] = true
			d.count++
		}
		d.mu.Unlock()
		if drop {
			return len(payload), nil
		}
		return w.Write(h, payload, a)
	})
}

func TestLossRecoveredByNACK(t *testing.T) {
	t.Parallel()
	drop := &dropOnce{dropped: map[uint32]map[uint16]bool{}}
	srv := sfutest.Start(t, sfu.Config{Interceptors: []interceptor.Factory{drop}})
	alice := join(t, srv, "m", "alice", client.Options{})
	alice.publish(mediaOpts{noAudio: true, keyEvery: 30, frameBytes: 2500})
	bob := join(t, srv, "m", "bob", client.Options{})

	const span = 300
	eventually(t, 20*time.Second, "bob receives a complete run of packets", func() bool {
		ts, _, ok := bob.recv.stats("alice", video)
		return ok && completeRun(ts, span)
	})
	drop.mu.Lock()
	dropped := drop.count
	drop.mu.Unlock()
	st := srv.SFU.Stats()
	if dropped < span/7-2 || st.Retransmits == 0 || st.NACKsIn == 0 {
		t.Fatalf("dropped %d packets, node saw %d NACKs and retransmitted %d", dropped, st.NACKsIn, st.Retransmits)
	}
}
