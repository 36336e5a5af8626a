package testcluster

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/store"
)

// WithNATSCluster runs the cluster on n embedded NATS servers clustered on
// loopback instead of one, with every bucket and stream kept by n JetStream
// replicas. The control plane and every node are given all n servers'
// URLs, so they move to another when theirs goes away (KillNATSServer).
func WithNATSCluster(n int) Option {
	return func(c *Cluster) {
		if n < 1 {
			c.t.Fatalf("WithNATSCluster(%d): want at least one server", n)
		}
		c.natsc.n = n
	}
}

// natsState is the cluster's NATS beyond its first server (Cluster.emb):
// under WithNATSCluster, every member; and the store the control plane
// runs on.
type natsState struct {
	n       int // servers under WithNATSCluster, else 0
	members []*natsMember
	st      *store.Store
}

// natsMember is one server of a clustered NATS: where it listens stays the
// same across RestartNATSServer, as a real server's configuration does.
type natsMember struct {
	name              string
	clientPort, route int
	emb               *bus.Embedded // nil while killed
}

func (m *natsMember) clientURL() string {
	return "nats://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(m.clientPort))
}

func (m *natsMember) routeURL() string {
	return "nats-route://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(m.route))
}

// NATSServers is how many NATS servers the cluster runs on: 1 unless
// WithNATSCluster.
func (c *Cluster) NATSServers() int {
	if c.natsc.n == 0 {
		return 1
	}
	return c.natsc.n
}

// KillNATSServer shuts server i (0 ≤ i < NATSServers()) down at once:
// its connections drop and its clients reconnect to the others. NATS()
// is then another running server.
func (c *Cluster) KillNATSServer(i int) {
	c.t.Helper()
	m := c.natsMember(i)
	if m.emb == nil {
		c.t.Fatalf("NATS server %d is not running", i)
	}
	m.emb.Shutdown()
	m.emb = nil
	c.pickNATS()
}

// pickNATS makes the first running member the one NATS() returns.
func (c *Cluster) pickNATS() {
	for _, o := range c.natsc.members {
		if o.emb != nil {
			c.emb = o.emb
			return
		}
	}
}

// RestartNATSServer starts server i again, on its ports and store, after
// KillNATSServer.
func (c *Cluster) RestartNATSServer(i int) {
	c.t.Helper()
	m := c.natsMember(i)
	if m.emb != nil {
		c.t.Fatalf("NATS server %d is running", i)
	}
	c.embedMember(i)
	c.pickNATS()
}

func (c *Cluster) natsMember(i int) *natsMember {
	c.t.Helper()
	if c.natsc.n == 0 {
		c.t.Fatal("KillNATSServer and RestartNATSServer need WithNATSCluster")
	}
	if i < 0 || i >= len(c.natsc.members) {
		c.t.Fatalf("NATS server %d: the cluster has %d", i, len(c.natsc.members))
	}
	return c.natsc.members[i]
}

// startNATS starts the cluster's NATS: one embedded server, or under
// WithNATSCluster every member of the NATS cluster.
func (c *Cluster) startNATS() {
	t := c.t
	if c.natsc.n == 0 {
		emb, err := bus.Embed(bus.EmbedConfig{StoreDir: filepath.Join(c.dir, "jetstream"), Auth: c.auth})
		if err != nil {
			t.Fatal(err)
		}
		c.emb = emb
		return
	}
	if c.natsc.members == nil {
		// Ports are chosen once, so that a restarted server is where its
		// peers and clients look for it.
		ports := freePorts(t, 2*c.natsc.n)
		for i := range c.natsc.n {
			c.natsc.members = append(c.natsc.members, &natsMember{name: fmt.Sprintf("nats-%d", i), clientPort: ports[2*i], route: ports[2*i+1]})
		}
	}
	for i := range c.natsc.members {
		c.embedMember(i)
	}
	c.emb = c.natsc.members[0].emb
}

func (c *Cluster) embedMember(i int) {
	t := c.t
	m := c.natsc.members[i]
	routes := make([]string, 0, len(c.natsc.members))
	for _, o := range c.natsc.members {
		routes = append(routes, o.routeURL())
	}
	emb, err := bus.Embed(bus.EmbedConfig{
		StoreDir: filepath.Join(c.dir, "jetstream-"+m.name),
		Listen:   net.JoinHostPort("127.0.0.1", strconv.Itoa(m.clientPort)),
		Auth:     c.auth,
		Cluster: &bus.ClusterConfig{Name: "oakmeet-test", ServerName: m.name,
			Listen: net.JoinHostPort("127.0.0.1", strconv.Itoa(m.route)), Routes: routes},
		Logger: c.logger(),
	})
	if err != nil {
		t.Fatalf("NATS server %d: %v", i, err)
	}
	m.emb = emb
}

// freePorts finds n loopback ports free at the moment.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// natsURL is every server's client URL, comma-separated.
func (c *Cluster) natsURL() string {
	if c.natsc.n == 0 {
		return c.emb.URL()
	}
	urls := make([]string, 0, len(c.natsc.members))
	for _, m := range c.natsc.members {
		urls = append(urls, m.clientURL())
	}
	return strings.Join(urls, ",")
}

// connectControl connects as the control plane, to every server.
func (c *Cluster) connectControl() *nats.Conn {
	c.t.Helper()
	creds, err := c.auth.ControlCreds()
	if err != nil {
		c.t.Fatal(err)
	}
	nc, err := bus.Connect(c.natsURL(), "control", bus.Creds(creds))
	if err != nil {
		c.t.Fatal(err)
	}
	return nc
}

// connectNode connects as node id, to every server.
func (c *Cluster) connectNode(id string) *nats.Conn {
	c.t.Helper()
	creds, err := c.auth.NodeCreds(id, time.Time{})
	if err != nil {
		c.t.Fatal(err)
	}
	nc, err := bus.Connect(c.natsURL(), "oakmeet-node-"+id, bus.Creds(creds))
	if err != nil {
		c.t.Fatal(err)
	}
	return nc
}

// openStore opens the store with as many replicas as NATS servers; a
// cluster just started may still be electing its JetStream leader, which
// OpenWith waits for.
func (c *Cluster) openStore(nc *nats.Conn) *store.Store {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.OpenWith(ctx, nc, store.Options{Replicas: c.NATSServers()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.natsc.st = st
	return st
}

// Store is the store the control plane runs on, for tests that read or
// write its buckets themselves.
func (c *Cluster) Store() *store.Store { return c.natsc.st }

// NATSMetaLeader is the index of the server leading JetStream's meta
// group, waiting for the cluster to have one.
func (c *Cluster) NATSMetaLeader() int {
	c.t.Helper()
	leader := -1
	WaitFor(c.t, 30*time.Second, "a JetStream meta leader", func() bool {
		for i, m := range c.natsc.members {
			if m.emb != nil && m.emb.JetStreamLeader() {
				leader = i
				return true
			}
		}
		return false
	})
	return leader
}

// NATSStreamLeader is the index of the server leading the replicas of
// stream name, waiting for it to have one.
func (c *Cluster) NATSStreamLeader(name string) int {
	c.t.Helper()
	leader := -1
	WaitFor(c.t, 30*time.Second, "a leader of stream "+name, func() bool {
		for i, m := range c.natsc.members {
			if m.emb != nil && m.emb.LeadsStream(name) {
				leader = i
				return true
			}
		}
		return false
	})
	return leader
}

// NATSServerName is server i's name in the NATS cluster.
func (c *Cluster) NATSServerName(i int) string { return c.natsMember(i).name }

// NATSCurrent reports whether server i runs and its JetStream has caught
// up with the cluster's.
func (c *Cluster) NATSCurrent(i int) bool {
	m := c.natsMember(i)
	return m.emb != nil && m.emb.JetStreamReady()
}

// stopNATS shuts every running server down.
func (c *Cluster) stopNATS() {
	if c.natsc.n == 0 {
		c.emb.Shutdown()
		return
	}
	for _, m := range c.natsc.members {
		if m.emb != nil {
			m.emb.Shutdown()
			m.emb = nil
		}
	}
}
