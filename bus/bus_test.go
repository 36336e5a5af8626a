package bus

import (
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/cluster"
)

// A node's report reaches the control plane, each on its own identity.
func TestEmbedPublishSubscribe(t *testing.T) {
	e, err := Embed(EmbedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	ctl, err := e.ConnectControl("test")
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	nc, err := e.ConnectNode("n1")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := ctl.SubscribeSync(cluster.SubjectHeartbeat("*"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ctl.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(cluster.SubjectHeartbeat("n1"), []byte("hi")); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != "hi" {
		t.Fatalf("got %q", m.Data)
	}
}

func TestEmbedRejectsBadConfig(t *testing.T) {
	if _, err := Embed(EmbedConfig{}); err == nil {
		t.Fatal("no store dir accepted")
	}
	if _, err := Embed(EmbedConfig{StoreDir: t.TempDir(), Listen: "nonsense"}); err == nil {
		t.Fatal("bad listen address accepted")
	}
	if _, err := Embed(EmbedConfig{StoreDir: t.TempDir(), Listen: "0.0.0.0:0"}); err == nil {
		t.Fatal("a listener for other machines without TLS accepted")
	}
}

func TestConnectUnreachable(t *testing.T) {
	e, err := Embed(EmbedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	creds, err := e.Auth().ControlCreds()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Connect("nats://127.0.0.1:1", "x", Creds(creds)); err == nil {
		t.Fatal("connect to closed port succeeded")
	}
	if _, err := Connect(e.URL(), "x"); err == nil {
		t.Fatal("connected without credentials")
	}
}
