package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
)

// syncBuffer is an output a running command writes while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs a command until the test ends.
func start(t *testing.T, args ...string) *syncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx, args, out, out)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return out
}

func waitNode(t *testing.T, c *apiclient.Client, out *syncBuffer, what string, cond func(api.Node) bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(15 * time.Second)
	for {
		nodes, err := c.Nodes(context.Background())
		if err == nil && slices.ContainsFunc(nodes, cond) {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v %v\n%s", what, nodes, err, out.String())
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
}

// The deployment as the README sets it up: serve, enroll a node, start it
// from its enrollment; its certificate is trusted, and revoking it takes it
// out of use within 5 s. serve's own in-process nodes are enrolled too.
func TestServeTrustsEnrolledNodesUntilRevoked(t *testing.T) {
	data := t.TempDir()
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	serveOut := start(t, "serve", "--data", data, "--listen", httpAddr, "--nats-listen", natsAddr, "--nodes", "1", "--log-level", "warn")
	c := apiclient.New("http://"+httpAddr, nil)
	waitNode(t, c, serveOut, "the in-process node certified", func(n api.Node) bool { return n.Healthy && n.Certified })

	out := filepath.Join(t.TempDir(), "jp")
	if code, _, errOut := runCmd("enroll", "--data", data, "--id", "jp-1", "--country", "JP", "--out", out); code != 0 {
		t.Fatal(errOut)
	}
	nodeOut := start(t, "node", "--enrollment", out, "--nats", "nats://"+natsAddr, "--loopback", "--turn-port", "-1", "--log-level", "warn")
	waitNode(t, c, nodeOut, "jp-1 certified", func(n api.Node) bool { return n.ID == "jp-1" && n.Healthy && n.Certified })

	if code, _, errOut := runCmd("enroll", "--data", data, "--revoke", "jp-1"); code != 0 {
		t.Fatal(errOut)
	}
	d := waitNode(t, c, serveOut, "jp-1 revoked", func(n api.Node) bool {
		return n.ID == "jp-1" && !n.Certified && strings.Contains(n.CertError, "revoked")
	})
	if d > 5*time.Second {
		t.Fatalf("revocation took %s", d)
	}
}
