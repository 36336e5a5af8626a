package bot_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// Three bots in one meeting, in three countries on one node each side of
// the world, all receive each other's audio and video.
func TestThreeBotsExchangeMedia(t *testing.T) {
	eg := newEgress()
	spec := testcluster.World()[:1]
	spec[0].Interceptors = []interceptor.Factory{eg}
	c := testcluster.Start(t, policy.Policy{}, spec)
	m := c.CreateMeeting(policy.Policy{})

	var ready sync.WaitGroup
	ready.Add(3)
	reports := make([]*bot.Report, 3)
	errs := make([]error, 3)
	keys := make([]*keyWatch, 3)
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i, country := range []string{"DE", "FR", "PL"} {
		keys[i] = new(keyWatch)
		wg.Go(func() {
			reports[i], errs[i] = bot.Run(ctx, bot.Config{
				Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: fingerprint(c, m.ID), Name: "bot-" + country, Country: country,
				Linger: linger, LoopbackOnly: true, Logger: slog.New(keys[i]),
				Ready: func(string) { ready.Done() },
			})
		})
	}
	ready.Wait()
	var rv api.Routing
	c.Get("/api/meetings/"+m.ID+"/routing", &rv)
	if len(rv.Participants) != 3 {
		t.Errorf("routing shows %d participants while three bots run", len(rv.Participants))
	}
	// Frames sent before all three share an epoch may not decrypt
	// everywhere; count from then on. The wait is bounded and the result
	// not judged here: the assertions below are.
	waitUpTo(10*time.Second, func() bool { return oneEpoch(keys) })
	base := eg.snapshot()
	testcluster.WaitFor(t, 30*time.Second, fmt.Sprintf("%d frames on each of the twelve tracks the node sends", sentFrames), func() bool {
		return eg.streamsWith(base, sentFrames) >= 12
	})
	// All three are still in: the codes they hold now must agree.
	allIn := time.Now()
	cancel()
	wg.Wait()

	for i, r := range reports {
		if errs[i] != nil {
			t.Fatalf("bot %d: %v", i, errs[i])
		}
		got := map[string]bot.TrackReport{}
		for _, tr := range r.Tracks {
			got[tr.ParticipantID+"/"+tr.Kind] = tr
		}
		for j, other := range reports {
			if j == i {
				continue
			}
			for _, kind := range []string{"audio", "video"} {
				tr, ok := got[other.ParticipantID+"/"+kind]
				if !ok {
					t.Fatalf("bot %d got no %s from bot %d: %+v", i, kind, j, r.Tracks)
				}
				if tr.Frames < 30 || tr.Packets < tr.Frames {
					t.Errorf("bot %d: %s from bot %d: %d frames, %d packets", i, kind, j, tr.Frames, tr.Packets)
				}
				if float64(tr.Lost) > 0.01*float64(tr.Packets) {
					t.Errorf("bot %d: %s from bot %d: lost %d of %d", i, kind, j, tr.Lost, tr.Packets)
				}
				if tr.LatencyMs.P50 <= 0 || tr.LatencyMs.P95 < tr.LatencyMs.P50 || tr.LatencyMs.P95 > 5000 { // measured, not judged: a loaded machine is slow
					t.Errorf("bot %d: %s from bot %d: latency %+v", i, kind, j, tr.LatencyMs)
				}
			}
		}
		// Compare the codes while all three were in (at the end, the first
		// to leave makes the others re-key before they leave too).
		mine, first := stateAt(r.KeyChanges, allIn), stateAt(reports[0].KeyChanges, allIn)
		if mine.SecurityCode == "" || mine.SecurityCode != first.SecurityCode || mine.Epoch == 0 {
			t.Errorf("bot %d: security code %+v; bot 0 had %+v", i, mine, first)
		}
		for _, tr := range r.Tracks {
			if tr.DecryptFailures != 0 {
				t.Errorf("bot %d: %d decrypt failures on %s from %s", i, tr.DecryptFailures, tr.Kind, tr.ParticipantID)
			}
		}
		if len(r.Tracks) != 4 {
			t.Errorf("bot %d received %d tracks, want 4: %+v", i, len(r.Tracks), r.Tracks)
		}
		// Each bot checked its own node's certificate, and every other
		// member's node from their signed node messages.
		if nc := r.NodeCert; nc == nil || nc.Node != "de-fra" || nc.Country != "DE" || nc.Region != "eu-central-1" || len(nc.Serial) != 32 || !nc.NotAfter.After(time.Now()) {
			t.Errorf("bot %d: node cert %+v", i, r.NodeCert)
		}
		if len(r.Refusals) != 0 {
			t.Errorf("bot %d refused %+v", i, r.Refusals)
		}
		if len(r.People) != 3 {
			t.Errorf("bot %d: people %+v", i, r.People)
		}
		for _, p := range r.People {
			if p.Node.Status != client.NodeVerified || p.Node.ID != "de-fra" || p.Node.Country != "DE" || len(p.Flags) != 0 {
				t.Errorf("bot %d: %s's node %+v, flags %q", i, p.ParticipantID, p.Node, p.Flags)
			}
		}
		// The node forwarded sentFrames of each of its tracks.
		if r.Sent.VideoFrames < sentFrames || r.Sent.AudioFrames < sentFrames {
			t.Errorf("bot %d sent %+v", i, r.Sent)
		}
	}
	// After they leave, the routing view empties.
	testcluster.WaitFor(t, 5*time.Second, "participants gone", func() bool {
		var rv api.Routing
		c.Get("/api/meetings/"+m.ID+"/routing", &rv)
		return len(rv.Participants) == 0
	})
}

// fingerprint is the host key fingerprint the meeting's link names.
func fingerprint(c *testcluster.Cluster, meeting string) string {
	return hoststmt.Fingerprint(c.Host(meeting).Key.Public().(ed25519.PublicKey))
}

func TestRefusedJoinIsTyped(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	m := c.CreateMeeting(policy.Policy{BlockedCountries: []string{"DE"}})
	_, err := bot.Run(context.Background(), bot.Config{Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: fingerprint(c, m.ID),
		Duration: time.Second, LoopbackOnly: true})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 503 || ae.Code != "no_node_in_allowed_regions" {
		t.Fatalf("got %v", err)
	}
}

// When a participant leaves, the others re-key to a new epoch and a new
// code that they share, and that differs from the code with it present.
func TestLeaveRekeysToNewEqualCode(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	m := c.CreateMeeting(policy.Policy{})
	var wg sync.WaitGroup
	defer wg.Wait() // after the deferred stops below
	reports := make([]*bot.Report, 3)
	errs := make([]error, 3)
	keys := make([]*keyWatch, 3)
	stop := make([]context.CancelFunc, 3)
	var leftAt time.Time
	left := make(chan struct{})
	for i := range 3 {
		in := make(chan struct{})
		keys[i] = new(keyWatch)
		var ctx context.Context
		ctx, stop[i] = context.WithCancel(context.Background())
		defer stop[i]()
		wg.Go(func() {
			reports[i], errs[i] = bot.Run(ctx, bot.Config{
				Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: fingerprint(c, m.ID), Country: "DE", LoopbackOnly: true, Logger: slog.New(keys[i]),
				Ready: func(string) { close(in) },
			})
			if i == 2 {
				leftAt = time.Now()
				close(left)
			}
		})
		<-in // join one after another, so the order (and the leader) is fixed
	}
	// The third stays until it holds the three-member epoch: bot 0 leads,
	// so that is when both others have handled the same epoch from it.
	// Bounded, and not judged here: the assertions below are.
	waitUpTo(10*time.Second, func() bool { return sameEpoch(keys[1:]) })
	leaving := time.Now()
	stop[2]()
	select {
	case <-left:
	case <-time.After(30 * time.Second):
		t.Fatal("the third bot did not leave")
	}
	if errs[2] != nil {
		t.Fatalf("bot 2: %v", errs[2])
	}
	leaver := reports[2]
	// The others stay until bot 1 holds a newer epoch from bot 0.
	waitUpTo(10*time.Second, func() bool { return keys[1].epoch.Load() > leaver.Epoch })
	stop[0]()
	stop[1]()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("bot %d: %v", i, err)
		}
	}
	a, b := reports[0], reports[1]
	// The first moment both remaining bots held an epoch after the leaver's:
	// at most two seconds after the leave, and both still in.
	at, ok := rekeyedAt(a.KeyChanges, leaver.Epoch)
	atB, okB := rekeyedAt(b.KeyChanges, leaver.Epoch)
	if !ok || !okB {
		t.Fatalf("no re-key after leave: %+v and %+v, leaver had %q epoch %d", a.KeyChanges, b.KeyChanges, leaver.SecurityCode, leaver.Epoch)
	}
	if atB.After(at) {
		at = atB
	}
	if d := at.Sub(leftAt); d > 2*time.Second {
		t.Fatalf("the remaining bots re-keyed %v after the leave", d)
	}
	sa, sb := stateAt(a.KeyChanges, at), stateAt(b.KeyChanges, at)
	if sa.SecurityCode == "" || sa.SecurityCode != sb.SecurityCode || sa.Epoch != sb.Epoch {
		t.Fatalf("remaining bots disagree after the leave: %+v vs %+v", sa, sb)
	}
	if sa.SecurityCode == leaver.SecurityCode || sa.Epoch <= leaver.Epoch {
		t.Fatalf("no re-key after leave: %+v, leaver had %q epoch %d", sa, leaver.SecurityCode, leaver.Epoch)
	}
	if leaver.SecurityCode != stateAt(a.KeyChanges, leaving).SecurityCode {
		t.Fatalf("leaver's code %q was not the three-member code", leaver.SecurityCode)
	}
}

// rekeyedAt is when a history first reached an epoch after epoch.
func rekeyedAt(h []bot.KeyChange, epoch uint64) (time.Time, bool) {
	for _, c := range h {
		if c.Epoch > epoch {
			return c.At, true
		}
	}
	return time.Time{}, false
}

func stateAt(h []bot.KeyChange, at time.Time) bot.KeyChange {
	var s bot.KeyChange
	for _, c := range h {
		if c.At.After(at) {
			break
		}
		s = c
	}
	return s
}

const (
	// sentFrames is how many frames of each track the node must have
	// forwarded to each bot once they share an epoch; 30 must arrive and
	// decrypt, the rest allow for frames on their way when counting starts.
	sentFrames = 40
	// linger is how long a bot still receives after it stops publishing,
	// for the frames on their way.
	linger = 500 * time.Millisecond
)

// waitUpTo polls cond until it holds or d passes, and reports which.
func waitUpTo(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
	return true
}

// keyWatch is a bot's log handler that keeps the epoch the bot holds: the
// bot logs every key message it handles with its epoch afterwards.
type keyWatch struct{ epoch atomic.Uint64 }

func (w *keyWatch) Enabled(context.Context, slog.Level) bool { return true }

func (w *keyWatch) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "key message" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "epoch" || a.Value.Kind() != slog.KindUint64 {
			return true
		}
		w.epoch.Store(a.Value.Uint64())
		return false
	})
	return nil
}

func (w *keyWatch) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *keyWatch) WithGroup(string) slog.Handler      { return w }

// sameEpoch reports whether the bots all hold one epoch.
func sameEpoch(ws []*keyWatch) bool {
	e := ws[0].epoch.Load()
	for _, w := range ws[1:] {
		if w.epoch.Load() != e {
			return false
		}
	}
	return e > 0
}

// oneEpoch reports whether every bot holds an epoch and all but at most one
// hold the newest: which bot leads is not known, and the leader does not log
// the epochs it makes itself.
func oneEpoch(ws []*keyWatch) bool {
	var newest uint64
	for _, w := range ws {
		e := w.epoch.Load()
		if e == 0 {
			return false
		}
		newest = max(newest, e)
	}
	behind := 0
	for _, w := range ws {
		if w.epoch.Load() != newest {
			behind++
		}
	}
	return behind <= 1
}

// egress counts the frames a node sends on each of its outgoing media
// streams: the video packets that end a frame, and audio packets.
type egress struct {
	interceptor.NoOp
	mu     sync.Mutex
	frames map[uint32]int // by SSRC
}

func newEgress() *egress { return &egress{frames: map[uint32]int{}} }

func (e *egress) NewInterceptor(string) (interceptor.Interceptor, error) { return e, nil }

func (e *egress) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	audio := strings.HasPrefix(info.MimeType, "audio/")
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if len(payload) > 0 && !h.Padding && (audio || h.Marker) {
			e.mu.Lock()
			e.frames[info.SSRC]++
			e.mu.Unlock()
		}
		return w.Write(h, payload, a)
	})
}

func (e *egress) snapshot() map[uint32]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.frames)
}

// streamsWith is how many streams carried at least n frames since base.
func (e *egress) streamsWith(base map[uint32]int, n int) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := 0
	for ssrc, f := range e.frames {
		if f-base[ssrc] >= n {
			k++
		}
	}
	return k
}
