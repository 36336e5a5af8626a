package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/control"
	"github.com/oakmeet/oakmeet/demo"
	"github.com/oakmeet/oakmeet/httpserve"
	"github.com/oakmeet/oakmeet/keyfile"
	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/natsauth"
	"github.com/oakmeet/oakmeet/node"
	"github.com/oakmeet/oakmeet/nodecert"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/store"
)

// controlKeyFile is the control plane's signing key under --data.
const controlKeyFile = "control.key"

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

// serveSettings are serve's flags, read and checked.
type serveSettings struct {
	listen, dataDir, natsURL, natsListen string
	natsCreds                            string
	natsTLS                              natsTLSSettings
	demoNodes                            []demo.Node
	floor                                policy.Policy
	locate                               locate.Config
	tokenTTL                             time.Duration
	nodeMax                              int
	enrollmentPubFile                    string
	// operatorTokenFile holds the operator token (default
	// <data>/operator.token); publicURL is where clients reach the API.
	operatorTokenFile, publicURL string
	operatorToken                string // resolved by runServe
	// auditOrigin names the transparency log ("" = from the key).
	auditOrigin string
	// Resolved by runServe: the enrollment public key nodes' certificates
	// are checked with, and the revocation list in force at start.
	enrollmentPub ed25519.PublicKey
	revocations   []byte
	// http is TLS and the HTTP servers' timeouts (httpflags.go).
	http   httpSettings
	limits *limitSettings
	// replica is this process's part in the election (replica.go).
	replica replicaSettings
	// natsCluster makes the embedded NATS a cluster member (nil: alone);
	// jsReplicas is every bucket's and stream's JetStream replicas.
	natsCluster *bus.ClusterConfig
	jsReplicas  int
}

func parseServe(args []string, stderr io.Writer) (serveSettings, string, time.Duration, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var (
		listen       = fs.String("listen", "127.0.0.1:8080", "HTTP address of the API and web app")
		dataDir      = fs.String("data", defaultDataDir(), "directory for JetStream state and the signing key")
		natsURL      = fs.String("nats", "", "use this NATS cluster instead of embedding one (e.g. nats://host:4222)")
		natsListen   = fs.String("nats-listen", "", "address where the embedded NATS accepts other processes (default: loopback, random port); beyond loopback it requires TLS")
		natsCreds    = fs.String("nats-creds", "", "with --nats: the control plane's NATS credentials file (default: made from the keys under --data)")
		natsTLSCert  = fs.String("nats-tls-cert", "", "embedded NATS: TLS certificate (PEM) instead of one signed by the deployment's own CA")
		natsTLSKey   = fs.String("nats-tls-key", "", "embedded NATS: the key of --nats-tls-cert")
		natsCA       = fs.String("nats-ca", "", "CA (PEM) the NATS server's certificate is verified with (default: the deployment's own CA with the embedded server, the system's with --nats)")
		demoMode     = fs.Bool("demo", false, "run a demo: local media nodes in many countries, client location hints trusted")
		nodes        = fs.Int("nodes", -1, "number of in-process demo nodes (default: all with --demo, else 0)")
		block        = fs.String("block", "", "deployment floor: countries or groups no meeting may use, e.g. CN,RU")
		blockRegions = fs.String("block-regions", "", "deployment floor: regions no meeting may use")
		allow        = fs.String("allow", "", "deployment floor: only these countries or groups may be used, e.g. EU")
		trustHints   = fs.Bool("trust-client-location", false, "accept the location a client states in its join request")
		proxyHeader  = fs.String("proxy-header", "", "header carrying the client's country code, set by a trusted proxy")
		proxies      = fs.String("trusted-proxies", "", "comma-separated CIDRs whose --proxy-header and --client-ip-header are believed")
		geoipFile    = fs.String("geoip", "", "MaxMind-format country database for client locations")
		tokenTTL     = fs.Duration("token-ttl", 2*time.Minute, "lifetime of join tokens")
		nodeMax      = fs.Int("node-max-participants", 50, "capacity of each in-process demo node")
		enrollPub    = fs.String("enrollment-public-key", "", "public key nodes' certificates are checked with (default <data>/enrollment.pub; without it serve makes the enrollment key pair under --data)")
		heartbeat    = fs.Duration("heartbeat-interval", time.Second, "how often nodes report; every cluster timing (node timeout, move deadline) scales with it, and all processes must agree")
		opTokenFile  = fs.String("operator-token-file", "", "file holding the operator token, which every meeting's audit log and the deployment report need (default <data>/"+operatorTokenName+", made on first start)")
		publicURL    = fs.String("public-url", "", "where clients reach the API, for meeting links (default: the address a create request came to)")
		logLevel     = fs.String("log-level", "info", "debug, info, warn or error")
		auditOrigin  = fs.String("audit-origin", "", "name of the audit log in its signed checkpoints (default oakmeet.audit/<key hash>); clients holding checkpoints of one name reject another")
		_            = fs.String("config", "", "config file of 'flag = value' lines")
		limits       = limitFlags(fs)
		applyProxy   = proxyFlags(fs)
		httpF        = addHTTPFlags(fs, "the API and web app", true)
		replicaF     = replicaFlags(fs)
		natsCl       = addNATSClusterFlags(fs)
	)
	if err := parseFlags(fs, args, stderr); err != nil {
		return serveSettings{}, "", 0, err
	}
	httpSt, err := httpF.settings()
	if err != nil {
		return serveSettings{}, "", 0, err
	}
	if *demoMode && httpSt.tls() {
		return serveSettings{}, "", 0, errors.New("--demo serves plain HTTP on loopback (its in-process nodes speak ws://, which an https page may not use); TLS is for a deployment")
	}
	if *demoMode && !loopbackAddr(*listen) {
		return serveSettings{}, "", 0, fmt.Errorf("--demo --listen %s: the demo believes every client's stated location and serves loopback only (e.g. 127.0.0.1:8080)", *listen)
	}
	st := serveSettings{
		listen: *listen, dataDir: *dataDir, natsURL: *natsURL, natsListen: *natsListen,
		natsCreds: *natsCreds, natsTLS: natsTLSSettings{cert: *natsTLSCert, key: *natsTLSKey, ca: *natsCA},
		floor:    policy.Policy{BlockedCountries: splitList(*block), BlockedRegions: splitList(*blockRegions), AllowedCountries: splitList(*allow)},
		locate:   locate.Config{ProxyHeader: *proxyHeader, GeoIPFile: *geoipFile, TrustClientHints: *trustHints || *demoMode},
		tokenTTL: *tokenTTL, nodeMax: *nodeMax, enrollmentPubFile: *enrollPub,
		operatorTokenFile: *opTokenFile, publicURL: strings.TrimRight(*publicURL, "/"),
		auditOrigin: *auditOrigin, http: httpSt, limits: limits, replica: replicaF.get(),
	}
	if st.operatorTokenFile == "" {
		st.operatorTokenFile = filepath.Join(st.dataDir, operatorTokenName)
	}
	if st.natsCluster, st.jsReplicas, err = natsCl.settings(st.natsURL); err != nil {
		return serveSettings{}, "", 0, err
	}
	all := demo.Nodes()
	n := *nodes
	if n < 0 {
		n = 0
		if *demoMode {
			n = len(all)
		}
	}
	if n > len(all) {
		return serveSettings{}, "", 0, fmt.Errorf("--nodes %d: at most %d in-process nodes", n, len(all))
	}
	st.demoNodes = all[:n]
	for _, p := range splitList(*proxies) {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			return serveSettings{}, "", 0, fmt.Errorf("--trusted-proxies: %w", err)
		}
		st.locate.TrustedProxies = append(st.locate.TrustedProxies, pfx)
	}
	if err := applyProxy(&st); err != nil {
		return serveSettings{}, "", 0, err
	}
	return st, *logLevel, *heartbeat, nil
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	st, logLevel, heartbeat, err := parseServe(args, stderr)
	if err != nil {
		return err
	}
	log, timing, err := processSetup(stderr, logLevel, heartbeat)
	if err != nil {
		return err
	}
	// The certificate is read before anything starts: a bad one is an
	// error at once.
	serverTLS, acme, err := st.http.serverTLS()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(st.dataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	demoEnroll, err := st.resolveEnrollment()
	if err != nil {
		return err
	}
	if st.operatorToken, err = loadOrCreateOperatorToken(st.operatorTokenFile); err != nil {
		return err
	}
	cp, link, auth, closeCP, err := startControlPlane(ctx, st, log, timing)
	if err != nil {
		return err
	}
	defer closeCP()
	rep, err := newReplica(st, cp, log)
	if err != nil {
		return err
	}
	httpSrv, err := httpserve.Listen(st.listen, httpserve.Config{Handler: rep.Handler(), Timeouts: st.http.timeouts, TLS: serverTLS, Logger: log})
	if err != nil {
		return err
	}
	// With ACME's http-01, a plain listener answers the CA's challenges
	// and sends everything else to HTTPS.
	var acmeSrv *httpserve.Server
	if acme != nil && st.http.acmeHTTP != "" {
		if acmeSrv, err = httpserve.Listen(st.http.acmeHTTP, httpserve.Config{Handler: acme.HTTPHandler(), Timeouts: st.http.timeouts, Logger: log}); err != nil {
			_ = httpSrv.Close()
			return fmt.Errorf("--acme-http: %w", err)
		}
	}

	runCtx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	var wg sync.WaitGroup
	errs := make(chan error, 3+len(st.demoNodes))
	run := func(f func() error) {
		wg.Go(func() {
			if err := f(); err != nil {
				errs <- err
			}
		})
	}
	run(func() error { return rep.Run(runCtx) })
	run(func() error {
		watchRevocations(runCtx, st.dataDir, st.revocations, leaderRevocations(rep), log)
		return nil
	})
	run(func() error {
		if err := httpSrv.Serve(); err != nil {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	if acmeSrv != nil {
		run(func() error {
			if err := acmeSrv.Serve(); err != nil {
				return fmt.Errorf("acme http-01: %w", err)
			}
			return nil
		})
	}
	startCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for _, d := range st.demoNodes {
		// Each in-process node is enrolled as another would be: its own
		// NATS identity, certificate and identity key.
		e, err := issueEnrollment(demoEnroll, auth, cp.publicKey(),
			nodecert.Cert{NodeID: d.ID, Country: d.Country, Region: d.Region}, demoCertValidity)
		if err != nil {
			stopAll()
			wg.Wait()
			return err
		}
		n, nodeNC, err := startNode(startCtx, link, e.NATSCreds, node.Config{
			ID: d.ID, Country: d.Country, Region: d.Region, Listen: "127.0.0.1:0",
			MaxParticipants: st.nodeMax, Logger: log, LoopbackOnly: true, TURNPort: -1, Timing: timing, HTTP: st.http.timeouts,
			IdentityKey: e.Identity, Cert: string(e.Cert), TokenKey: e.TokenKey,
		})
		if err != nil {
			stopAll()
			wg.Wait()
			return err
		}
		run(func() error {
			defer nodeNC.Close()
			return n.Run(runCtx)
		})
	}
	serveBanner(stdout, httpSrv.URL(), link.url, st)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	stopAll()
	shutCtx, c2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer c2()
	_ = httpSrv.Shutdown(shutCtx)
	if acmeSrv != nil {
		_ = acmeSrv.Shutdown(shutCtx)
	}
	wg.Wait()
	return runErr
}

// resolveEnrollment reads the enrollment public key and the revocation
// list in force into st, and returns the enrollment key itself when there
// are in-process nodes to enroll (nil otherwise: serve needs no more).
func (st *serveSettings) resolveEnrollment() (ed25519.PrivateKey, error) {
	var err error
	if st.enrollmentPub, err = servePublicKey(st.enrollmentPubFile, st.dataDir); err != nil {
		return nil, err
	}
	if _, st.revocations, err = readRevocations(st.dataDir, st.enrollmentPub); err != nil {
		return nil, err
	}
	if len(st.demoNodes) == 0 {
		return nil, nil
	}
	key, err := loadEnrollmentKey(defaultEnrollmentKey(st.dataDir), st.dataDir)
	if err != nil {
		return nil, err
	}
	if !key.Public().(ed25519.PublicKey).Equal(st.enrollmentPub) {
		return nil, errors.New("in-process nodes are enrolled with <data>/enrollment.key, which is not the key of --enrollment-public-key")
	}
	return key, nil
}

// startControlPlane opens the signing key, the deployment's NATS identities,
// NATS (embedded unless --nats names one), the store and the locator, and
// readies what each election builds the control plane on; close releases
// them all.
func startControlPlane(ctx context.Context, st serveSettings, log *slog.Logger, timing cluster.Timing) (cp *controlPlane, link natsLink, auth *natsauth.Deployment, close func(), err error) {
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	fail := func(err error) (*controlPlane, natsLink, *natsauth.Deployment, func(), error) {
		return nil, natsLink{}, nil, nil, err
	}
	key, err := keyfile.LoadOrCreate(filepath.Join(st.dataDir, controlKeyFile))
	if err != nil {
		return fail(err)
	}
	if auth, err = natsauth.LoadOrCreate(natsDir(st.dataDir)); err != nil {
		return fail(err)
	}
	creds, err := controlCreds(st, auth)
	if err != nil {
		return fail(err)
	}
	link = natsLink{url: st.natsURL}
	var member *bus.Embedded // this process's member of an embedded NATS cluster
	if link.url == "" {
		serverTLS, ca, err := embeddedTLS(st.dataDir, st.natsListen, st.natsTLS)
		if err != nil {
			return fail(err)
		}
		if st.natsCluster != nil {
			if st.natsCluster.TLS, err = routeTLS(st.dataDir, st.natsCluster); err != nil {
				return fail(err)
			}
		}
		emb, err := bus.Embed(bus.EmbedConfig{StoreDir: filepath.Join(st.dataDir, "jetstream"), Listen: st.natsListen,
			Auth: auth, TLS: serverTLS, TLSCA: ca, Cluster: st.natsCluster, Logger: log})
		if err != nil {
			return fail(err)
		}
		// Stop hands a cluster member's JetStream leaderships over first.
		closers = append(closers, emb.Stop)
		if st.natsCluster != nil {
			member = emb
		}
		link = natsLink{url: emb.URL(), ca: ca}
		log.Info("embedded NATS with JetStream", "url", link.url, "store", filepath.Join(st.dataDir, "jetstream"), "tls", serverTLS != nil)
	} else if st.natsTLS.ca != "" {
		if link.ca, err = os.ReadFile(st.natsTLS.ca); err != nil {
			return fail(fmt.Errorf("--nats-ca: %w", err))
		}
	}
	nc, err := link.connect("oakmeet-control", creds)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, nc.Close)
	// A cluster's members start one by one: the store waits for enough
	// of them to elect a JetStream leader and hold its replicas.
	openCtx, cancelOpen := context.WithTimeout(ctx, clusterStartTimeout)
	defer cancelOpen()
	kv, err := store.OpenWith(openCtx, nc, store.Options{Replicas: st.jsReplicas})
	if err != nil {
		return fail(err)
	}
	st.locate.Logger = log
	if len(st.locate.TrustedProxies) > 0 && st.locate.ClientIPHeader == "" && st.limits != nil && !st.limits.off {
		// Legitimate with --proxy-header alone, but then every client behind
		// the proxy shares the proxy's address for the per-client limits.
		log.Warn("--trusted-proxies without --client-ip-header: per-client limits count every client behind those proxies as one")
	}
	loc, err := locate.New(st.locate)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { _ = loc.Close() })
	cp = &controlPlane{nc: nc, dataDir: st.dataDir, member: member, log: log, cfg: control.Config{
		Store: kv, NATS: nc, Locator: loc, Floor: st.floor, Key: key, TokenTTL: st.tokenTTL,
		EnrollmentKey: st.enrollmentPub, Revocations: st.revocations,
		TrustClientLocation: st.locate.TrustClientHints, Logger: log, Timing: timing,
		OperatorToken: st.operatorToken, PublicURL: st.publicURL, AuditOrigin: st.auditOrigin, Limits: st.limits.get(),
	}}
	return cp, link, auth, closeAll, nil
}

// controlCreds is the control plane's NATS identity: --nats-creds, or one
// the deployment's account key issues (a cluster member's names it).
func controlCreds(st serveSettings, auth *natsauth.Deployment) ([]byte, error) {
	if st.natsCreds == "" && st.natsCluster != nil {
		return auth.ReplicaCreds(st.natsCluster.ServerName)
	}
	if st.natsCreds == "" {
		return auth.ControlCreds()
	}
	if st.natsURL == "" {
		return nil, errors.New("--nats-creds is for an external NATS (--nats); the embedded one uses the keys under --data")
	}
	data, err := os.ReadFile(st.natsCreds)
	if err != nil {
		return nil, fmt.Errorf("--nats-creds: %w", err)
	}
	return data, nil
}

func serveBanner(w io.Writer, base, natsURL string, st serveSettings) {
	fmt.Fprintf(w, "oakmeet %s is running at %s\n", version(), base)
	if len(st.demoNodes) > 0 {
		fmt.Fprintf(w, "  %d media nodes in %s\n", len(st.demoNodes), strings.Join(demo.Countries(st.demoNodes), ", "))
	}
	fmt.Fprintf(w, "  API: %s/api/nodes   metrics: %s/metrics   data: %s\n", base, base, st.dataDir)
	fmt.Fprintf(w, "  NATS for other processes: %s\n", natsURL)
	fmt.Fprintf(w, "  operator token (oakmeet audit and report read it): %s\n", st.operatorTokenFile)
	fmt.Fprintln(w, "Press Ctrl-C to stop.")
}

// operatorTokenName is the operator token's file under --data.
const operatorTokenName = "operator.token"

// loadOrCreateOperatorToken reads the operator token from path, or makes
// one there (32 random bytes, base64url; mode 0600) on first start.
func loadOrCreateOperatorToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(data))
		if len(tok) < 16 {
			return "", fmt.Errorf("operator token file %s: too short to be a token", path)
		}
		return tok, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("operator token file: %w", err)
	}
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("operator token file: %w", err)
	}
	if err := keyfile.WriteAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("operator token file: %w", err)
	}
	return tok, nil
}

// readOperatorToken is the token of an operator token file, or "" when
// the file is not there (the request then goes without, and the control
// plane says what it needs).
func readOperatorToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("operator token file: %w", err)
	}
	return strings.TrimSpace(string(data)), nil
}

// demoCertValidity is how long an in-process node's certificate lasts: its
// enrollment is made at each start and kept in memory, and a demo runs for
// days at most.
const demoCertValidity = 30 * 24 * time.Hour

// startNode connects a media node to NATS with its own credentials and
// builds it from cfg; the caller runs it and closes the connection after.
func startNode(ctx context.Context, link natsLink, creds []byte, cfg node.Config) (*node.Node, *nats.Conn, error) {
	nc, err := link.connect("oakmeet-node-"+cfg.ID, creds)
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
