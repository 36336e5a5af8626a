package bus

import (
	"testing"
	"time"
)

func TestEmbedPublishSubscribe(t *testing.T) {
	e, err := Embed(EmbedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	nc, err := e.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("x")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("x", []byte("hi")); err != nil {
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
}

func TestConnectUnreachable(t *testing.T) {
	if _, err := Connect("nats://127.0.0.1:1", "x"); err == nil {
		t.Fatal("connect to closed port succeeded")
	}
}
