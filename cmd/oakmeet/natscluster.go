package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/natsauth"
)

// natsClusterFlags are serve's flags that make its embedded NATS one member
// of a NATS cluster, and give every bucket and stream JetStream replicas.
type natsClusterFlags struct {
	name, listen, routes, serverName *string
	replicas                         *int
}

// clusterStartTimeout bounds how long serve waits for its store: members of
// a NATS cluster may be started minutes apart by hand.
const clusterStartTimeout = 2 * time.Minute

// defaultClusterReplicas is --js-replicas with --nats-cluster: a 3-server
// cluster loses nothing to one server's death.
const defaultClusterReplicas = 3

func addNATSClusterFlags(fs *flag.FlagSet) natsClusterFlags {
	return natsClusterFlags{
		name:       fs.String("nats-cluster", "", "make the embedded NATS a member of this NATS cluster (the same name on every member), JetStream clustered across them"),
		listen:     fs.String("nats-cluster-listen", "127.0.0.1:6222", "with --nats-cluster: host:port of the route listener other members dial; beyond loopback routes use TLS from the deployment's CA"),
		routes:     fs.String("nats-routes", "", "with --nats-cluster: every member's route URL, this one's too, comma-separated (nats-route://host:port,...)"),
		serverName: fs.String("nats-server-name", "", "with --nats-cluster: this member's name, unique and the same across restarts (default: <host name>-<route port>); it also names this replica's NATS user"),
		replicas: fs.Int("js-replicas", 0, fmt.Sprintf("JetStream replicas of every bucket and stream (default 1; %d with --nats-cluster); more than 1 needs a clustered NATS with that many servers",
			defaultClusterReplicas)),
	}
}

// settings checks the flags against the rest of serve's: the cluster
// membership (nil without --nats-cluster) and the replicas.
func (f natsClusterFlags) settings(natsURL string) (*bus.ClusterConfig, int, error) {
	replicas := *f.replicas
	if replicas < 0 || replicas > 5 {
		return nil, 0, fmt.Errorf("--js-replicas %d: want 1 to 5", replicas)
	}
	if *f.name == "" {
		if *f.routes != "" || *f.serverName != "" {
			return nil, 0, errors.New("--nats-routes and --nats-server-name need --nats-cluster")
		}
		if replicas > 1 && natsURL == "" {
			return nil, 0, fmt.Errorf("--js-replicas %d: the embedded NATS is one server; add --nats-cluster (or use --nats with a clustered NATS)", replicas)
		}
		return nil, max(replicas, 1), nil
	}
	if natsURL != "" {
		return nil, 0, errors.New("--nats-cluster is for the embedded NATS; with --nats the cluster is configured in NATS itself")
	}
	routes := splitList(*f.routes)
	if len(routes) == 0 {
		return nil, 0, errors.New("--nats-cluster needs --nats-routes: JetStream elects its leader among the members it is told of")
	}
	if replicas == 0 {
		replicas = defaultClusterReplicas
	}
	cc := &bus.ClusterConfig{Name: *f.name, ServerName: *f.serverName, Listen: *f.listen, Routes: routes}
	if cc.ServerName == "" {
		var err error
		if cc.ServerName, err = defaultServerName(cc.Listen); err != nil {
			return nil, 0, err
		}
	}
	if err := natsauth.ValidReplicaName(cc.ServerName); err != nil {
		return nil, 0, fmt.Errorf("--nats-server-name: %w", err)
	}
	return cc, replicas, nil
}

// defaultServerName is the host's name and the route port: stable across
// restarts, and distinct for members on one machine.
func defaultServerName(listen string) (string, error) {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("--nats-cluster-listen %q: %w", listen, err)
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "oakmeet"
	}
	host, _, _ = strings.Cut(host, ".")
	name := strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') {
			return r
		}
		return '-'
	}, host)
	return fmt.Sprintf("%.50s-%s", name, port), nil
}

// routeTLS is the route TLS of a member whose routes leave this machine: a
// certificate from the deployment's CA, which every member shares (oakmeet
// replica init copies it), for the route listener's host. Nil when every
// route stays on loopback.
func routeTLS(dataDir string, cc *bus.ClusterConfig) (*tls.Config, error) {
	host, _, err := net.SplitHostPort(cc.Listen)
	if err != nil {
		return nil, nil // a bad address bus.Embed explains
	}
	beyond := !loopbackHost(host)
	for _, r := range cc.Routes {
		if u, err := url.Parse(r); err == nil && !loopbackHost(u.Hostname()) {
			beyond = true
		}
	}
	if !beyond {
		return nil, nil
	}
	ca, err := natsauth.LoadOrCreateCA(natsDir(dataDir))
	if err != nil {
		return nil, err
	}
	return ca.RouteTLS(host, "127.0.0.1", "localhost")
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
