package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/oakmeet/oakmeet/bench"
	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/client"
)

func runBot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bot", flag.ContinueOnError)
	var (
		server   = fs.String("server", "http://127.0.0.1:8080", "control plane URL")
		meeting  = fs.String("meeting", "", "meeting id (required)")
		name     = fs.String("name", "bot", "display name")
		country  = fs.String("country", "", "join from this country (where the deployment trusts client hints)")
		duration = fs.Duration("duration", 0, "how long to stay (default: until interrupted)")
		asJSON   = fs.Bool("json", false, "print one JSON object with the results on the last line")
		loopback = fs.Bool("loopback", true, "media over 127.0.0.1 only (local deployments)")
		logLevel = fs.String("log-level", "warn", "debug, info, warn or error")
		_        = fs.String("config", "", "config file of 'flag = value' lines")
	)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *meeting == "" {
		return errors.New("--meeting is required")
	}
	if *duration < 0 {
		return fmt.Errorf("--duration %s: must not be negative (0 stays until interrupted)", *duration)
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	rep, err := bot.Run(ctx, bot.Config{
		Server: *server, Meeting: *meeting, Name: *name, Country: *country, Duration: *duration,
		LoopbackOnly: *loopback, Logger: log,
		Ready: func(pid string) {
			fmt.Fprintf(stderr, "joined meeting %s as %s; publishing the test clips\n", *meeting, pid)
		},
	})
	var ae *client.APIError
	if errors.As(err, &ae) {
		return fmt.Errorf("join refused: %s (%s)", ae.Message, ae.Code)
	}
	if rep == nil {
		return err
	}
	if *asJSON {
		if jerr := printJSON(stdout, rep); jerr != nil {
			return jerr
		}
	} else {
		fmt.Fprintf(stdout, "participant %s on node %s (%s %s); sent %d video and %d audio frames\n",
			rep.ParticipantID, rep.Node.ID, rep.Node.Country, rep.Node.Region, rep.Sent.VideoFrames, rep.Sent.AudioFrames)
		fmt.Fprintf(stdout, "security code %s (epoch %d): compare it with everyone in the meeting\n", rep.SecurityCode, rep.Epoch)
		for _, t := range rep.Tracks {
			fmt.Fprintf(stdout, "  from %s %-5s %6d frames %7d packets %4d lost %4d undecryptable  latency p50 %.1f ms p95 %.1f ms\n",
				t.ParticipantID, t.Kind, t.Frames, t.Packets, t.Lost, t.DecryptFailures, t.LatencyMs.P50, t.LatencyMs.P95)
		}
	}
	return err
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var (
		server      = fs.String("server", "http://127.0.0.1:8080", "control plane URL")
		meeting     = fs.String("meeting", "", "meeting id (default: create one)")
		publishers  = fs.Int("publishers", 1, "clients sending audio and video")
		subscribers = fs.Int("subscribers", 10, "receive-only clients")
		duration    = fs.Duration("duration", 20*time.Second, "measured time, after everyone has joined")
		country     = fs.String("country", "DE", "join every client from this country")
		asJSON      = fs.Bool("json", false, "print the result as one JSON object")
		loopback    = fs.Bool("loopback", true, "media over 127.0.0.1 only (local deployments)")
		_           = fs.String("config", "", "config file of 'flag = value' lines")
	)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	res, err := bench.Run(ctx, bench.Config{
		Server: *server, Meeting: *meeting, Publishers: *publishers, Subscribers: *subscribers,
		Duration: *duration, Country: *country, LoopbackOnly: *loopback,
		Progress: func(s string) { fmt.Fprintln(stderr, s) },
	})
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
	fmt.Fprintf(stdout, "%d publishers × %d subscribers for %.0f s (meeting %s, %d joined)\n", res.Publishers, res.Subscribers, res.DurationS, res.Meeting, res.Joined)
	fmt.Fprintf(stdout, "  frames delivered  %d of %d (%.2f%%)\n", res.FramesDelivered, res.FramesExpected, 100*res.DeliveryRatio)
	fmt.Fprintf(stdout, "  packet loss       %d of %d (%.3f%%)\n", res.PacketsLost, res.PacketsLost+res.PacketsReceived, 100*res.LossRatio)
	fmt.Fprintf(stdout, "  video latency     p50 %.1f  p95 %.1f  p99 %.1f ms\n", res.VideoLatencyMs.P50, res.VideoLatencyMs.P95, res.VideoLatencyMs.P99)
	fmt.Fprintf(stdout, "  audio latency     p50 %.1f  p95 %.1f  p99 %.1f ms\n", res.AudioLatencyMs.P50, res.AudioLatencyMs.P95, res.AudioLatencyMs.P99)
	fmt.Fprintf(stdout, "  egress            %.1f Mbit/s\n", res.EgressMbps)
	fmt.Fprintf(stdout, "  server CPU        %s\n", cpu)
	for _, e := range res.Errors {
		fmt.Fprintln(stdout, "  error:", e)
	}
	return nil
}

// printJSON writes v as one line of JSON.
func printJSON(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(data))
	return err
}
