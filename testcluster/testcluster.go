// Package testcluster runs a whole oakmeet deployment inside a test: an
// embedded NATS server with JetStream, the control plane behind a real HTTP
// server, and real media nodes, all in-process on loopback and random
// ports, so system tests can join, publish and break things.
package testcluster

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/control"
	"github.com/oakmeet/oakmeet/demo"
	"github.com/oakmeet/oakmeet/httpserve"
	"github.com/oakmeet/oakmeet/httpserve/httpservetest"
	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/natsauth"
	"github.com/oakmeet/oakmeet/node"
	"github.com/oakmeet/oakmeet/nodecert"
	"github.com/oakmeet/oakmeet/policy"
)

// NodeSpec describes a node to start.
type NodeSpec struct {
	ID, Country, Region string
	Max                 int // participants; 0 = unlimited
	// Interceptors see every packet the node's media engine handles.
	Interceptors []interceptor.Factory
	// WrapUDP wraps the node's ICE UDP socket (node.Config.WrapUDP), e.g.
	// to put a firewall in front of it.
	WrapUDP func(net.PacketConn) net.PacketConn
	// NegotiationTimeout is how long the node lets a participant's media
	// take to connect (0: the node's default).
	NegotiationTimeout time.Duration
}

// World is eight of the demo's nodes, on five continents, including CN
// and RU. The tests count on these eight in this order: a test that takes
// World()[:2] runs on de-fra and us-iad.
func World() []NodeSpec {
	var specs []NodeSpec
	for _, n := range demo.Pick("de-fra", "us-iad", "jp-tyo", "sg-sin", "br-gru", "in-bom", "cn-pek", "ru-mow") {
		specs = append(specs, NodeSpec{ID: n.ID, Country: n.Country, Region: n.Region})
	}
	return specs
}

// Cluster is a control plane with real in-process nodes over an embedded
// NATS server.
type Cluster struct {
	t   testing.TB
	log *testLog
	URL string            // the control plane's base URL
	API *apiclient.Client // speaks to URL; RestartControl replaces both
	Srv *control.Server
	dir string
	key ed25519.PrivateKey
	// enroll is the deployment's enrollment key, which certifies every
	// node the cluster starts; revocations is the newest revocation list
	// (seq revSeq, entries revoked), kept across RestartControl.
	enroll      ed25519.PrivateKey
	revocations []byte
	revSeq      uint64
	revoked     []nodecert.Revocation
	floor       policy.Policy
	emb         *bus.Embedded
	natsc       natsState
	auth        *natsauth.Deployment
	http        *httpserve.Server
	stop        context.CancelFunc
	wg          sync.WaitGroup
	nodes       map[string]context.CancelFunc
	// Timing is every clock of the control plane and the nodes.
	Timing cluster.Timing
	// operator is the deployment's operator token; API sends it.
	operator  string
	lobbyWait time.Duration
	// ca and leaf are the TLS certificates under WithTLS (ca nil: plain).
	ca     *httpservetest.CA
	leaf   httpservetest.Leaf
	client *http.Client
	limits control.Limits
	reps   replicaState

	mu      sync.Mutex
	secrets map[string]string // join secret by meeting, of CreateMeeting's meetings
	hosts   map[string]*apiclient.Host
}

// Timing is what a test cluster runs on unless told otherwise: heartbeats
// five times as often as in production, so node loss, drains and relay
// orders play out in a second or two, but a node timeout long enough that
// a busy machine does not lose nodes that are alive, and production's move
// deadline, which a move that works never waits for.
func Timing() cluster.Timing {
	d := cluster.DefaultTiming()
	return cluster.Timing{
		HeartbeatInterval: 200 * time.Millisecond,
		HeartbeatTimeout:  time.Second,
		MoveDeadline:      d.MoveDeadline,
		ReplacedGrace:     time.Second,
		SeatGrace:         2 * time.Second,
		RelayResend:       time.Second,
		TrafficEvery:      400 * time.Millisecond,
		CheckpointEvery:   100 * time.Millisecond,
	}
}

// Option changes how Start builds a cluster.
type Option func(*Cluster)

// WithTiming runs the cluster on t instead of Timing().
func WithTiming(t cluster.Timing) Option { return func(c *Cluster) { c.Timing = t.WithDefaults() } }

// WithLobbyWait holds a join's ask from the lobby open for d (the control
// plane's default is 20 s).
func WithLobbyWait(d time.Duration) Option { return func(c *Cluster) { c.lobbyWait = d } }

// WithLimits runs the control plane with limits l; without it a test
// cluster has none (control.NoLimits), so tests do not limit each other.
func WithLimits(l control.Limits) Option { return func(c *Cluster) { c.limits = l } }

// testLog carries the cluster's warnings and errors into the test's log,
// which go test prints only when the test fails: a failure then shows what
// the servers saw. It goes quiet when the test ends, since a server still
// stopping must not log into a finished test.
type testLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (l *testLog) stop() {
	l.mu.Lock()
	l.done = true
	l.mu.Unlock()
}

func (c *Cluster) logger() *slog.Logger {
	if c.log == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(quietPion{Handler: slog.NewTextHandler(c.log, &slog.HandlerOptions{Level: slog.LevelWarn})})
}

// quietPion passes on pion's errors but not its warnings, which a test's
// teardown makes by the hundred (writes on closed sockets) and which
// would bury what the servers themselves said.
type quietPion struct {
	slog.Handler
	pion bool
}

func (h quietPion) Handle(ctx context.Context, r slog.Record) error {
	if h.pion && r.Level < slog.LevelError {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h quietPion) WithAttrs(attrs []slog.Attr) slog.Handler {
	pion := h.pion
	for _, a := range attrs {
		pion = pion || a.Key == "pion"
	}
	return quietPion{Handler: h.Handler.WithAttrs(attrs), pion: pion}
}

func (h quietPion) WithGroup(name string) slog.Handler {
	return quietPion{Handler: h.Handler.WithGroup(name), pion: h.pion}
}

// Start runs a cluster with the given deployment floor and nodes, waits until
// every node is healthy, and stops everything when the test ends.
func Start(t testing.TB, floor policy.Policy, nodes []NodeSpec, opts ...Option) *Cluster {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(nil)
	_, enroll, _ := ed25519.GenerateKey(nil)
	// Every process has its own NATS identity, as in a deployment; the
	// keys outlive RestartControl like a deployment's --data.
	dir := t.TempDir()
	auth, err := natsauth.LoadOrCreate(filepath.Join(dir, "nats"))
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, dir: dir, auth: auth, key: key, enroll: enroll, floor: floor, nodes: map[string]context.CancelFunc{}, Timing: Timing(),
		operator: rand.Text(), limits: control.NoLimits(), secrets: map[string]string{}, hosts: map[string]*apiclient.Host{}}
	c.log = &testLog{t: t}
	t.Cleanup(c.log.stop) // first registered, so it runs after every stop
	for _, o := range opts {
		o(c)
	}
	c.startControl()
	for _, n := range nodes {
		c.StartNode(n)
	}
	c.WaitHealthy(len(nodes))
	t.Cleanup(c.shutdown)
	return c
}

func (c *Cluster) startControl() {
	t := c.t
	if c.reps.n > 0 {
		c.startReplicas()
		return
	}
	c.startNATS()
	nc := c.connectControl()
	ctx := context.Background()
	st := c.openStore(nc)
	loc, err := locate.New(locate.Config{TrustClientHints: true, DisableBuiltin: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := control.Config{Store: st, NATS: nc, Locator: loc, Floor: c.floor, Key: c.key,
		EnrollmentKey: c.enroll.Public().(ed25519.PublicKey), Revocations: c.revocations, TrustClientLocation: true, Logger: c.logger(), Timing: c.Timing,
		OperatorToken: c.operator, LobbyWait: c.lobbyWait, Limits: c.limits}
	srv, err := control.New(ctx, cfg)
	// A NATS cluster just (re)started may not answer every stream yet, as
	// serve's replicas meet after a restart: they stand again; so does
	// this one, for a while.
	for deadline := time.Now().Add(20 * time.Second); err != nil && c.NATSServers() > 1 && time.Now().Before(deadline); {
		t.Logf("control plane not started yet: %v", err)
		time.Sleep(200 * time.Millisecond) // a retry's pause, not synchronisation
		srv, err = control.New(ctx, cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	c.Srv = srv
	// The control plane's server is built as serve builds it (httpserve),
	// with HTTPS under WithTLS.
	serverTLS, _ := c.nodeTLS()
	hs, err := httpserve.Listen("127.0.0.1:0", httpserve.Config{Handler: srv.Handler(), TLS: serverTLS, Logger: c.logger()})
	if err != nil {
		t.Fatal(err)
	}
	c.serveAPI(hs, "control http")
	runCtx, cancel := context.WithCancel(ctx)
	c.stop = func() { cancel(); nc.Close() }
	c.wg.Go(func() {
		if err := srv.Run(runCtx); err != nil {
			t.Errorf("control run: %v", err)
		}
	})
	WaitFor(t, 10*time.Second, "control ready", func() bool {
		_, err := c.API.Health(ctx)
		return err == nil
	})
}

// StartNode starts a media node (loopback media) and registers it.
func (c *Cluster) StartNode(s NodeSpec) {
	t := c.t
	nc := c.connectNode(s.ID)
	identity, cert := c.Enroll(s.ID, s.Country, s.Region, time.Hour)
	serverTLS, peerTLS := c.nodeTLS()
	n, err := node.New(context.Background(), node.Config{
		TLS: serverTLS, PeerTLS: peerTLS,
		ID: s.ID, Country: s.Country, Region: s.Region, MaxParticipants: s.Max, NATS: nc, Logger: c.logger(),
		LoopbackOnly: true, TURNPort: -1, Interceptors: s.Interceptors, WrapUDP: s.WrapUDP, Timing: c.Timing,
		WebSocket:   node.WebSocketLimits{NegotiationTimeout: s.NegotiationTimeout},
		IdentityKey: identity, Cert: cert, TokenKey: c.key.Public().(ed25519.PublicKey),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	c.nodes[s.ID] = func() { cancel(); <-done; nc.Close() }
	go func() {
		defer close(done)
		if err := n.Run(ctx); err != nil {
			t.Errorf("node %s: %v", s.ID, err)
		}
	}()
}

// Enroll makes a node identity key and a certificate for it from the
// cluster's enrollment key, as `oakmeet enroll` does, valid for d from now.
func (c *Cluster) Enroll(id, country, region string, d time.Duration) (ed25519.PrivateKey, string) {
	c.t.Helper()
	_, identity, _ := ed25519.GenerateKey(nil)
	serial, err := nodecert.NewSerial()
	if err != nil {
		c.t.Fatal(err)
	}
	now := time.Now()
	cert, err := nodecert.Issue(c.enroll, nodecert.Cert{Serial: serial, NodeID: id, Country: country, Region: region,
		IdentityKey: identity.Public().(ed25519.PublicKey), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(d)})
	if err != nil {
		c.t.Fatalf("enroll %s: %v", id, err)
	}
	return identity, string(cert)
}

// Revoke revokes every certificate of the given nodes issued so far, as
// `oakmeet enroll --revoke` does, and hands the new list to the control
// plane.
func (c *Cluster) Revoke(ids ...string) {
	c.t.Helper()
	now := time.Now()
	for _, id := range ids {
		// A node revoked again is revoked up to now.
		c.revoked = slices.DeleteFunc(c.revoked, func(r nodecert.Revocation) bool { return r.NodeID == id })
		c.revoked = append(c.revoked, nodecert.Revocation{NodeID: id, At: now})
	}
	c.revSeq++
	list, err := nodecert.IssueRevocation(c.enroll, nodecert.Revocations{Seq: c.revSeq, IssuedAt: now, Entries: c.revoked})
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.revocations = list // read by each new leader under WithReplicas
	c.mu.Unlock()
	if srv := c.LeaderServer(); srv != nil {
		if err := srv.SetRevocations(context.Background(), list); err != nil {
			c.t.Fatal(err)
		}
	}
}

// NATS is the cluster's NATS server, for tests that attack it.
func (c *Cluster) NATS() *bus.Embedded { return c.emb }

// StopNode stops a node cleanly (it deregisters and its heartbeats end).
func (c *Cluster) StopNode(id string) {
	if stop, ok := c.nodes[id]; ok {
		stop()
		delete(c.nodes, id)
	}
}

// RestartControl stops the control plane and its NATS server and starts
// them again on the same data directory.
func (c *Cluster) RestartControl() {
	c.shutdown()
	c.startControl()
}

// shutdown stops the nodes, then the control plane and NATS.
func (c *Cluster) shutdown() {
	for id := range c.nodes {
		c.StopNode(id)
	}
	c.closeHTTP()
	c.stop()
	c.wg.Wait()
	c.stopNATS()
}

// WaitHealthy waits until exactly n nodes are healthy.
func (c *Cluster) WaitHealthy(n int) {
	WaitFor(c.t, 10*time.Second, fmt.Sprintf("%d healthy nodes", n), func() bool {
		nodes, err := c.API.Nodes(context.Background())
		if err != nil {
			return false
		}
		healthy := 0
		for _, v := range nodes {
			if v.Healthy {
				healthy++
			}
		}
		return healthy == n
	})
}

// WaitFor polls cond until it holds or d passes.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

// Created is the answer to creating a meeting.
type Created = api.CreatedMeeting

// CreateMeeting creates a meeting with policy p and a host key of its own
// (apiclient.CreateHosted), and keeps its join secret and host for Join,
// Secret and Host.
func (c *Cluster) CreateMeeting(p policy.Policy) api.CreatedMeeting {
	c.t.Helper()
	m, h, err := c.API.CreateHosted(context.Background(), api.CreateRequest{Title: "t", Policy: p})
	if err != nil {
		c.t.Fatalf("create meeting: %v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.secrets[m.ID], c.hosts[m.ID] = m.JoinSecret, h
	return m
}

// serveAPI serves hs as the cluster's API, where c.URL, c.API and every
// host's client point.
func (c *Cluster) serveAPI(hs *httpserve.Server, what string) {
	c.http = hs
	c.wg.Go(func() {
		if err := hs.Serve(); err != nil {
			c.t.Errorf("%s: %v", what, err)
		}
	})
	c.URL = hs.URL()
	c.API = apiclient.New(c.URL, c.HTTPClient()).WithBearer(c.operator)
	c.mu.Lock()
	for _, h := range c.hosts {
		h.Client = c.API
	}
	c.mu.Unlock()
}

// Secret is the join secret of a meeting CreateMeeting made ("" for any
// other).
func (c *Cluster) Secret(id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.secrets[id]
}

// Host is the host of a meeting CreateMeeting made (nil for any other):
// its host token and key, speaking to the control plane as API does.
func (c *Cluster) Host(id string) *apiclient.Host {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hosts[id]
}

// OperatorToken is the deployment's operator token, which API and Get
// send.
func (c *Cluster) OperatorToken() string { return c.operator }

// Join joins meeting id with a location hint and the meeting's secret,
// waiting in the lobby (up to 30 s) if the meeting has one. A refusal is
// returned as the *api.Error with its status (nil when placed); anything
// else that keeps the answer away fails the test.
func (c *Cluster) Join(id, country string) (api.JoinResponse, *api.Error, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	jr, err := c.API.Join(ctx, id, api.JoinRequest{Name: "n-" + country, Location: api.Hint{Country: country}, Secret: c.Secret(id)})
	if err == nil {
		return jr, nil, http.StatusOK
	}
	var ae *api.Error
	if !errors.As(err, &ae) {
		c.t.Fatalf("join meeting %s: %v", id, err)
	}
	return api.JoinResponse{}, ae, ae.Status
}
