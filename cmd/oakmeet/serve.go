package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/control"
	"github.com/oakmeet/oakmeet/demo"
	"github.com/oakmeet/oakmeet/keyfile"
	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/node"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/store"
)

func defaultDataDir() string {
	if d, err := os.UserHomeDir(); err == nil {
		return filepath.Join(d, ".local", "state", "oakmeet")
	}
	return "oakmeet-data"
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var (
		listen       = fs.String("listen", "127.0.0.1:8080", "HTTP address of the API and web app")
		dataDir      = fs.String("data", defaultDataDir(), "directory for JetStream state and the signing key")
		natsURL      = fs.String("nats", "", "use this NATS cluster instead of embedding one (e.g. nats://host:4222)")
		natsListen   = fs.String("nats-listen", "", "address where the embedded NATS accepts other processes (default: loopback, random port)")
		demoMode     = fs.Bool("demo", false, "run a demo: local media nodes in many countries, client location hints trusted")
		nodes        = fs.Int("nodes", -1, "number of in-process demo nodes (default: all with --demo, else 0)")
		block        = fs.String("block", "", "deployment floor: countries or groups no meeting may use, e.g. CN,RU")
		blockRegions = fs.String("block-regions", "", "deployment floor: regions no meeting may use")
		allow        = fs.String("allow", "", "deployment floor: only these countries or groups may be used, e.g. EU")
		trustHints   = fs.Bool("trust-client-location", false, "accept the location a client states in its join request")
		proxyHeader  = fs.String("proxy-header", "", "header carrying the client's country code, set by a trusted proxy")
		proxies      = fs.String("trusted-proxies", "", "comma-separated CIDRs whose --proxy-header is believed")
		geoipFile    = fs.String("geoip", "", "MaxMind-format country database for client locations")
		tokenTTL     = fs.Duration("token-ttl", 2*time.Minute, "lifetime of join tokens")
		nodeMax      = fs.Int("node-max-participants", 50, "capacity of each in-process demo node")
		heartbeat    = fs.Duration("heartbeat-interval", time.Second, "how often nodes report; every cluster timing (node timeout, move deadline) scales with it, and all processes must agree")
		logLevel     = fs.String("log-level", "info", "debug, info, warn or error")
		_            = fs.String("config", "", "config file of 'flag = value' lines")
	)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	log, timing, err := processSetup(stderr, *logLevel, *heartbeat)
	if err != nil {
		return err
	}
	if *demoMode {
		*trustHints = true
	}
	demoNodes := demo.Nodes()
	nNodes := *nodes
	if nNodes < 0 {
		nNodes = 0
		if *demoMode {
			nNodes = len(demoNodes)
		}
	}
	if nNodes > len(demoNodes) {
		return fmt.Errorf("--nodes %d: at most %d in-process nodes", nNodes, len(demoNodes))
	}
	demoNodes = demoNodes[:nNodes]
	var trusted []netip.Prefix
	for _, p := range splitList(*proxies) {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			return fmt.Errorf("--trusted-proxies: %w", err)
		}
		trusted = append(trusted, pfx)
	}
	floor := policy.Policy{BlockedCountries: splitList(*block), BlockedRegions: splitList(*blockRegions), AllowedCountries: splitList(*allow)}

	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	key, err := keyfile.LoadOrCreate(filepath.Join(*dataDir, "control.key"))
	if err != nil {
		return err
	}

	url := *natsURL
	if url == "" {
		emb, err := bus.Embed(bus.EmbedConfig{StoreDir: filepath.Join(*dataDir, "jetstream"), Listen: *natsListen})
		if err != nil {
			return err
		}
		defer emb.Shutdown()
		url = emb.URL()
		log.Info("embedded NATS with JetStream", "url", url, "store", filepath.Join(*dataDir, "jetstream"))
	}
	nc, err := bus.Connect(url, "oakmeet-control")
	if err != nil {
		return err
	}
	defer nc.Close()
	startCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	st, err := store.Open(startCtx, nc)
	if err != nil {
		return err
	}
	loc, err := locate.New(locate.Config{ProxyHeader: *proxyHeader, TrustedProxies: trusted, GeoIPFile: *geoipFile, TrustClientHints: *trustHints})
	if err != nil {
		return err
	}
	defer loc.Close()
	srv, err := control.New(startCtx, control.Config{
		Store: st, NATS: nc, Locator: loc, Floor: floor, Key: key, TokenTTL: *tokenTTL,
		TrustClientLocation: *trustHints, Logger: log, Timing: timing,
	})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	httpSrv := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}

	runCtx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	var wg sync.WaitGroup
	errs := make(chan error, 2+nNodes)
	wg.Go(func() {
		if err := srv.Run(runCtx); err != nil {
			errs <- err
		}
	})
	wg.Go(func() {
		if err := httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("http: %w", err)
		}
	})
	for _, d := range demoNodes {
		n, nodeNC, err := startNode(startCtx, url, node.Config{
			ID: d.ID, Country: d.Country, Region: d.Region, Listen: "127.0.0.1:0",
			MaxParticipants: *nodeMax, Logger: log, LoopbackOnly: true, TURNPort: -1, Timing: timing,
		})
		if err != nil {
			stopAll()
			wg.Wait()
			return err
		}
		wg.Go(func() {
			defer nodeNC.Close()
			if err := n.Run(runCtx); err != nil {
				errs <- err
			}
		})
	}

	base := "http://" + ln.Addr().String()
	fmt.Fprintf(stdout, "oakmeet %s is running at %s\n", version(), base)
	if nNodes > 0 {
		fmt.Fprintf(stdout, "  %d media nodes in %s\n", nNodes, strings.Join(demo.Countries(demoNodes), ", "))
	}
	fmt.Fprintf(stdout, "  API: %s/api/nodes   metrics: %s/metrics   data: %s\n", base, base, *dataDir)
	fmt.Fprintf(stdout, "  NATS for other processes: %s\n", url)
	fmt.Fprintln(stdout, "Press Ctrl-C to stop.")

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	stopAll()
	shutCtx, c2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer c2()
	_ = httpSrv.Shutdown(shutCtx)
	wg.Wait()
	return runErr
}

// startNode connects a media node to NATS at natsURL and builds it from
// cfg; the caller runs it and closes the connection after.
func startNode(ctx context.Context, natsURL string, cfg node.Config) (*node.Node, *nats.Conn, error) {
	nc, err := bus.Connect(natsURL, "oakmeet-node-"+cfg.ID)
	if err != nil {
		return nil, nil, err
	}
	cfg.NATS = nc
	n, err := node.New(ctx, cfg)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return n, nc, nil
}
