package bot_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/signal"
	"github.com/oakmeet/oakmeet/testcluster"
)

// A bot with Screen publishes a third track, declared as a screen: the
// other bot decrypts its frames as screen frames, apart from the camera's.
func TestBotSharesAScreen(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	m := c.CreateMeeting(policy.Policy{})

	var screens, cameras atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sharerID atomic.Value
	var reports [2]*bot.Report
	var errs [2]error
	for i, screen := range []bool{true, false} {
		cfg := bot.Config{
			Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: fingerprint(c, m.ID),
			Name: "bot", Linger: linger, LoopbackOnly: true, Screen: screen,
		}
		if screen {
			cfg.Ready = func(id string) { sharerID.Store(id) }
		} else {
			cfg.OnFrame = func(from, source string) {
				if id, _ := sharerID.Load().(string); from != id {
					return
				}
				switch source {
				case signal.SourceScreen:
					screens.Add(1)
				case signal.SourceCamera:
					cameras.Add(1)
				}
			}
		}
		wg.Go(func() { reports[i], errs[i] = bot.Run(ctx, cfg) })
	}
	testcluster.WaitFor(t, 30*time.Second, "30 screen and 30 camera frames decrypted", func() bool {
		return screens.Load() >= 30 && cameras.Load() >= 30
	})
	cancel()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("bot %d: %v", i, err)
		}
	}
	if reports[0].Sent.ScreenFrames < 30 {
		t.Errorf("sharer sent %+v", reports[0].Sent)
	}
	rx := reports[1]
	if rx.FramesBySource[signal.SourceScreen] < 30 || rx.FramesBySource[signal.SourceCamera] < 30 || rx.FramesBySource[signal.SourceMicrophone] == 0 {
		t.Errorf("frames by source %v", rx.FramesBySource)
	}
	var screenTracks int
	for _, tr := range rx.Tracks {
		if tr.Source == signal.SourceScreen {
			screenTracks++
			if tr.Kind != signal.KindVideo || tr.DecryptFailures != 0 || tr.ParticipantID != reports[0].ParticipantID {
				t.Errorf("screen track %+v", tr)
			}
		}
	}
	if screenTracks != 1 {
		t.Errorf("%d screen tracks received: %+v", screenTracks, rx.Tracks)
	}
	// The sharer's own camera-only peer sent no screen.
	if n := reports[0].FramesBySource[signal.SourceScreen]; n != 0 {
		t.Errorf("sharer decrypted %d screen frames, nobody else shares", n)
	}
}
