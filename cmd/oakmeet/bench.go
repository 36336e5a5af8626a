package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/bench"
	"github.com/oakmeet/oakmeet/bot"
)

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var (
		server      = fs.String("server", "http://127.0.0.1:8080", "control plane URL (with --joins-per-second: default an in-process deployment)")
		meeting     = fs.String("meeting", "", "meeting id (default: create one)")
		secret      = fs.String("secret", "", "the join secret of --meeting")
		fingerprint = fs.String("host-fingerprint", "", "the host key's fingerprint of --meeting (the link's #h=…)")
		link        = fs.String("link", "", "the join link of the meeting to load (instead of --meeting and --secret)")
		publishers  = fs.Int("publishers", 1, "clients sending audio and video")
		subscribers = fs.Int("subscribers", 10, "receive-only clients")
		duration    = fs.Duration("duration", 20*time.Second, "measured time, from --settle after the last join")
		settle      = fs.Duration("settle", bench.DefaultWarmup, "time from the last join to the measured window")
		concurrency = fs.Int("join-concurrency", bench.DefaultJoinConcurrency, "clients setting up their connection at once during the burst")
		country     = fs.String("country", "DE", "join every client from this country")
		asJSON      = fs.Bool("json", false, "print the result as one JSON object")
		loopback    = fs.Bool("loopback", true, "media over 127.0.0.1 only (local deployments)")
		_           = fs.String("config", "", "config file of 'flag = value' lines")
		frameBytes  = fs.Int("video-frame-bytes", 0, "publishers send synthetic VP8 frames of this many bytes (random payload, a valid frame tag, a key frame every 60 frames and on request) instead of the test clip (0 = the clip)")
		fps         = fs.Int("fps", 30, "with --video-frame-bytes: frames per second")
		audio       = fs.Bool("audio", true, "publishers send audio")
		video       = fs.Bool("video", true, "publishers send video")
		ramp        = fs.String("ramp", "", "a capacity ramp instead of one run: comma-separated, rising subscriber counts (e.g. 25,50,100), a run each, until one delivers less than 99.9%; reports what one node core carries")
		e2ee        = fs.Bool("e2ee", true, "encrypt frames with SFrame; =false sends and reads them in the clear, for load shapes other SFUs are measured with (the node forwards opaque payloads either way: only the clients' cost changes)")
		nodePID     = fs.Int("node-pid", 0, "the media node's process, whose CPU and memory are measured (0 = found by the port of the node the first publisher joined, when it is on this machine)")

		joinRate     = fs.Float64("joins-per-second", 0, "instead of media: offer this many joins per second, open loop, and measure the control plane's answers")
		joinMeetings = fs.Int("meetings", bench.DefaultJoinMeetings, "with --joins-per-second: meetings the joins are spread over")
		joinConc     = fs.Int("concurrency", bench.DefaultJoinConcurrencyLimit, "with --joins-per-second: joins in flight at most")
		profileDir   = fs.String("profile", "", "with --joins-per-second and no --server: write CPU, mutex and block profiles of the run to this directory")
	)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *joinRate != 0 {
		serverSet := false
		fs.Visit(func(f *flag.Flag) { serverSet = serverSet || f.Name == "server" || f.Name == "link" })
		cfg := bench.JoinConfig{JoinsPerSecond: *joinRate, Duration: *duration, Meetings: *joinMeetings,
			Concurrency: *joinConc, Country: *country, Progress: func(s string) { fmt.Fprintln(stderr, s) }}
		if serverSet && *profileDir != "" {
			return errors.New("--profile profiles the in-process deployment: not with --server or --link")
		}
		if serverSet {
			cfg.Server = *server
			if *link != "" {
				l, err := api.ParseLink(*link)
				if err != nil {
					return err
				}
				cfg.Server = l.Server
			}
		}
		return runJoinBench(ctx, cfg, *asJSON, *profileDir, stdout, stderr)
	}
	if *link != "" {
		l, err := api.ParseLink(*link)
		if err != nil {
			return err
		}
		*server, *meeting, *secret, *fingerprint = l.Server, l.Meeting, l.Secret, l.HostFingerprint
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["fps"] && *frameBytes == 0 {
		return errors.New("--fps sets the rate of --video-frame-bytes's synthetic frames; the test clip keeps its own")
	}
	if set["ramp"] && set["subscribers"] {
		return errors.New("--ramp names the subscriber counts: not with --subscribers")
	}
	var synthetic *bot.Synthetic
	if *frameBytes != 0 {
		synthetic = &bot.Synthetic{FrameBytes: *frameBytes, FPS: *fps}
	}
	cfg := bench.Config{
		Server: *server, Meeting: *meeting, Secret: *secret, HostFingerprint: *fingerprint, Publishers: *publishers, Subscribers: *subscribers,
		Duration: *duration, Warmup: *settle, Country: *country, LoopbackOnly: *loopback, JoinConcurrency: *concurrency,
		Synthetic: synthetic, NoAudio: !*audio, NoVideo: !*video, NoE2EE: !*e2ee, NodePID: *nodePID,
		Progress: func(s string) { fmt.Fprintln(stderr, s) },
	}
	if *ramp != "" {
		steps, err := parseRamp(*ramp)
		if err != nil {
			return err
		}
		rr, err := bench.Ramp(ctx, cfg, steps, 0)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, rr)
		}
		printRamp(stdout, cfg, rr)
		return nil
	}
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, res)
	}
	cpu := "n/a (server not on this machine)"
	if res.ServerCPUS != nil {
		cpu = fmt.Sprintf("%.1f s (%.0f%% of one core)", *res.ServerCPUS, 100**res.ServerCPUS/res.DurationS)
	}
	fmt.Fprintf(stdout, "%d publishers × %d subscribers for %.0f s (meeting %s, %d joined; the subscribers' burst took %.1f s)\n",
		res.Publishers, res.Subscribers, res.DurationS, res.Meeting, res.Joined, res.BurstS)
	media := "the test clips"
	if res.VideoFrameBytes > 0 {
		media = fmt.Sprintf("synthetic VP8, %d-byte frames at %d fps", res.VideoFrameBytes, res.FPS)
	}
	if !res.Audio {
		media += ", no audio"
	}
	if !res.E2EE {
		media += ", not end-to-end encrypted"
	}
	fmt.Fprintf(stdout, "  media             %s\n", media)
	fmt.Fprintf(stdout, "  frames delivered  %d of %d (delivery_ratio %.4f)\n", res.FramesDelivered, res.FramesExpected, res.DeliveryRatio)
	fmt.Fprintf(stdout, "  packets delivered %d of %d (packet_delivery_ratio %.4f), %.0f forwarded per second\n",
		res.PacketsDelivered, res.PacketsSent*int64(max(res.Joined-1, 0)), res.PacketDeliveryRatio, res.ForwardedPacketsPerS)
	fmt.Fprintf(stdout, "  not decrypted     %d under a key not held, %d failing authentication\n", res.NoKey, res.DecryptFailures)
	fmt.Fprintf(stdout, "  join→first frame  p50 %.0f  p95 %.0f  max %.0f ms (%d subscribers decrypted none)\n",
		res.FirstFrameMs.P50, res.FirstFrameMs.P95, res.FirstFrameMaxMs, res.NoFirstFrame)
	fmt.Fprintf(stdout, "  epochs            %d (%d since the burst began); at the end epoch %d sending, %d newest, %d acks awaited\n",
		res.Epochs, res.EpochsSinceBurst, res.LeaderEpoch, res.LeaderNewest, res.LeaderAwaitingAcks)
	fmt.Fprintf(stdout, "  packet loss       %d of %d (%.3f%%)\n", res.PacketsLost, res.PacketsLost+res.PacketsReceived, 100*res.LossRatio)
	fmt.Fprintf(stdout, "  video latency     p50 %.1f  p95 %.1f  p99 %.1f ms\n", res.VideoLatencyMs.P50, res.VideoLatencyMs.P95, res.VideoLatencyMs.P99)
	if res.Audio {
		fmt.Fprintf(stdout, "  audio latency     p50 %.1f  p95 %.1f  p99 %.1f ms\n", res.AudioLatencyMs.P50, res.AudioLatencyMs.P95, res.AudioLatencyMs.P99)
	}
	fmt.Fprintf(stdout, "  egress            %.1f Mbit/s\n", res.EgressMbps)
	fmt.Fprintf(stdout, "  server CPU        %s\n", cpu)
	switch {
	case res.NodeCPUCores != nil && res.NodeUSPerForwardedPacket != nil:
		rss := "n/a"
		if res.NodeRSSMB != nil {
			rss = fmt.Sprintf("%.0f MB", *res.NodeRSSMB)
		}
		fmt.Fprintf(stdout, "  media node        %s (process %d): %.3f cores, %.2f µs per forwarded packet, RSS %s\n",
			res.NodeID, res.NodePID, *res.NodeCPUCores, *res.NodeUSPerForwardedPacket, rss)
		if res.NodeInServer {
			fmt.Fprintln(stdout, "                    (the node runs in the control plane's process: these figures include its work)")
		}
		if res.Nodes > 1 {
			fmt.Fprintf(stdout, "                    (the clients were on %d nodes: these figures are one node's)\n", res.Nodes)
		}
	default:
		fmt.Fprintf(stdout, "  media node        n/a (%s not on this machine; --node-pid names it)\n", res.NodeID)
	}
	for _, e := range res.Errors {
		fmt.Fprintln(stdout, "  error:", e)
	}
	return nil
}

// parseRamp reads --ramp's subscriber counts.
func parseRamp(s string) ([]int, error) {
	var steps []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("--ramp %q: %q is not a subscriber count", s, f)
		}
		steps = append(steps, n)
	}
	return steps, nil
}

func printRamp(w io.Writer, cfg bench.Config, rr *bench.RampResult) {
	fmt.Fprintf(w, "capacity ramp, %d publishers (at least %.1f%% of frames and packets delivered)\n", cfg.Publishers, 100*rr.MinDelivery)
	fmt.Fprintf(w, "  %11s  %11s  %10s  %10s  %10s  %16s  %15s\n", "subscribers", "streams out", "frames", "packets", "node cores", "streams per core", "Mbit/s per core")
	for _, st := range rr.Steps {
		res := st.Result
		cores := 0.0
		if res.NodeCPUCores != nil {
			cores = *res.NodeCPUCores
		}
		fmt.Fprintf(w, "  %11d  %11d  %10.4f  %10.4f  %10.3f  %16.0f  %15.0f\n", st.Subscribers, st.StreamsOut, res.DeliveryRatio, res.PacketDeliveryRatio, cores, st.StreamsPerCore, st.EgressMbpsPerCore)
	}
	if rr.AtSubscribers == 0 {
		fmt.Fprintf(w, "  no step delivered (%s)\n", rr.Stopped)
		return
	}
	fmt.Fprintf(w, "  one node core carries %.0f streams, %.0f Mbit/s of egress (read at %d subscribers; %s)\n",
		rr.StreamsPerCore, rr.EgressMbpsPerCore, rr.AtSubscribers, rr.Stopped)
}

// runJoinBench offers joins to cfg.Server, or to a deployment of its own
// in this process when that is empty, and prints the result.
func runJoinBench(ctx context.Context, cfg bench.JoinConfig, asJSON bool, profileDir string, stdout, stderr io.Writer) error {
	if cfg.Server == "" {
		url, stop, err := startBenchDeployment(ctx, stderr)
		if err != nil {
			return err
		}
		defer stop()
		cfg.Server = url
	}
	if profileDir != "" {
		stopProfiles, err := startProfiles(profileDir)
		if err != nil {
			return err
		}
		defer func() {
			if err := stopProfiles(); err != nil {
				fmt.Fprintln(stderr, "profiles:", err)
			}
		}()
	}
	res, err := bench.RunJoins(ctx, cfg)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "%d joins offered at %v/s over %d meetings in %.1f s\n", res.Offered, res.TargetJoinsPerSecond, res.Meetings, res.DurationS)
	fmt.Fprintf(stdout, "  joined         %d (%.1f joins/s)\n", res.Succeeded, res.JoinsPerSecond)
	fmt.Fprintf(stdout, "  join latency   p50 %.1f  p95 %.1f  p99 %.1f  max %.1f ms (from each join's scheduled time)\n",
		res.JoinLatencyMs.P50, res.JoinLatencyMs.P95, res.JoinLatencyMs.P99, res.JoinLatencyMs.Max)
	codes := make([]string, 0, len(res.Refusals))
	for c := range res.Refusals {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	refusals := "none"
	if len(codes) > 0 {
		parts := make([]string, len(codes))
		for i, c := range codes {
			parts[i] = c + " " + strconv.Itoa(res.Refusals[c])
		}
		refusals = strings.Join(parts, ", ")
	}
	fmt.Fprintf(stdout, "  refusals       %s\n", refusals)
	fmt.Fprintf(stdout, "  errors         %d\n", res.Errors)
	for _, e := range res.ErrorSamples {
		fmt.Fprintln(stdout, "    e.g.", e)
	}
	schedule := "kept"
	if !res.ScheduleKept() {
		schedule = fmt.Sprintf("NOT kept: %d joins sent more than 10 ms late, up to %.0f ms", res.Late, res.MaxLagMs)
	}
	fmt.Fprintf(stdout, "  schedule       %s\n", schedule)
	if res.ServerCPUS != nil {
		fmt.Fprintf(stdout, "  server CPU     %.1f s (%.0f%% of one core)\n", *res.ServerCPUS, 100**res.ServerCPUS/res.DurationS)
	}
	return nil
}

// benchServeArgs are the serve flags of the join bench's own deployment:
// the demo's in-process nodes, each with room for every join a run
// offers, a fresh data directory and an API port of the system's choice.
func benchServeArgs(dataDir string) []string {
	return []string{"--demo", "--data", dataDir, "--listen", "127.0.0.1:0",
		"--node-max-participants", "100000000", "--log-level", "warn",
		// Joins from one address at hundreds a second, none of which
		// connects, are what a deployment's limits are there to stop.
		"--limits", "off"}
}

// startBenchDeployment runs `oakmeet serve` with benchServeArgs in this
// process and returns its URL once it serves; stop ends it and removes
// its data.
func startBenchDeployment(ctx context.Context, stderr io.Writer) (url string, stop func(), err error) {
	dataDir, err := os.MkdirTemp("", "oakmeet-bench-")
	if err != nil {
		return "", nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := runServe(runCtx, benchServeArgs(dataDir), pw, stderr)
		pw.CloseWithError(errors.Join(err, io.EOF))
		done <- err
	}()
	stop = func() {
		cancel()
		<-done
		_ = os.RemoveAll(dataDir)
	}
	// The banner's first line names the address: "oakmeet V is running at URL".
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if _, u, ok := strings.Cut(sc.Text(), " is running at "); ok {
			go func() { _, _ = io.Copy(io.Discard, pr) }()
			fmt.Fprintf(stderr, "in-process deployment at %s (data %s)\n", u, dataDir)
			return strings.TrimSpace(u), stop, nil
		}
	}
	stop()
	err = sc.Err()
	if err == nil {
		err = errors.New("it ended before serving")
	}
	return "", nil, fmt.Errorf("in-process deployment: %w", err)
}

// startProfiles starts a CPU profile and mutex and block sampling of this
// process; stop writes cpu.pprof, mutex.pprof and block.pprof to dir.
func startProfiles(dir string) (stop func() error, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(dir, "cpu.pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	runtime.SetMutexProfileFraction(20)
	runtime.SetBlockProfileRate(int(100 * time.Microsecond))
	return func() error {
		pprof.StopCPUProfile()
		errs := []error{f.Close()}
		for _, name := range []string{"mutex", "block"} {
			out, err := os.Create(filepath.Join(dir, name+".pprof"))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			errs = append(errs, pprof.Lookup(name).WriteTo(out, 0), out.Close())
		}
		runtime.SetMutexProfileFraction(0)
		runtime.SetBlockProfileRate(0)
		return errors.Join(errs...)
	}, nil
}
