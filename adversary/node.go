package adversary

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/node"
	"github.com/oakmeet/oakmeet/testcluster"
)

// NodeSpec is a node to start with Node, and what to make it say.
type NodeSpec struct {
	ID, Country, Region string
	// Identity and Cert, when set, replace the enrollment the cluster
	// would make for the node (testcluster.Enroll, valid an hour): a test
	// gives a node a certificate of its choosing, for another identity
	// key, say.
	Identity ed25519.PrivateKey
	Cert     string
}

// Node is a real media node of a test cluster whose log the test reads.
type Node struct {
	ID string
	// URL is the node's signaling address (ws://…/ws).
	URL string
	// Log is everything the node logged.
	Log *Log
	// Identity and Cert are what the node runs with.
	Identity ed25519.PrivateKey
	Cert     string
}

// StartNode starts a node in cluster c, as c.StartNode does, with its log
// kept in the returned Node; it stops when the test ends. Like a node
// started without a pinned token key, it takes the control plane's token
// key from the store.
func StartNode(t testing.TB, c *testcluster.Cluster, spec NodeSpec) *Node {
	t.Helper()
	nc, err := c.NATS().ConnectNode(spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	identity, cert := spec.Identity, spec.Cert
	if cert == "" {
		identity, cert = c.Enroll(spec.ID, spec.Country, spec.Region, time.Hour)
	}
	n := &Node{ID: spec.ID, Log: NewLog(), Identity: identity, Cert: cert}
	nd, err := node.New(context.Background(), node.Config{
		ID: spec.ID, Country: spec.Country, Region: spec.Region, NATS: nc, Logger: n.Log.Logger(),
		Listen: "127.0.0.1:0", LoopbackOnly: true, TURNPort: -1, Timing: c.Timing,
		IdentityKey: identity, Cert: cert,
	})
	if err != nil {
		t.Fatalf("node %s: %v", spec.ID, err)
	}
	n.URL = nd.Info().URL
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := nd.Run(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("node %s: %v", spec.ID, err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		nc.Close()
	})
	return n
}

// Connected reports whether the node saw participant connect.
func (n *Node) Connected(participant string) bool {
	return n.Log.Has("participant connected", "participant", participant)
}
