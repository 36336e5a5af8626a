// Package bench drives a load against an oakmeet deployment: P publishers
// sending the test clips and S receive-only subscribers in one meeting, all
// real WebRTC clients, and summarises what was delivered, lost and how
// late, with the server's CPU time where it runs on this machine.
package bench

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oakmeet/oakmeet/bot"
)

// Config describes a run.
type Config struct {
	Server       string
	Meeting      string // empty: create a meeting without restrictions
	Publishers   int
	Subscribers  int
	Duration     time.Duration
	Country      string // location hint for every client
	LoopbackOnly bool
	HTTPClient   *http.Client
	Logger       *slog.Logger
	// Progress, if set, receives a line now and then.
	Progress func(string)
	// Warmup is the time between publishers starting and the measured
	// window, in which every subscriber negotiates the new tracks; zero
	// means DefaultWarmup.
	Warmup time.Duration
	// Linger is how long clients keep receiving after the window ends, so
	// frames in flight are counted; zero means DefaultLinger.
	Linger time.Duration
}

// Result is a run's summary. Field names are part of `oakmeet bench --json`.
type Result struct {
	Meeting         string      `json:"meeting"`
	Publishers      int         `json:"publishers"`
	Subscribers     int         `json:"subscribers"`
	DurationS       float64     `json:"duration_s"`
	Joined          int         `json:"joined"`
	FramesSent      int64       `json:"frames_sent"`
	FramesExpected  int64       `json:"frames_expected"`
	FramesDelivered int64       `json:"frames_delivered"`
	DeliveryRatio   float64     `json:"delivery_ratio"`
	PacketsReceived int64       `json:"packets_received"`
	PacketsLost     int64       `json:"packets_lost"`
	LossRatio       float64     `json:"loss_ratio"`
	VideoLatencyMs  bot.Latency `json:"video_latency_ms"`
	AudioLatencyMs  bot.Latency `json:"audio_latency_ms"`
	EgressMbps      float64     `json:"egress_mbps"`
	ServerCPUS      *float64    `json:"server_cpu_s,omitempty"`
	Errors          []string    `json:"errors,omitempty"`
}

// Defaults of Config's durations.
const (
	DefaultWarmup = 2 * time.Second
	DefaultLinger = time.Second
)

// Run performs the load and returns its summary.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	switch {
	case cfg.Publishers < 1:
		return nil, fmt.Errorf("%d publishers: need at least one", cfg.Publishers)
	case cfg.Subscribers < 0:
		return nil, fmt.Errorf("%d subscribers: cannot be negative", cfg.Subscribers)
	case cfg.Duration <= 0:
		return nil, fmt.Errorf("duration %s: must be positive", cfg.Duration)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Warmup <= 0 {
		cfg.Warmup = DefaultWarmup
	}
	if cfg.Linger <= 0 {
		cfg.Linger = DefaultLinger
	}
	progress := cfg.Progress
	if progress == nil {
		progress = func(string) {}
	}
	if cfg.Meeting == "" {
		id, err := createMeeting(ctx, cfg.HTTPClient, cfg.Server)
		if err != nil {
			return nil, err
		}
		cfg.Meeting = id
	}
	cpu := serverCPU(cfg.Server)
	var cpuStart time.Duration
	var cpuOK bool

	total := cfg.Publishers + cfg.Subscribers
	reports := make([]*bot.Report, total)
	errs := make([]error, total)
	// Everyone joins first; the measured window starts when all are in.
	var joined sync.WaitGroup
	joined.Add(total)
	start := make(chan struct{})
	measureFrom := new(atomic.Int64)
	measureFrom.Store(math.MaxInt64) // nothing counts until everyone is in
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i := range total {
		wg.Go(func() {
			var once sync.Once
			done := func() { once.Do(joined.Done) }
			defer done()
			reports[i], errs[i] = bot.Run(runCtx, bot.Config{
				Server: cfg.Server, Meeting: cfg.Meeting, Name: fmt.Sprintf("bench-%d", i),
				Country: cfg.Country, NoPublish: i >= cfg.Publishers, LoopbackOnly: cfg.LoopbackOnly,
				Linger: cfg.Linger, MeasureFrom: measureFrom,
				HTTPClient: cfg.HTTPClient, Logger: cfg.Logger,
				Ready: func(string) {
					done()
					<-start
				},
			})
		})
	}
	joined.Wait()
	progress(fmt.Sprintf("%d clients joined meeting %s; warming up for %s, then measuring for %s", total, cfg.Meeting, cfg.Warmup, cfg.Duration))
	// Publishing starts now; negotiation of the new tracks with every
	// subscriber takes a moment, which the warm-up keeps out of the result.
	began := time.Now().Add(cfg.Warmup)
	measureFrom.Store(began.UnixNano())
	close(start)
	select {
	case <-time.After(cfg.Warmup):
	case <-ctx.Done():
	}
	cpuStart, cpuOK = cpu()
	select {
	case <-time.After(cfg.Duration):
	case <-ctx.Done():
	}
	cancel()
	elapsed := time.Since(began)
	wg.Wait()

	res := &Result{Meeting: cfg.Meeting, Publishers: cfg.Publishers, Subscribers: cfg.Subscribers, DurationS: elapsed.Seconds()}
	if cpuEnd, ok := cpu(); ok && cpuOK {
		s := (cpuEnd - cpuStart).Seconds()
		res.ServerCPUS = &s
	}
	summarise(res, reports, errs, elapsed)
	return res, nil
}

func summarise(res *Result, reports []*bot.Report, errs []error, elapsed time.Duration) {
	var video, audio []float64
	var bytes int64
	for i, r := range reports {
		if errs[i] != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("client %d: %v", i, errs[i]))
		}
		if r == nil {
			continue
		}
		res.Joined++
		res.FramesSent += r.Sent.VideoFrames + r.Sent.AudioFrames
		for _, t := range r.Tracks {
			res.FramesDelivered += t.Frames
			res.PacketsReceived += t.Packets
			res.PacketsLost += t.Lost
			bytes += t.Bytes
			if t.Kind == "video" {
				video = append(video, t.Latencies()...)
			} else {
				audio = append(audio, t.Latencies()...)
			}
		}
	}
	res.FramesExpected = res.FramesSent * int64(max(res.Joined-1, 0))
	if res.FramesExpected > 0 {
		res.DeliveryRatio = float64(res.FramesDelivered) / float64(res.FramesExpected)
	}
	if n := res.PacketsReceived + res.PacketsLost; n > 0 {
		res.LossRatio = float64(res.PacketsLost) / float64(n)
	}
	res.VideoLatencyMs = bot.Summarize(video)
	res.AudioLatencyMs = bot.Summarize(audio)
	res.EgressMbps = float64(bytes) * 8 / elapsed.Seconds() / 1e6
}
