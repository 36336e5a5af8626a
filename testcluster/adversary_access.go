package testcluster

import (
	"crypto/ed25519"

	"github.com/nats-io/nats.go"
)

// What a test that plays a compromised control plane needs of the
// cluster: its key, and its store while it is stopped.

// ControlKey is the control plane's private key, which signs join tokens,
// audit entries and the log's checkpoints.
func (c *Cluster) ControlKey() ed25519.PrivateKey { return c.key }

// RestartControlAfter stops the nodes and the control plane, as
// RestartControl does, but keeps NATS running while edit changes the
// store over a connection with the control plane's identity; then it
// starts the control plane again on the same data. Nothing writes to the
// store meanwhile, so the control plane starts from exactly what edit
// left. The nodes are the caller's to start again.
func (c *Cluster) RestartControlAfter(edit func(nc *nats.Conn) error) {
	c.t.Helper()
	for id := range c.nodes {
		c.StopNode(id)
	}
	c.closeHTTP()
	c.stop()
	c.wg.Wait()
	nc, err := c.emb.ConnectControl("store-edit")
	if err != nil {
		c.t.Fatal(err)
	}
	err = edit(nc)
	nc.Close()
	if err != nil {
		c.t.Fatalf("edit the stopped control plane's store: %v", err)
	}
	c.emb.Shutdown()
	c.startControl()
}
