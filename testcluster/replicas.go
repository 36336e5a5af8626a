package testcluster

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/control"
	"github.com/oakmeet/oakmeet/httpserve"
	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/replica"
	"github.com/oakmeet/oakmeet/store"
)

// ReplicaTiming is the lease and forwarding clocks of the replicas under
// WithReplicas: a lease short enough that a takeover plays out in well
// under a second, long enough that a busy machine running -race does not
// lose a leader that is alive.
type ReplicaTiming struct {
	LeaseTTL, ForwardWait, KeepAlive, ForwardTimeout time.Duration
}

func defaultReplicaTiming() ReplicaTiming {
	return ReplicaTiming{LeaseTTL: 500 * time.Millisecond, ForwardWait: 5 * time.Second,
		KeepAlive: 200 * time.Millisecond, ForwardTimeout: time.Second}
}

// WithReplicas runs the control plane as n replicas (package replica), as n
// `oakmeet serve` processes on one NATS would: each has its own NATS
// identity (natsauth ReplicaCreds) and connection given every NATS
// server's URL, and its own HTTP listener (ReplicaURL). URL is a
// round-robin balancer in front of them that skips a replica whose
// connection is refused, as a deployment's balancer does; API speaks to
// it and retries while there is no leader. Srv is the leader's control
// plane at Start; LeaderServer is the one leading now, and Revoke hands
// its list to it. RestartControl stops and starts every replica;
// RestartControlAfter, which edits the store of a single embedded NATS
// server, is not for replicas.
func WithReplicas(n int) Option {
	return func(c *Cluster) {
		if n < 1 {
			c.t.Fatalf("WithReplicas(%d): want at least one replica", n)
		}
		c.reps.n = n
		if c.reps.timing == (ReplicaTiming{}) {
			c.reps.timing = defaultReplicaTiming()
		}
	}
}

// WithReplicaTiming runs the replicas of WithReplicas on t.
func WithReplicaTiming(t ReplicaTiming) Option { return func(c *Cluster) { c.reps.timing = t } }

// replicaState is the cluster's replicas under WithReplicas. Its fields
// are set up by Start and changed by KillReplica and RestartReplica, all
// on the test's goroutine; the balancer reads the backends' URLs, which
// never change.
type replicaState struct {
	n      int
	timing ReplicaTiming
	ports  []int // each replica's HTTP port, kept across restarts
	reps   []*runningReplica
	dying  []*runningReplica // killed, still winding down
	lb     *balancer
}

// runningReplica is one replica with what it runs on; nil fields once
// killed.
type runningReplica struct {
	id string
	// cur is the replica running now: a new one after it exited on its
	// own (it could not lead).
	cur      atomic.Pointer[replica.Replica]
	restarts atomic.Int32
	nc       *nats.Conn
	hs       *httpserve.Server
	cancel   context.CancelFunc
	done     chan struct{}
}

// startReplicas is startControl under WithReplicas.
func (c *Cluster) startReplicas() {
	t := c.t
	c.startNATS()
	// The test's own connection, for Store: a replica's store lives and
	// dies with its leadership.
	nc := c.connectControl()
	c.openStore(nc)
	if c.reps.ports == nil {
		c.reps.ports = freePorts(t, c.reps.n)
	}
	c.reps.reps = make([]*runningReplica, c.reps.n)
	backends := make([]*url.URL, c.reps.n)
	for i := range c.reps.n {
		c.startReplica(i)
		u, err := url.Parse(c.reps.reps[i].hs.URL())
		if err != nil {
			t.Fatal(err)
		}
		backends[i] = u
	}
	serverTLS, _ := c.nodeTLS()
	tr, _ := c.HTTPClient().Transport.(*http.Transport) // nil: the default
	lb := newBalancer(backends, tr, c.logWriter())
	hs, err := httpserve.Listen("127.0.0.1:0", httpserve.Config{Handler: lb, TLS: serverTLS, Logger: c.logger()})
	if err != nil {
		t.Fatal(err)
	}
	c.reps.lb = lb
	c.serveAPI(hs, "balancer http")
	c.stop = func() {
		c.stopReplicas()
		nc.Close()
	}
	WaitFor(t, 30*time.Second, "a control-plane leader", func() bool { return c.Leader() >= 0 })
	// Up means every replica has seen the lease: a replica whose watch of
	// a lease bucket created a moment before has not delivered yet would
	// only take over once its watch recovers (seconds).
	WaitFor(t, 30*time.Second, "every replica knowing the leader", func() bool {
		for _, rr := range c.reps.reps {
			if rr.cur.Load().Status().Leader == "" {
				return false
			}
		}
		return true
	})
	c.Srv = c.LeaderServer()
	WaitFor(t, 10*time.Second, "control ready", func() bool {
		_, err := c.API.Health(context.Background())
		return err == nil
	})
}

// replicaID is replica i's name, the same across restarts.
func replicaID(i int) string { return "r" + strconv.Itoa(i) }

// startReplica starts replica i on its port.
func (c *Cluster) startReplica(i int) {
	t := c.t
	id := replicaID(i)
	creds, err := c.auth.ReplicaCreds(id)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := bus.Connect(c.natsURL(), "oakmeet-control-"+id, bus.Creds(creds))
	if err != nil {
		t.Fatal(err)
	}
	tm := c.reps.timing
	log := c.logger().With("replica", id)
	cfg := replica.Config{ID: id, NATS: nc, Key: c.key, Replicas: c.NATSServers(),
		LeaseTTL: tm.LeaseTTL, ForwardWait: tm.ForwardWait, KeepAlive: tm.KeepAlive, ForwardTimeout: tm.ForwardTimeout,
		// As serve does on a NATS cluster: a new leader hears every live
		// node's heartbeat before it places anyone.
		Settle: c.Timing.HeartbeatInterval * 3 / 2,
		Logger: log,
		New:    func(ctx context.Context) (*control.Server, error) { return c.newControl(ctx, nc) },
	}
	r, err := replica.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rr := &runningReplica{id: id, nc: nc, cancel: cancel, done: make(chan struct{})}
	rr.cur.Store(r)
	serverTLS, _ := c.nodeTLS()
	hs, err := httpserve.Listen(net.JoinHostPort("127.0.0.1", strconv.Itoa(c.reps.ports[i])),
		httpserve.Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			rr.cur.Load().Handler().ServeHTTP(w, req)
		}), TLS: serverTLS, Logger: log})
	if err != nil {
		t.Fatalf("replica %s: %v", id, err)
	}
	rr.hs = hs
	c.reps.reps[i] = rr
	go func() { _ = hs.Serve() }()
	go func() {
		defer close(rr.done)
		for {
			err := rr.cur.Load().Run(ctx)
			// A killed replica's Run ends on its closed connection; that
			// is the kill, not a failure.
			if ctx.Err() != nil || nc.IsClosed() {
				return
			}
			// A replica whose control plane could not start when it won
			// the lease gives the lease up and exits, and its process is
			// started again by whatever supervises it: so here.
			c.logWarn("replica exited; starting it again, as its supervisor would", "replica", id, "err", err)
			rr.restarts.Add(1)
			select {
			case <-ctx.Done():
				return
			case <-time.After(tm.LeaseTTL / 4):
			}
			next, err := replica.New(cfg)
			if err != nil {
				t.Errorf("replica %s: %v", id, err)
				return
			}
			rr.cur.Store(next)
		}
	}()
}

// logWarn says something into the test's log (which shows only when the
// test fails).
func (c *Cluster) logWarn(msg string, args ...any) { c.logger().Warn(msg, args...) }

// newControl builds a control plane as startControl does, for a replica's
// election, on the replica's connection.
func (c *Cluster) newControl(ctx context.Context, nc *nats.Conn) (*control.Server, error) {
	st, err := store.OpenWith(ctx, nc, store.Options{Replicas: c.NATSServers()})
	if err != nil {
		return nil, err
	}
	loc, err := locate.New(locate.Config{TrustClientHints: true, DisableBuiltin: true})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	revocations := c.revocations
	c.mu.Unlock()
	return control.New(ctx, control.Config{Store: st, NATS: nc, Locator: loc, Floor: c.floor, Key: c.key,
		EnrollmentKey: c.enroll.Public().(ed25519.PublicKey), Revocations: revocations, TrustClientLocation: true, Logger: c.logger(), Timing: c.Timing,
		OperatorToken: c.operator, LobbyWait: c.lobbyWait, Limits: c.limits})
}

// stopReplica stops replica i: cleanly (it steps down and deletes its
// lease), or abruptly, as a crash looks from outside: its listener and
// NATS connection go at once and nothing is said to the others.
func (c *Cluster) stopReplica(i int, abrupt bool) {
	rr := c.reps.reps[i]
	if rr == nil {
		return
	}
	c.reps.reps[i] = nil
	if abrupt {
		_ = rr.hs.Close()
		c.reps.lb.tr.base.CloseIdleConnections()
		rr.nc.Close() // before the cancel: the lease cannot be deleted
		rr.cancel()
		// What is left of it winds down on its own, as a dead process's
		// sockets do; the cluster's shutdown waits for it.
		c.reps.dying = append(c.reps.dying, rr)
		return
	}
	rr.cancel()
	rr.wait(c.t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = rr.hs.Shutdown(ctx)
	cancel()
	rr.nc.Close()
}

func (rr *runningReplica) wait(t testing.TB) {
	select {
	case <-rr.done:
	case <-time.After(20 * time.Second):
		t.Errorf("replica %s did not stop", rr.id)
	}
}

// stopReplicas stops every replica cleanly and at once, so that none
// takes over from another on the way down.
func (c *Cluster) stopReplicas() {
	running := slices.DeleteFunc(slices.Clone(c.reps.reps), func(rr *runningReplica) bool { return rr == nil })
	clear(c.reps.reps)
	for _, rr := range running {
		rr.cancel()
	}
	for _, rr := range c.reps.dying {
		rr.wait(c.t)
	}
	c.reps.dying = nil
	for _, rr := range running {
		rr.wait(c.t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = rr.hs.Shutdown(ctx)
		cancel()
		rr.nc.Close()
	}
}

// logWriter is where the test's log goes (nowhere once it has ended).
func (c *Cluster) logWriter() io.Writer {
	if c.log == nil {
		return io.Discard
	}
	return c.log
}

// Replicas is how many control-plane replicas the cluster runs (0 without
// WithReplicas).
func (c *Cluster) Replicas() int { return c.reps.n }

// ReplicaURL is replica i's own base URL (it stays the same across
// RestartReplica).
func (c *Cluster) ReplicaURL(i int) string {
	c.t.Helper()
	c.replicaIndex(i)
	return c.reps.lb.backends[i].String()
}

// Replica is replica i while it runs (nil once killed).
func (c *Cluster) Replica(i int) *replica.Replica {
	c.t.Helper()
	c.replicaIndex(i)
	if rr := c.reps.reps[i]; rr != nil {
		return rr.cur.Load()
	}
	return nil
}

func (c *Cluster) replicaIndex(i int) {
	c.t.Helper()
	if c.reps.n == 0 {
		c.t.Fatal("replica helpers need WithReplicas")
	}
	if i < 0 || i >= c.reps.n {
		c.t.Fatalf("replica %d: the cluster has %d", i, c.reps.n)
	}
}

// Leader is the index of the replica that leads with its control plane
// ready, or -1 while none (or, for a moment, more than one) does.
func (c *Cluster) Leader() int {
	leader := -1
	for i, rr := range c.reps.reps {
		if rr == nil {
			continue
		}
		if r := rr.cur.Load(); !r.Status().IsLeader || r.Server() == nil {
			continue
		}
		if leader >= 0 {
			return -1
		}
		leader = i
	}
	return leader
}

// WaitLeader waits up to d for a leader (Leader) and returns it.
func (c *Cluster) WaitLeader(d time.Duration) int {
	c.t.Helper()
	leader := -1
	WaitFor(c.t, d, "a control-plane leader", func() bool {
		leader = c.Leader()
		return leader >= 0
	})
	return leader
}

// LeaderServer is the control plane running now: the leader's under
// WithReplicas (nil while there is none), else Srv.
func (c *Cluster) LeaderServer() *control.Server {
	if c.reps.n == 0 {
		return c.Srv
	}
	if i := c.Leader(); i >= 0 {
		return c.reps.reps[i].cur.Load().Server()
	}
	return nil
}

// KillReplica stops replica i abruptly: no step-down, its lease left to
// expire, its listener and NATS connection gone (so the balancer skips
// it).
func (c *Cluster) KillReplica(i int) {
	c.t.Helper()
	c.replicaIndex(i)
	if c.reps.reps[i] == nil {
		c.t.Fatalf("replica %d is not running", i)
	}
	c.stopReplica(i, true)
}

// RestartReplica starts replica i again after KillReplica, with its id and
// port.
func (c *Cluster) RestartReplica(i int) {
	c.t.Helper()
	c.replicaIndex(i)
	if c.reps.reps[i] != nil {
		c.t.Fatalf("replica %d is running", i)
	}
	c.startReplica(i)
}

// balancer is a round-robin HTTP reverse proxy over the replicas: each
// request goes to the next one, or, if its connection is refused, to the
// one after (a request nobody received is safe to send again).
type balancer struct {
	backends []*url.URL
	next     atomic.Uint64
	proxy    *httputil.ReverseProxy
	tr       *failoverTransport
	// Sent counts requests by backend, for tests and benchmarks.
	mu   sync.Mutex
	sent []int
}

func newBalancer(backends []*url.URL, client *http.Transport, errLog io.Writer) *balancer {
	// A transport of its own, so that a killed replica's idle connections
	// can be dropped without touching anyone else's.
	base := http.DefaultTransport.(*http.Transport).Clone()
	if client != nil {
		base = client.Clone()
	}
	base.MaxIdleConnsPerHost = 64 // a connection per request in flight, not a new one per request
	b := &balancer{backends: backends, sent: make([]int, len(backends))}
	b.tr = &failoverTransport{b: b, base: base}
	b.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(backends[0]) // the scheme and path; the transport picks the host
			pr.SetXForwarded()
		},
		Transport:     b.tr,
		FlushInterval: -1, // audit watches and other streams pass at once
		ErrorLog:      log.New(errLog, "balancer: ", 0),
	}
	return b
}

func (b *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Body != nil && r.Body != http.NoBody {
		// Bodies are small API requests; kept so a refused connection
		// can be followed by a try on the next replica.
		data, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
		if err != nil {
			http.Error(w, "balancer: "+err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(data))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	}
	b.proxy.ServeHTTP(w, r)
}

type failoverTransport struct {
	b    *balancer
	base *http.Transport
}

func (f *failoverTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	b := f.b
	start := int(b.next.Add(1) % uint64(len(b.backends)))
	var lastErr error
	for k := range b.backends {
		i := (start + k) % len(b.backends)
		r := req.Clone(req.Context())
		r.URL.Scheme, r.URL.Host, r.Host = b.backends[i].Scheme, b.backends[i].Host, ""
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			r.Body = body
		}
		resp, err := f.base.RoundTrip(r)
		if err == nil {
			b.mu.Lock()
			b.sent[i]++
			b.mu.Unlock()
			return resp, nil
		}
		lastErr = err
		if !refused(err) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("balancer: every replica refused the connection: %w", lastErr)
}

// refused says whether err is a connection nobody accepted, so the
// request never reached a replica.
func refused(err error) bool {
	var op *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &op) && op.Op == "dial"
}

// ReplicaRestarts is how many times replica i exited on its own (its
// control plane could not start when it won the lease) and was started
// again, since Start or its RestartReplica.
func (c *Cluster) ReplicaRestarts(i int) int {
	c.t.Helper()
	c.replicaIndex(i)
	if rr := c.reps.reps[i]; rr != nil {
		return int(rr.restarts.Load())
	}
	return 0
}

// BalancedRequests is how many requests the balancer has sent to each
// replica.
func (c *Cluster) BalancedRequests() []int {
	c.t.Helper()
	c.replicaIndex(0)
	b := c.reps.lb
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int(nil), b.sent...)
}

// NATSStreamLeaderNow is the index of the running server leading stream
// name at this moment, or -1: for a test to say, when something stalls,
// which of the control plane's streams had no leader.
func (c *Cluster) NATSStreamLeaderNow(name string) int {
	for i, m := range c.natsc.members {
		if m.emb != nil && m.emb.LeadsStream(name) {
			return i
		}
	}
	return -1
}
