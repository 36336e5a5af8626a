// Package bench drives a load against an oakmeet deployment: P publishers
// sending the test clips and S receive-only subscribers in one meeting, all
// real WebRTC clients, and summarises what was delivered, lost and how
// late, with the server's CPU time where it runs on this machine.
package bench

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/hoststmt"
)

// Config describes a run.
type Config struct {
	Server string
	// Meeting and Secret name a meeting to load; an empty Meeting creates
	// one without restrictions (and uses its join secret).
	Meeting string
	Secret  string
	// HostFingerprint is the meeting's host-key fingerprint (the link's
	// #h=…): every client checks its node against the host-signed policy
	// and refuses to connect without one.
	HostFingerprint string
	Publishers      int
	Subscribers     int
	Duration        time.Duration
	Country         string // location hint for every client
	LoopbackOnly    bool
	HTTPClient      *http.Client
	Logger          *slog.Logger
	// Progress, if set, receives a line now and then.
	Progress func(string)
	// Warmup is the time from the last join to the measured window, in
	// which the burst of joins is keyed and every subscriber negotiates
	// the tracks; zero means DefaultWarmup.
	Warmup time.Duration
	// Linger is how long publishers go on after the window ends, and
	// clients keep receiving after that, so frames sent in the window and
	// still in flight are counted; zero means DefaultLinger.
	Linger time.Duration
	// JoinConcurrency bounds how many clients are between their join and
	// their first connected session at once; zero means
	// DefaultJoinConcurrency. One process setting up hundreds of DTLS and
	// ICE handshakes at the same instant starves itself of CPU and its
	// clients time out, which measures the load generator rather than the
	// system; people joining "at once" still arrive over a second or two.
	JoinConcurrency int
	// Synthetic, if set, has publishers send synthetic VP8 frames of this
	// shape (bot.Synthetic) instead of the test clip; NoAudio sends no
	// audio; NoE2EE sends and reads frames without SFrame. A node forwards
	// opaque payloads either way: these shape the load other SFUs are
	// measured with, and take the clients' own cost out of the machine
	// they share with the node.
	Synthetic *bot.Synthetic
	NoAudio   bool
	NoVideo   bool
	NoE2EE    bool
	// NodePID is the media node's process, whose CPU time and memory are
	// measured over the window; zero finds it by the port of the node the
	// first publisher joined, when that is on this machine.
	NodePID int
}

// DefaultJoinConcurrency is Config.JoinConcurrency's default.
const DefaultJoinConcurrency = 16

// Result is a run's summary. Field names are part of `oakmeet bench --json`.
type Result struct {
	Meeting     string  `json:"meeting"`
	Publishers  int     `json:"publishers"`
	Subscribers int     `json:"subscribers"`
	DurationS   float64 `json:"duration_s"`
	Joined      int     `json:"joined"`
	// BurstS is how long the subscribers' burst of joins took, from the
	// first join asked to the last one connected.
	BurstS float64 `json:"burst_s"`
	// FramesSent counts frames sent from Warmup after the last join on;
	// DeliveryRatio is FramesDelivered over FramesExpected of those.
	FramesSent      int64   `json:"frames_sent"`
	FramesExpected  int64   `json:"frames_expected"`
	FramesDelivered int64   `json:"frames_delivered"`
	DeliveryRatio   float64 `json:"delivery_ratio"`
	// NoKey and DecryptFailures count frames that arrived in the window
	// and could not be decrypted: under a key the receiver did not hold,
	// or failing authentication.
	NoKey           int64       `json:"no_key"`
	DecryptFailures int64       `json:"decrypt_failures"`
	PacketsReceived int64       `json:"packets_received"`
	PacketsLost     int64       `json:"packets_lost"`
	LossRatio       float64     `json:"loss_ratio"`
	VideoLatencyMs  bot.Latency `json:"video_latency_ms"`
	AudioLatencyMs  bot.Latency `json:"audio_latency_ms"`
	// FirstFrameMs is, over the subscribers, the time from a join (the
	// client connected to its node) to its first decrypted frame;
	// NoFirstFrame counts subscribers that decrypted none.
	FirstFrameMs    bot.Latency `json:"first_frame_ms"`
	FirstFrameMaxMs float64     `json:"first_frame_max_ms"`
	NoFirstFrame    int         `json:"no_first_frame"`
	// Epochs is how many sending epochs the first publisher went through
	// from its join to the end (re-keys + 1), EpochsSinceBurst how many of
	// them it began sending under once the subscribers started joining.
	Epochs           int `json:"epochs"`
	EpochsSinceBurst int `json:"epochs_since_burst"`
	// LeaderAwaitingAcks is how many members had not acknowledged the
	// first publisher's newest epoch when it left (when it led), and
	// LeaderNewest and LeaderEpoch that epoch and the one it sent under.
	LeaderAwaitingAcks int      `json:"leader_awaiting_acks"`
	LeaderNewest       uint64   `json:"leader_newest_epoch"`
	LeaderEpoch        uint64   `json:"leader_sending_epoch"`
	EgressMbps         float64  `json:"egress_mbps"`
	ServerCPUS         *float64 `json:"server_cpu_s,omitempty"`
	// E2EE, Audio, VideoFrameBytes and FPS say what was sent: the test
	// clips (VideoFrameBytes 0) or synthetic frames of that size and rate.
	E2EE            bool `json:"e2ee"`
	Audio           bool `json:"audio"`
	Video           bool `json:"video"`
	VideoFrameBytes int  `json:"video_frame_bytes,omitempty"`
	FPS             int  `json:"fps,omitempty"`
	// PacketsSent counts the RTP packets of the frames in FramesSent;
	// PacketsDelivered the packets of the frames in FramesDelivered, and
	// PacketDeliveryRatio the one over (joined − 1) × PacketsSent.
	PacketsSent         int64   `json:"packets_sent"`
	PacketsDelivered    int64   `json:"packets_delivered"`
	PacketDeliveryRatio float64 `json:"packet_delivery_ratio"`
	// ForwardedPacketsPerS is PacketsDelivered per second of the window:
	// what the node forwarded to everyone together.
	ForwardedPacketsPerS float64 `json:"forwarded_packets_per_s"`
	// The media node's process over the window, when it was found: its
	// CPU time, in cores and per forwarded packet, and its resident memory
	// at the end. NodeID is the node the first publisher joined, Nodes how
	// many nodes the clients were placed on (the node figures are one
	// node's only when it is 1).
	NodeID                   string   `json:"node_id,omitempty"`
	Nodes                    int      `json:"nodes"`
	NodePID                  int      `json:"node_pid,omitempty"`
	NodeCPUS                 *float64 `json:"node_cpu_s,omitempty"`
	NodeCPUCores             *float64 `json:"node_cpu_cores,omitempty"`
	NodeUSPerForwardedPacket *float64 `json:"node_us_per_forwarded_packet,omitempty"`
	NodeRSSMB                *float64 `json:"node_rss_mb,omitempty"`
	// NodeInServer: the node runs in the control plane's process (the
	// demo), so its figures include the control plane's work.
	NodeInServer bool     `json:"node_in_server,omitempty"`
	Errors       []string `json:"errors,omitempty"`
}

// Defaults of Config's durations.
const (
	DefaultWarmup = 5 * time.Second
	DefaultLinger = time.Second
)

// Run performs the load and returns its summary: the publishers join and
// publish, then the subscribers join at once, in a burst; frames sent from
// Warmup after the last join on are measured for Duration.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	switch {
	case cfg.Publishers < 1:
		return nil, fmt.Errorf("%d publishers: need at least one", cfg.Publishers)
	case cfg.Subscribers < 0:
		return nil, fmt.Errorf("%d subscribers: cannot be negative", cfg.Subscribers)
	case cfg.Duration <= 0:
		return nil, fmt.Errorf("duration %s: must be positive", cfg.Duration)
	case cfg.Meeting != "" && cfg.Secret == "":
		return nil, fmt.Errorf("meeting %s: its join secret is needed too", cfg.Meeting)
	case cfg.NoAudio && cfg.NoVideo:
		return nil, fmt.Errorf("no audio and no video: the publishers would send nothing")
	case cfg.NodePID < 0:
		return nil, fmt.Errorf("node pid %d: cannot be negative", cfg.NodePID)
	case cfg.Meeting != "" && cfg.HostFingerprint == "":
		return nil, fmt.Errorf("meeting %s: its host key fingerprint (the link's #h=) is needed too: clients check their nodes against the host-signed policy", cfg.Meeting)
	}
	if cfg.Synthetic != nil {
		if err := cfg.Synthetic.Validate(); err != nil {
			return nil, err
		}
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
		id, secret, fingerprint, err := createHostedMeeting(ctx, cfg.HTTPClient, cfg.Server)
		if err != nil {
			return nil, err
		}
		cfg.Meeting, cfg.Secret, cfg.HostFingerprint = id, secret, fingerprint
	}
	cpu := serverCPU(cfg.Server)

	total := cfg.Publishers + cfg.Subscribers
	reports := make([]*bot.Report, total)
	errs := make([]error, total)
	measureFrom, measureUntil := new(atomic.Int64), new(atomic.Int64)
	measureFrom.Store(math.MaxInt64) // nothing counts until the burst is over
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	// join starts clients [from, to) and returns once each has joined or
	// failed to.
	if cfg.JoinConcurrency <= 0 {
		cfg.JoinConcurrency = DefaultJoinConcurrency
	}
	setup := make(chan struct{}, cfg.JoinConcurrency)
	var nodesMu sync.Mutex
	nodes := map[string]api.JoinNode{}
	var firstNode api.JoinNode
	onNode := func(n api.JoinNode) {
		nodesMu.Lock()
		defer nodesMu.Unlock()
		if len(nodes) == 0 {
			firstNode = n
		}
		nodes[n.ID] = n
	}
	join := func(from, to int) {
		var joined sync.WaitGroup
		joined.Add(to - from)
		for i := from; i < to; i++ {
			setup <- struct{}{}
			wg.Go(func() {
				var once sync.Once
				done := func() { once.Do(func() { joined.Done(); <-setup }) }
				defer done()
				reports[i], errs[i] = bot.Run(runCtx, bot.Config{
					Server: cfg.Server, Meeting: cfg.Meeting, Secret: cfg.Secret, HostFingerprint: cfg.HostFingerprint,
					Name:    fmt.Sprintf("bench-%d", i),
					Country: cfg.Country, NoPublish: i >= cfg.Publishers, LoopbackOnly: cfg.LoopbackOnly,
					Synthetic: cfg.Synthetic, NoAudio: cfg.NoAudio, NoVideo: cfg.NoVideo, NoE2EE: cfg.NoE2EE,
					Linger: cfg.Linger, MeasureFrom: measureFrom, MeasureUntil: measureUntil,
					HTTPClient: cfg.HTTPClient, Logger: cfg.Logger,
					OnNode: onNode, Ready: func(string) { done() },
				})
			})
		}
		joined.Wait()
	}
	join(0, cfg.Publishers)
	nodesMu.Lock()
	node := firstNode
	nodesMu.Unlock()
	nodePID := cfg.NodePID
	if nodePID == 0 && node.URL != "" {
		if pid, ok := urlPID(node.URL); ok {
			nodePID = pid
			progress(fmt.Sprintf("media node %s is process %d on this machine: its CPU time and memory are measured", node.ID, pid))
		}
	}
	nodeCPU := func() (time.Duration, bool) { return 0, false }
	if nodePID > 0 {
		nodeCPU = func() (time.Duration, bool) { return processCPU(nodePID) }
	}
	progress(fmt.Sprintf("%d publishers joined meeting %s; %d subscribers join now", cfg.Publishers, cfg.Meeting, cfg.Subscribers))
	burst := time.Now()
	join(cfg.Publishers, total)
	lastJoin := time.Now()
	progress(fmt.Sprintf("%d clients joined in %.1f s; settling for %s, then measuring for %s", total, lastJoin.Sub(burst).Seconds(), cfg.Warmup, cfg.Duration))
	began := lastJoin.Add(cfg.Warmup)
	until := began.Add(cfg.Duration)
	measureUntil.Store(until.UnixNano())
	measureFrom.Store(began.UnixNano())
	select {
	case <-time.After(time.Until(began)):
	case <-ctx.Done():
	}
	cpuStart, cpuOK := cpu()
	nodeStart, nodeOK := nodeCPU()
	select {
	case <-time.After(time.Until(until)):
	case <-ctx.Done():
	}
	cpuEnd, cpuEndOK := cpu()
	nodeEnd, nodeEndOK := nodeCPU()
	elapsed := time.Since(began)
	rss, rssOK := processRSS(nodePID)
	select {
	case <-time.After(cfg.Linger):
	case <-ctx.Done():
	}
	cancel()
	wg.Wait()

	res := &Result{Meeting: cfg.Meeting, Publishers: cfg.Publishers, Subscribers: cfg.Subscribers, DurationS: elapsed.Seconds(),
		BurstS: lastJoin.Sub(burst).Seconds()}
	if cpuEndOK && cpuOK {
		s := (cpuEnd - cpuStart).Seconds()
		res.ServerCPUS = &s
	}
	summarise(res, reports, errs, elapsed)
	res.E2EE, res.Audio, res.Video = !cfg.NoE2EE, !cfg.NoAudio, !cfg.NoVideo
	if cfg.Synthetic != nil {
		res.VideoFrameBytes, res.FPS = cfg.Synthetic.FrameBytes, cfg.Synthetic.FPS
	}
	nodesMu.Lock()
	res.NodeID, res.Nodes = node.ID, len(nodes)
	nodesMu.Unlock()
	if nodePID > 0 {
		res.NodePID = nodePID
		serverPID, ok := urlPID(cfg.Server)
		res.NodeInServer = ok && serverPID == nodePID
	}
	if nodeOK && nodeEndOK {
		nodeFigures(res, nodeEnd-nodeStart, elapsed)
	}
	if rssOK {
		res.NodeRSSMB = &rss
	}
	firstFrames(res, reports[cfg.Publishers:])
	epochs(res, reports[0], burst)
	return res, nil
}

// nodeFigures sets the node's CPU figures from its CPU time over the
// window.
func nodeFigures(res *Result, cpu, window time.Duration) {
	s := cpu.Seconds()
	cores := s / window.Seconds()
	res.NodeCPUS, res.NodeCPUCores = &s, &cores
	if res.PacketsDelivered > 0 {
		us := s * 1e6 / float64(res.PacketsDelivered)
		res.NodeUSPerForwardedPacket = &us
	}
}

// firstFrames summarises the time from each subscriber's join to its
// first decrypted frame.
func firstFrames(res *Result, subs []*bot.Report) {
	var ms []float64
	for _, r := range subs {
		if r == nil {
			continue
		}
		if r.FirstFrameAt == nil {
			res.NoFirstFrame++
			continue
		}
		d := float64(r.FirstFrameAt.Sub(r.JoinedAt).Microseconds()) / 1000
		ms = append(ms, d)
		res.FirstFrameMaxMs = max(res.FirstFrameMaxMs, d)
	}
	res.FirstFrameMs = bot.Summarize(ms)
}

// epochs counts the sending epochs of one client's key history.
func epochs(res *Result, r *bot.Report, burst time.Time) {
	if r == nil {
		return
	}
	seen := map[uint64]bool{}
	for _, k := range r.KeyChanges {
		if !seen[k.Epoch] {
			seen[k.Epoch] = true
			if k.At.After(burst) {
				res.EpochsSinceBurst++
			}
		}
	}
	res.Epochs = len(seen)
	res.LeaderAwaitingAcks, res.LeaderNewest, res.LeaderEpoch = len(r.Keys.AwaitingAcks), r.Keys.Newest, r.Keys.Epoch
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
		res.PacketsSent += r.Sent.VideoPackets + r.Sent.AudioPackets
		for _, t := range r.Tracks {
			res.FramesDelivered += t.Frames
			res.PacketsDelivered += t.FramePackets
			res.NoKey += t.NoKey
			res.DecryptFailures += t.DecryptFailures
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
	if n := res.PacketsSent * int64(max(res.Joined-1, 0)); n > 0 {
		res.PacketDeliveryRatio = float64(res.PacketsDelivered) / float64(n)
	}
	res.ForwardedPacketsPerS = float64(res.PacketsDelivered) / elapsed.Seconds()
	if n := res.PacketsReceived + res.PacketsLost; n > 0 {
		res.LossRatio = float64(res.PacketsLost) / float64(n)
	}
	res.VideoLatencyMs = bot.Summarize(video)
	res.AudioLatencyMs = bot.Summarize(audio)
	res.EgressMbps = float64(bytes) * 8 / elapsed.Seconds() / 1e6
}

// createHostedMeeting creates the bench's meeting with a host key of its
// own and returns the key's fingerprint with it: every client checks its
// node against the meeting's host-signed policy, as a link's #h= lets it.
func createHostedMeeting(ctx context.Context, hc *http.Client, server string) (id, secret, fingerprint string, err error) {
	m, h, err := apiclient.New(server, hc).CreateHosted(ctx, api.CreateRequest{Title: "bench"})
	if err != nil {
		return "", "", "", fmt.Errorf("create meeting: %w", err)
	}
	return m.ID, m.JoinSecret, hoststmt.Fingerprint(h.Key.Public().(ed25519.PublicKey)), nil
}
