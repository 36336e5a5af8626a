package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/oakmeet/oakmeet/node"
)

func runNode(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	var (
		id        = fs.String("id", "", "node id, unique in the cluster (default: <country>-<region or random>)")
		country   = fs.String("country", "", "ISO 3166-1 alpha-2 country the node runs in (required)")
		region    = fs.String("region", "", "region id the node runs in (optional; see GET /api/geo)")
		natsURL   = fs.String("nats", "nats://127.0.0.1:4222", "NATS URL of the cluster")
		listen    = fs.String("listen", "127.0.0.1:0", "signaling HTTP address")
		publicURL = fs.String("public-url", "", "signaling URL given to clients (default ws://<listen>/ws)")
		maxP      = fs.Int("max-participants", 100, "capacity in participants (0 = unlimited)")
		maxBR     = fs.Int64("max-bitrate", 0, "capacity in bits per second, in plus out (0 = unlimited)")
		udpPort   = fs.Int("udp-port", 0, "the one UDP port for all media (0 = any free port)")
		tcpPort   = fs.Int("tcp-port", 0, "ICE-TCP fallback port (0 = off, -1 = any free port)")
		publicIP  = fs.String("public-ip", "", "address to advertise for media behind 1:1 NAT")
		loopback  = fs.Bool("loopback", false, "media on 127.0.0.1 only (local clusters and tests)")
		turnPort  = fs.Int("turn-port", 3478, "UDP port of the built-in TURN server (0 = none, -1 = any free port)")
		drainFor  = fs.Duration("drain-timeout", 30*time.Second, "on SIGTERM or Ctrl-C, how long to wait for participants to move away before exiting")
		heartbeat = fs.Duration("heartbeat-interval", time.Second, "how often the node reports; must match the control plane's --heartbeat-interval")
		logLevel  = fs.String("log-level", "info", "debug, info, warn or error")
		_         = fs.String("config", "", "config file of 'flag = value' lines")
	)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *country == "" {
		return errors.New("--country is required (an ISO 3166-1 alpha-2 code such as DE)")
	}
	log, timing, err := processSetup(stderr, *logLevel, *heartbeat)
	if err != nil {
		return err
	}
	if *id == "" {
		*id = node.DefaultID(*country, *region)
	}
	n, nc, err := startNode(ctx, *natsURL, node.Config{
		ID: *id, Country: *country, Region: *region, Listen: *listen, PublicURL: *publicURL,
		MaxParticipants: *maxP, MaxBitrateBps: *maxBR, Logger: log,
		UDPPort: *udpPort, TCPPort: *tcpPort, PublicIP: *publicIP, LoopbackOnly: *loopback, TURNPort: *turnPort,
		Timing: timing,
	})
	if err != nil {
		return err
	}
	defer nc.Close()
	info := n.Info()
	fmt.Fprintf(stdout, "node %s (%s %s) serving %s\n", info.ID, info.Country, info.Region, info.URL)
	// A signal drains the node: it takes no one new, the control plane
	// moves its participants away, and then it exits.
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	go func() {
		<-ctx.Done()
		if runCtx.Err() != nil {
			return
		}
		fmt.Fprintf(stderr, "draining: waiting up to %s for %d participants to move\n", *drainFor, n.Participants())
		dctx, cancel := context.WithTimeout(runCtx, *drainFor)
		defer cancel()
		if err := n.DrainAndWait(dctx); err != nil {
			fmt.Fprintf(stderr, "drain: %d participants still here after %s; stopping anyway\n", n.Participants(), *drainFor)
		}
		stop()
	}()
	return n.Run(runCtx)
}
