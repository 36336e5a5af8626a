package natsauth_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/natsauth"
	"github.com/oakmeet/oakmeet/store"
)

// A nats-server configured from the deployment's ServerConfig, as
// docs/DEPLOY.md tells an operator of an existing cluster to, takes the
// control plane's credentials and refuses a connection without any.
func TestExternalServerFromTheDeploymentsConfig(t *testing.T) {
	d, err := natsauth.New()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "nats-server.conf")
	body := "listen: 127.0.0.1:-1\njetstream: {store_dir: " + filepath.Join(dir, "js") + "}\n" + d.ServerConfig()
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("the printed configuration does not parse: %v", err)
	}
	opts.NoLog, opts.NoSigs = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	if nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("anonymous connection to the external server accepted")
	}
	creds, err := d.ControlCreds()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := bus.Connect(srv.ClientURL(), "control", bus.Creds(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := store.Open(ctx, nc); err != nil {
		t.Fatalf("control plane cannot open its store on the external server: %v", err)
	}
}
