package bench_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/bench"
	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

func TestBenchDeliversAndMeasures(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	// The default warm-up covers the publishers' and subscribers'
	// negotiation on a loaded machine; a one-second window is enough to
	// measure, and half a second of linger covers the frames on their way
	// over loopback when it ends.
	res, err := bench.Run(context.Background(), bench.Config{
		Server: c.URL, Publishers: 2, Subscribers: 2, Duration: time.Second, Country: "DE", LoopbackOnly: true,
		Linger: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Joined != 4 || len(res.Errors) != 0 {
		t.Fatalf("joined %d, errors %v", res.Joined, res.Errors)
	}
	// Two publishers send ~30 video and ~50 audio frames each; every
	// frame goes to the three other participants.
	if res.FramesSent < 130 || res.FramesExpected != 3*res.FramesSent {
		t.Fatalf("sent %d, expected %d", res.FramesSent, res.FramesExpected)
	}
	if res.DeliveryRatio < 0.97 || res.DeliveryRatio > 1.0 {
		t.Errorf("delivery ratio %.3f", res.DeliveryRatio)
	}
	if res.VideoLatencyMs.P50 <= 0 || res.AudioLatencyMs.P50 <= 0 || res.EgressMbps <= 0 {
		t.Errorf("result %+v", res)
	}
	// Every subscriber decrypted a first frame some time after its join;
	// joins close together may share one epoch.
	if res.NoFirstFrame != 0 || res.FirstFrameMs.P50 <= 0 || res.FirstFrameMaxMs < res.FirstFrameMs.P50 {
		t.Errorf("first frames: p50 %.0f ms, max %.0f ms, %d without", res.FirstFrameMs.P50, res.FirstFrameMaxMs, res.NoFirstFrame)
	}
	if res.Epochs < 1 || res.EpochsSinceBurst > res.Epochs {
		t.Errorf("epochs %d, %d since the burst", res.Epochs, res.EpochsSinceBurst)
	}
	// The test's control plane runs in this process, which listens on
	// the server port, so its CPU time is measurable.
	if res.ServerCPUS == nil || *res.ServerCPUS <= 0 {
		t.Errorf("server CPU not measured")
	}
}

func TestBenchSyntheticPlainLoadMeasuresTheNode(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	res, err := bench.Run(context.Background(), bench.Config{
		Server: c.URL, Publishers: 2, Subscribers: 1, Duration: time.Second, Country: "DE", LoopbackOnly: true,
		Linger: 500 * time.Millisecond, Warmup: 2 * time.Second,
		Synthetic: &bot.Synthetic{FrameBytes: 6250, FPS: 30}, NoAudio: true, NoE2EE: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Joined != 3 || len(res.Errors) != 0 {
		t.Fatalf("joined %d, errors %v", res.Joined, res.Errors)
	}
	if res.E2EE || res.Audio || res.VideoFrameBytes != 6250 || res.FPS != 30 {
		t.Errorf("the result does not say what was sent: e2ee %v, audio %v, %d bytes at %d fps", res.E2EE, res.Audio, res.VideoFrameBytes, res.FPS)
	}
	// Video only, ~30 frames a publisher; a 6,250-byte frame is six
	// packets of at most 1,200 bytes.
	if res.FramesSent < 40 || res.FramesSent > 80 || res.PacketsSent != 6*res.FramesSent {
		t.Fatalf("sent %d frames in %d packets", res.FramesSent, res.PacketsSent)
	}
	if res.DeliveryRatio < 0.97 || res.DeliveryRatio > 1 || res.PacketDeliveryRatio < 0.97 || res.PacketDeliveryRatio > 1 {
		t.Errorf("delivery %.3f of frames, %.3f of packets", res.DeliveryRatio, res.PacketDeliveryRatio)
	}
	if res.NoKey != 0 || res.DecryptFailures != 0 || res.AudioLatencyMs.P50 != 0 {
		t.Errorf("no key %d, failures %d, audio latency %v", res.NoKey, res.DecryptFailures, res.AudioLatencyMs)
	}
	if got := res.ForwardedPacketsPerS * res.DurationS; got < float64(res.PacketsDelivered)-1 || got > float64(res.PacketsDelivered)+1 {
		t.Errorf("%.0f forwarded per second over %.2f s, %d delivered", res.ForwardedPacketsPerS, res.DurationS, res.PacketsDelivered)
	}
	// The test's node runs in this process and is found by its port.
	if res.NodePID != os.Getpid() || res.Nodes != 1 || res.NodeID == "" {
		t.Fatalf("node %q process %d on %d nodes, want this process %d", res.NodeID, res.NodePID, res.Nodes, os.Getpid())
	}
	if res.NodeCPUCores == nil || *res.NodeCPUCores <= 0 || res.NodeUSPerForwardedPacket == nil || *res.NodeUSPerForwardedPacket <= 0 ||
		res.NodeRSSMB == nil || *res.NodeRSSMB < 1 {
		t.Errorf("node figures missing: cores %v, µs %v, RSS %v", res.NodeCPUCores, res.NodeUSPerForwardedPacket, res.NodeRSSMB)
	}
}

func TestBenchRejectsBadConfig(t *testing.T) {
	// A bad configuration is refused before anything reaches the server.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("server contacted: %s %s", r.Method, r.URL)
		http.Error(w, "no", http.StatusTeapot)
	}))
	defer srv.Close()
	for _, tc := range []struct {
		cfg  bench.Config
		want string
	}{
		{bench.Config{Publishers: 0, Duration: time.Second}, "0 publishers"},
		{bench.Config{Publishers: 1, Subscribers: -1, Duration: time.Second}, "-1 subscribers"},
		{bench.Config{Publishers: 1}, "duration 0s"},
		{bench.Config{Publishers: 1, Duration: time.Second, Meeting: "m"}, "join secret"},
		{bench.Config{Publishers: 1, Duration: time.Second, Meeting: "m", Secret: "s"}, "host key fingerprint"},
		{bench.Config{Publishers: 1, Duration: time.Second, Synthetic: &bot.Synthetic{FrameBytes: 10, FPS: 30}}, "video frame bytes 10"},
		{bench.Config{Publishers: 1, Duration: time.Second, Synthetic: &bot.Synthetic{FrameBytes: 6250}}, "fps 0"},
		{bench.Config{Publishers: 1, Duration: time.Second, NodePID: -1}, "node pid -1"},
		{bench.Config{Publishers: 1, Duration: time.Second, NoAudio: true, NoVideo: true}, "send nothing"},
	} {
		tc.cfg.Server = srv.URL
		if _, err := bench.Run(context.Background(), tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one about %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := bench.Run(context.Background(), bench.Config{Server: "http://127.0.0.1:1", Publishers: 1, Duration: time.Second}); err == nil {
		t.Fatal("unreachable server accepted")
	}
}

func TestRampMeasuresWhatACoreCarries(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	rr, err := bench.Ramp(context.Background(), bench.Config{
		Server: c.URL, Publishers: 1, Duration: 700 * time.Millisecond, Country: "DE", LoopbackOnly: true,
		Linger: 300 * time.Millisecond, Warmup: 1500 * time.Millisecond,
		Synthetic: &bot.Synthetic{FrameBytes: 2000, FPS: 30}, NoAudio: true, NoE2EE: true,
	}, []int{1, 3}, 0.97)
	if err != nil {
		t.Fatal(err)
	}
	if len(rr.Steps) != 2 || rr.MinDelivery != 0.97 {
		t.Fatalf("%d steps, min delivery %v", len(rr.Steps), rr.MinDelivery)
	}
	for i, st := range rr.Steps {
		if st.StreamsOut != []int{1, 3}[i] || !st.Delivered || st.Result.Subscribers != st.Subscribers {
			t.Errorf("step %d: %+v", i, st)
		}
		if st.Result.NodeCPUCores == nil || st.StreamsPerCore != float64(st.StreamsOut) / *st.Result.NodeCPUCores {
			t.Errorf("step %d: %v streams per core from %v cores", i, st.StreamsPerCore, st.Result.NodeCPUCores)
		}
	}
	// Read off the most loaded step that delivered.
	if rr.AtSubscribers != 3 || rr.StreamsPerCore != rr.Steps[1].StreamsPerCore || rr.StreamsPerCore <= 0 {
		t.Errorf("capacity %v streams per core at %d subscribers", rr.StreamsPerCore, rr.AtSubscribers)
	}
	for _, tc := range []struct {
		steps []int
		cfg   bench.Config
		want  string
	}{
		{nil, bench.Config{}, "at least one"},
		{[]int{5, 5}, bench.Config{}, "must rise"},
		{[]int{1}, bench.Config{Meeting: "m"}, "a meeting per step"},
	} {
		if _, err := bench.Ramp(context.Background(), tc.cfg, tc.steps, 0); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ramp %v: error %v, want one about %q", tc.steps, err, tc.want)
		}
	}
}
