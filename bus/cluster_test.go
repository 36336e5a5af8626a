package bus

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/natsauth"
)

func loopbackPorts(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		out = append(out, "127.0.0.1:"+strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	return out
}

type member struct {
	auth *natsauth.Deployment
	tls  *tls.Config
}

// startCluster starts one server per member, all routing to every
// member's route address.
func startCluster(t *testing.T, members []member) []*Embedded {
	t.Helper()
	addrs := loopbackPorts(t, len(members))
	var routes []string
	for _, a := range addrs {
		routes = append(routes, "nats-route://"+a)
	}
	var out []*Embedded
	for i, m := range members {
		e, err := Embed(EmbedConfig{StoreDir: t.TempDir(), Auth: m.auth,
			Cluster: &ClusterConfig{Name: "c", ServerName: fmt.Sprintf("s%d", i), Listen: addrs[i], Routes: routes, TLS: m.tls}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Shutdown)
		out = append(out, e)
	}
	return out
}

func waitRoutes(t *testing.T, e *Embedded, want int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for e.srv.NumRoutes() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%d routes, want %d", e.srv.NumRoutes(), want)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

// Routes come up between the servers of one deployment only: a server with
// another deployment's keys, pointed at them, is never admitted, and a
// message crosses between the two that are.
func TestClusterAdmitsOnlyItsDeploymentsServers(t *testing.T) {
	mine, err := natsauth.New()
	if err != nil {
		t.Fatal(err)
	}
	other, err := natsauth.New()
	if err != nil {
		t.Fatal(err)
	}
	s := startCluster(t, []member{{auth: mine}, {auth: mine}, {auth: other}})
	waitRoutes(t, s[0], 1)
	waitRoutes(t, s[1], 1)
	assertCrosses(t, s[0], s[1])
	// Give the stranger's route attempts time to have happened (it
	// retries every second): it never keeps a route. A route is counted
	// for the moment between its connection and the refusal of its
	// credentials, so only one seen twice, 100 ms apart, was admitted.
	deadline := time.Now().Add(2500 * time.Millisecond)
	seen := 0
	for time.Now().Before(deadline) {
		if n := s[2].srv.NumRoutes(); n != 0 {
			if seen++; seen > 1 {
				t.Fatalf("a server of another deployment has %d routes", n)
			}
		} else {
			seen = 0
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not synchronisation
	}
}

// With route TLS, only servers the deployment's CA certified join: one
// whose certificate another CA signed does not, even with the right keys.
func TestClusterRouteTLSNeedsTheDeploymentsCA(t *testing.T) {
	auth, err := natsauth.New()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := natsauth.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := natsauth.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	routeTLS := func(ca *natsauth.CA) *tls.Config {
		cfg, err := ca.RouteTLS("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	s := startCluster(t, []member{{auth, routeTLS(ca)}, {auth, routeTLS(ca)}, {auth, routeTLS(otherCA)}})
	waitRoutes(t, s[0], 1)
	waitRoutes(t, s[1], 1)
	assertCrosses(t, s[0], s[1])
	deadline := time.Now().Add(2500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if n := s[2].srv.NumRoutes(); n != 0 {
			t.Fatalf("a server certified by another CA has %d routes", n)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
}

// assertCrosses sends a node's heartbeat on a and waits for it on b.
func assertCrosses(t *testing.T, a, b *Embedded) {
	t.Helper()
	ctl, err := b.ConnectControl("ctl")
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	sub, err := ctl.SubscribeSync(cluster.SubjectHeartbeat("*"))
	if err != nil {
		t.Fatal(err)
	}
	_ = ctl.Flush()
	nc, err := a.ConnectNode("n1")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// Interest crosses the route a moment after the subscription.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_ = nc.Publish(cluster.SubjectHeartbeat("n1"), []byte("hi"))
		if m, err := sub.NextMsg(100 * time.Millisecond); err == nil && string(m.Data) == "hi" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a heartbeat on one server never reached the other")
		}
	}
}

func TestEmbedClusterRejectsBadConfig(t *testing.T) {
	ok := ClusterConfig{Name: "c", ServerName: "s1", Listen: "127.0.0.1:0", Routes: []string{"nats-route://127.0.0.1:6222"}}
	for _, tc := range []struct {
		what string
		edit func(*ClusterConfig)
		want string
	}{
		{"no cluster name", func(c *ClusterConfig) { c.Name = "" }, "cluster name"},
		{"no server name", func(c *ClusterConfig) { c.ServerName = "" }, "server name"},
		{"a dot in the name", func(c *ClusterConfig) { c.ServerName = "a.b" }, "may not contain"},
		{"no routes", func(c *ClusterConfig) { c.Routes = nil }, "routes"},
		{"no listen", func(c *ClusterConfig) { c.Listen = "" }, "listen"},
		{"bad listen", func(c *ClusterConfig) { c.Listen = "nonsense" }, "listen"},
		{"wrong scheme", func(c *ClusterConfig) { c.Routes = []string{"nats://127.0.0.1:6222"} }, "nats-route://"},
		{"no port", func(c *ClusterConfig) { c.Routes = []string{"nats-route://127.0.0.1"} }, "nats-route://"},
		{"credentials", func(c *ClusterConfig) { c.Routes = []string{"nats-route://u:p@127.0.0.1:6222"} }, "no credentials"},
		{"listen beyond loopback", func(c *ClusterConfig) { c.Listen = "0.0.0.0:0" }, "require TLS"},
		{"route beyond loopback", func(c *ClusterConfig) { c.Routes = []string{"nats-route://10.1.2.3:6222"} }, "require TLS"},
	} {
		cc := ok
		tc.edit(&cc)
		_, err := Embed(EmbedConfig{StoreDir: t.TempDir(), Cluster: &cc})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %q", tc.what, err, tc.want)
		}
	}
}

// Connect takes every server of a cluster, and refuses a list it cannot
// read.
func TestConnectSeveralURLs(t *testing.T) {
	e, err := Embed(EmbedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	creds, _ := e.Auth().ControlCreds()
	nc, err := Connect("nats://127.0.0.1:1, "+e.URL(), "x", Creds(creds))
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	for _, bad := range []string{"", " , ", "nats://%zz", "nats://"} {
		if _, err := Connect(bad, "x", Creds(creds)); err == nil {
			t.Errorf("url list %q accepted", bad)
		}
	}
}

// A server list or a route list never panics, and what is accepted names
// a host.
func FuzzServerAndRouteLists(f *testing.F) {
	for _, s := range []string{"nats://127.0.0.1:4222", "nats://a:1, tls://b:2", "", ",", "nats-route://127.0.0.1:6222",
		"nats-route://u:p@h:1", "nats://[::1]:4222", "%", "nats://h:1,,nats://", "nats-route://10.0.0.1:6222"} {
		f.Add(s)
	}
	auth, err := natsauth.New()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, list string) {
		if urls, err := splitURLs(list); err == nil {
			for _, u := range urls {
				if u.Hostname() == "" {
					t.Fatalf("%q: accepted %v without a host", list, u)
				}
			}
		}
		var opts server.Options
		cc := &ClusterConfig{Name: "c", ServerName: "s", Listen: "127.0.0.1:0", Routes: strings.Split(list, ",")}
		if err := clusterOptions(&opts, cc, auth); err == nil {
			for _, r := range opts.Routes {
				if r.Scheme != "nats-route" || r.Hostname() == "" || r.User == nil || !isLoopback(r.Hostname()) {
					t.Fatalf("%q: accepted route %v", list, r)
				}
			}
		}
	})
}

// The meta leader hands its leadership over on request; a member that is
// not the leader has nothing to hand.
func TestStepDownMeta(t *testing.T) {
	auth, err := natsauth.New()
	if err != nil {
		t.Fatal(err)
	}
	s := startCluster(t, []member{{auth: auth}, {auth: auth}, {auth: auth}})
	leader := func() int {
		deadline := time.Now().Add(30 * time.Second)
		for {
			for i, e := range s {
				if e.JetStreamLeader() {
					return i
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("no meta leader")
			}
			time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
		}
	}
	l := leader()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s[(l+1)%3].StepDownMeta(ctx); err != nil {
		t.Fatalf("a follower's step-down: %v", err)
	}
	if err := s[l].StepDownMeta(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for leader() == l {
		if time.Now().After(deadline) {
			t.Fatal("the meta leader kept its leadership")
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}
