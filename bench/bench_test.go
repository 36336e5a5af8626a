package bench_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/bench"
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
