package sfu_test

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"

	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/sfu"
	"github.com/oakmeet/oakmeet/sfu/sfutest"
)

// narrowLink puts a narrow downlink in front of a client's media: what
// the node sends arrives no faster than rate bit/s, through a drop-tail
// buffer of buffer. Its reader is the closest to the network, so the
// client's transport-cc recorder, and so the node's estimator, see the
// arrival times the link makes.
type narrowLink struct {
	interceptor.NoOp
	rate   float64
	buffer time.Duration

	mu      sync.Mutex
	busy    time.Time
	dropped int
}

func (l *narrowLink) NewInterceptor(string) (interceptor.Interceptor, error) { return l, nil }

type linkPacket struct {
	b    []byte
	out  time.Time // when the link has carried it
	attr interceptor.Attributes
}

func (l *narrowLink) BindRemoteStream(_ *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	q := make(chan linkPacket, 4096)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 1500)
			n, a, err := r.Read(buf, nil)
			if err != nil {
				return
			}
			now := time.Now()
			l.mu.Lock()
			start := now
			if l.busy.After(now) {
				start = l.busy
			}
			if start.Sub(now) > l.buffer {
				l.dropped++
				l.mu.Unlock()
				continue
			}
			l.busy = start.Add(time.Duration(float64(n*8) / l.rate * float64(time.Second)))
			out := l.busy
			l.mu.Unlock()
			q <- linkPacket{b: buf[:n], out: out, attr: a}
		}
	}()
	return interceptor.RTPReaderFunc(func(b []byte, _ interceptor.Attributes) (int, interceptor.Attributes, error) {
		p, ok := <-q
		if !ok {
			return 0, nil, errLinkClosed
		}
		// The link is the system under test's environment, not a
		// synchronisation: the packet is held for as long as the link
		// would take to carry it.
		time.Sleep(time.Until(p.out))
		return copy(b, p.b), p.attr, nil
	})
}

type linkError string

func (e linkError) Error() string { return string(e) }

const errLinkClosed = linkError("narrow link closed")

// A subscriber whose downlink cannot carry the layer it asked for is moved
// down by the node: its estimate, from the subscriber's real transport-cc
// feedback through a real PeerConnection, falls to what the link carries.
// On an open link the same subscriber keeps the top layer.
func TestASubscriberOnANarrowLinkIsMovedDownALayer(t *testing.T) {
	t.Parallel()
	srv := sfutest.Start(t, sfu.Config{})
	alice := join(t, srv, "m", "alice", client.Options{})
	// About 40, 210 and 830 kbit/s.
	alice.publish(mediaOpts{noAudio: true, simulcast: []string{"q", "h", "f"},
		layerBytes: map[string]int{"q": 150, "h": 800, "f": 3200}})
	open := join(t, srv, "m", "olga", client.Options{})
	link := &narrowLink{rate: 450_000, buffer: 300 * time.Millisecond}
	narrow := join(t, srv, "m", "nick", client.Options{Interceptors: []interceptor.Factory{link}})

	eventually(t, 20*time.Second, "nick is moved below the top layer and gets frames there", func() bool {
		ts, _, ok := narrow.recv.stats("alice", video)
		return ok && ts.lastLayer != 'f' && ts.layers['f'] > 0 && ts.layers[ts.lastLayer] >= 30
	})
	ts, _, _ := open.recv.stats("alice", video)
	if ts.lastLayer != 'f' {
		t.Fatalf("on an open link olga gets layer %q, want the top one", ts.lastLayer)
	}
}
