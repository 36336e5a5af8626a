package system

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"

	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// observer looks at every RTP payload a node receives and sends, for a
// marker the clients put in every frame before encrypting it.
type observer struct {
	marker  []byte
	packets atomic.Int64
	seen    atomic.Int64
}

func (o *observer) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &observerInterceptor{o: o}, nil
}

type observerInterceptor struct {
	interceptor.NoOp
	o *observer
}

func (i *observerInterceptor) check(payload []byte) {
	i.o.packets.Add(1)
	if bytes.Contains(payload, i.o.marker) {
		i.o.seen.Add(1)
	}
}

func (i *observerInterceptor) BindRemoteStream(_ *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := r.Read(b, a)
		if err == nil {
			var p rtp.Packet
			if p.Unmarshal(b[:n]) == nil {
				i.check(p.Payload)
			}
		}
		return n, a, err
	})
}

func (i *observerInterceptor) BindLocalStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		i.check(payload)
		return w.Write(h, payload, a)
	})
}

// The node forwards only ciphertext: the send stamp every bot writes into
// each frame ("oakT" and the time) never appears on the node's media path,
// while the receiving bots read it after decrypting (their latency).
func TestNodeNeverSeesPlaintextMarker(t *testing.T) {
	t.Parallel() // a light test: see the package documentation
	obs := &observer{marker: []byte("oakT")}
	spec := nodes()[0]
	spec.Interceptors = []interceptor.Factory{obs}
	c := testcluster.Start(t, policy.Policy{}, []testcluster.NodeSpec{spec})
	m := c.CreateMeeting(policy.Policy{})
	cfg := bot.Config{Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: fingerprint(t, m), Country: "DE", LoopbackOnly: true, Linger: 200 * time.Millisecond}
	stop := startBots(t, cfg, cfg)
	waitTraffic(t, c.API, m.ID, map[string]uint64{spec.ID: 0}, mediaWhile, 15*time.Second)
	reports := stop()
	if obs.packets.Load() < 500 {
		t.Fatalf("observer saw only %d packets", obs.packets.Load())
	}
	if n := obs.seen.Load(); n != 0 {
		t.Fatalf("the marker appeared in %d of %d packets on the node", n, obs.packets.Load())
	}
	stamped := 0
	for _, r := range reports {
		for _, tr := range r.Tracks {
			if tr.LatencyMs.P50 > 0 {
				stamped++ // the stamp was there after decryption
			}
		}
	}
	if stamped != 4 {
		t.Fatalf("only %d of 4 received tracks carried readable stamps", stamped)
	}
}
