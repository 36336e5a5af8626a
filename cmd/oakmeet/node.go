package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	"github.com/oakmeet/oakmeet/enrollment"
	"github.com/oakmeet/oakmeet/node"
)

func runNode(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	var (
		enrolled  = fs.String("enrollment", "", "the directory 'oakmeet enroll' wrote for this node (required): its certificate, identity key, pinned token key and NATS credentials")
		id        = fs.String("id", "", "node id (default: the certificate's; any other is an error)")
		country   = fs.String("country", "", "ISO 3166-1 alpha-2 country (default: the certificate's; any other is an error)")
		region    = fs.String("region", "", "region id (default: the certificate's; any other is an error)")
		natsURL   = fs.String("nats", "nats://127.0.0.1:4222", "NATS URL of the cluster")
		listen    = fs.String("listen", "127.0.0.1:0", "signaling HTTP address")
		publicURL = fs.String("public-url", "", "signaling URL given to clients (default ws://<listen>/ws, wss:// with --tls-cert)")
		maxP      = fs.Int("max-participants", 100, "capacity in participants (0 = unlimited)")
		maxBR     = fs.Int64("max-bitrate", node.DefaultMaxBitrate(runtime.GOMAXPROCS(0)), "capacity in bits per second, in plus out, beyond which placement counts the node full (default: 300 Mbit/s per core this process may use, from the capacity ramp in docs/BENCHMARKS.md; 0 = unlimited)")
		udpPort   = fs.Int("udp-port", 0, "the one UDP port for all media (0 = any free port)")
		tcpPort   = fs.Int("tcp-port", 0, "ICE-TCP fallback port (0 = off, -1 = any free port)")
		publicIP  = fs.String("public-ip", "", "address to advertise for media behind 1:1 NAT")
		loopback  = fs.Bool("loopback", false, "media on 127.0.0.1 only (local clusters and tests)")
		turnPort  = fs.Int("turn-port", 3478, "UDP port of the built-in TURN server (0 = none, -1 = any free port)")
		drainFor  = fs.Duration("drain-timeout", 30*time.Second, "on SIGTERM or Ctrl-C, how long to wait for participants to move away before exiting")
		heartbeat = fs.Duration("heartbeat-interval", time.Second, "how often the node reports; must match the control plane's --heartbeat-interval")
		wsd       = node.DefaultWebSocketLimits()
		negotiate = fs.Duration("negotiation-timeout", wsd.NegotiationTimeout, "drop a participant whose media has not connected this long after its join (negative = never)")
		pendMax   = fs.Int("max-pending-connections", wsd.MaxPending, "signaling connections not yet joined, node-wide, beyond which upgrades get 503 (negative = no cap)")
		pendIP    = fs.Int("max-pending-per-ip", wsd.MaxPendingPerIP, "signaling connections not yet joined from one address, beyond which upgrades get 429 (negative = no cap)")
		logLevel  = fs.String("log-level", "info", "debug, info, warn or error")
		_         = fs.String("config", "", "config file of 'flag = value' lines")
		peerCA    = fs.String("peer-ca", "", "CA certificates (PEM) other nodes' wss:// signaling is verified with when relaying to them (default: the system's)")
		httpF     = addHTTPFlags(fs, "signaling (wss://)", false)
		batch     = fs.Duration("send-batch-delay", 0, "how long a forwarded packet may wait to leave with the rest of its frame, in one batched send (0 = 1ms, negative = every packet alone)")
		profile   = fs.String("profile", "", "write CPU, mutex and block profiles of the node's whole run to this directory when it exits (go tool pprof reads them)")
	)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	httpSt, err := httpF.settings()
	if err != nil {
		return err
	}
	serverTLS, _, err := httpSt.serverTLS()
	if err != nil {
		return err
	}
	peerTLS, err := caFileTLS("--peer-ca", *peerCA)
	if err != nil {
		return err
	}
	log, timing, err := processSetup(stderr, *logLevel, *heartbeat)
	if err != nil {
		return err
	}
	if *enrolled == "" {
		return errors.New("--enrollment is required: the directory 'oakmeet enroll --data DIR --id ID --country CC --out OUT' wrote for this node")
	}
	e, err := enrollment.Read(*enrolled)
	if err != nil {
		return err
	}
	for _, f := range []struct{ flag, given, enrolled string }{
		{"id", *id, e.Node.ID}, {"country", *country, e.Node.Country}, {"region", *region, e.Node.Region},
	} {
		if f.given != "" && !strings.EqualFold(f.given, f.enrolled) {
			return fmt.Errorf("--%s %s: the node's certificate says %s %q", f.flag, f.given, f.flag, f.enrolled)
		}
	}
	*id, *country, *region = e.Node.ID, e.Node.Country, e.Node.Region
	n, nc, err := startNode(ctx, natsLink{url: *natsURL, ca: e.NATSCA}, e.NATSCreds, node.Config{
		ID: *id, Country: *country, Region: *region, Listen: *listen, PublicURL: *publicURL,
		MaxParticipants: *maxP, MaxBitrateBps: *maxBR, Logger: log, SendBatchDelay: *batch,
		UDPPort: *udpPort, TCPPort: *tcpPort, PublicIP: *publicIP, LoopbackOnly: *loopback, TURNPort: *turnPort,
		Timing: timing, IdentityKey: e.Identity, Cert: string(e.Cert), TokenKey: e.TokenKey,
		TLS: serverTLS, PeerTLS: peerTLS, HTTP: httpSt.timeouts,
		WebSocket: node.WebSocketLimits{NegotiationTimeout: *negotiate, MaxPending: *pendMax, MaxPendingPerIP: *pendIP},
	})
	if err != nil {
		return err
	}
	defer nc.Close()
	if *profile != "" {
		stopProfiles, err := startProfiles(*profile)
		if err != nil {
			return fmt.Errorf("--profile: %w", err)
		}
		defer func() {
			if err := stopProfiles(); err != nil {
				fmt.Fprintln(stderr, "profiles:", err)
			}
		}()
	}
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
