package node

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/signal"
	"github.com/oakmeet/oakmeet/store"
	"github.com/oakmeet/oakmeet/token"
)

// putControl writes a control-plane value as anyone who can write the
// store can.
func putControl(t *testing.T, m *mesh, key string, value []byte) {
	t.Helper()
	st, err := store.Open(context.Background(), m.nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutControl(context.Background(), key, value); err != nil {
		t.Fatal(err)
	}
}

// answerTokenKey answers the nodes' token key requests as the control
// plane does, with whatever the store holds now.
func (m *mesh) answerTokenKey() {
	t := m.t
	st, err := store.Open(context.Background(), m.nc)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := m.nc.Subscribe(cluster.SubjectTokenKey, func(msg *nats.Msg) {
		if cluster.CheckNodeReply(msg.Reply) != nil {
			return
		}
		var ans cluster.TokenKeyAnswer
		ans.Key, _ = st.Control(context.Background(), cluster.KeyTokenPublicKey)
		chain, _ := st.Control(context.Background(), cluster.KeyTokenRotation)
		ans.Rotation = string(chain)
		data, _ := json.Marshal(ans)
		_ = msg.Respond(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func TestPinnedTokenKeyOutlivesAStoreRewrite(t *testing.T) {
	m := startMesh(t, Config{ID: "de-fra", Country: "DE"}, Config{ID: "cn-pek", Country: "CN"})
	f := &fixture{node: m.nodes["de-fra"], key: m.key, nc: m.nc}
	future := time.Now().Add(time.Minute)
	if got := f.dial(t, joinMsg(f.token(t, f.key, "de-fra", future))); got.Type != signal.TypeWelcome {
		t.Fatalf("the control plane's token: %+v", got)
	}
	// The attacker replaces the stored key with theirs.
	_, evil, _ := ed25519.GenerateKey(nil)
	putControl(t, m, cluster.KeyTokenPublicKey, pubOf(evil))
	if got := f.dial(t, joinMsg(f.token(t, evil, "de-fra", future))); got.Type != signal.TypeError || got.Code != CodeBadToken {
		t.Fatalf("a join token signed by the rewritten key: %+v", got)
	}
	c := m.relayClaims("m1", "cn-pek", "de-fra", policy.Policy{})
	forged, err := token.SignRelay(evil, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, rerr := f.node.verifyRelayToken(context.Background(), forged, false); rerr == nil || rerr.Code != CodeRelayBadToken {
		t.Fatalf("a relay token signed by the rewritten key: %v", rerr)
	}
	// A node that had not checked any token yet pinned at start too.
	if _, rerr := m.nodes["cn-pek"].verifyRelayToken(context.Background(), forged, true); rerr == nil || rerr.Code != CodeRelayBadToken {
		t.Fatalf("the other node accepts the rewritten key: %v", rerr)
	}
	if _, rerr := m.nodes["cn-pek"].verifyRelayToken(context.Background(), m.sign(c), true); rerr != nil {
		t.Fatalf("the control plane's relay token: %v", rerr)
	}
	if got := f.dial(t, joinMsg(f.token(t, f.key, "de-fra", future))); got.Type != signal.TypeWelcome {
		t.Fatalf("the control plane's token after the rewrite: %+v", got)
	}
}

func TestConfiguredTokenKeyIsTheOnlyOne(t *testing.T) {
	_, enrolled, _ := ed25519.GenerateKey(nil)
	// The store holds another key from the start (the mesh's own).
	m := startMesh(t, Config{ID: "de-fra", Country: "DE", TokenKey: pubOf(enrolled)})
	f := &fixture{node: m.nodes["de-fra"], key: m.key, nc: m.nc}
	future := time.Now().Add(time.Minute)
	if got := f.dial(t, joinMsg(f.token(t, m.key, "de-fra", future))); got.Type != signal.TypeError || got.Code != CodeBadToken {
		t.Fatalf("a token signed by the stored key: %+v", got)
	}
	if got := f.dial(t, joinMsg(f.token(t, enrolled, "de-fra", future))); got.Type != signal.TypeWelcome {
		t.Fatalf("a token signed by the configured key: %+v", got)
	}
}

func TestTokenKeyRotationFollowsOnlyThePinnedKey(t *testing.T) {
	m := startMesh(t, Config{ID: "de-fra", Country: "DE"})
	f := &fixture{node: m.nodes["de-fra"], key: m.key, nc: m.nc}
	future := time.Now().Add(time.Minute)
	_, next, _ := ed25519.GenerateKey(nil)
	_, evil, _ := ed25519.GenerateKey(nil)
	byNext, err := token.SignRotation(next, pubOf(evil), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	byEvil, err := token.SignRotation(evil, pubOf(next), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	nextToken := joinMsg(f.token(t, next, "de-fra", future))
	for name, chain := range map[string]string{
		"signed by the new key":         byNext,
		"signed by a stranger":          byEvil,
		"garbage":                       "k1.garbage.x",
		"a join token for a statement":  f.token(t, next, "de-fra", future),
		"a stranger's chain to the key": byEvil + "\n" + byNext,
	} {
		putControl(t, m, cluster.KeyTokenRotation, []byte(chain))
		// Past the rate limit, so the statement is really read.
		f.node.rotationRead.Store(0)
		if got := f.dial(t, nextToken); got.Type != signal.TypeError || got.Code != CodeBadToken {
			t.Fatalf("%s: a token of the new key accepted: %+v", name, got)
		}
	}
	// The pinned key hands over: the node follows.
	stmt, err := token.SignRotation(m.key, pubOf(next), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	putControl(t, m, cluster.KeyTokenRotation, []byte(byEvil+"\n"+stmt))
	waitFor(t, 10*time.Second, "the node follows the rotation", func() bool {
		return f.dial(t, nextToken).Type == signal.TypeWelcome
	})
	// And the retired key is retired.
	if got := f.dial(t, joinMsg(f.token(t, m.key, "de-fra", future))); got.Type != signal.TypeError || got.Code != CodeBadToken {
		t.Fatalf("a token of the retired key: %+v", got)
	}
}

// A node asks for the token key again on every check until the control
// plane answers with a well-formed key, pins the first one, and never asks
// again.
func TestTokenKeyAskedUntilAnsweredThenPinned(t *testing.T) {
	emb, err := bus.Embed(bus.EmbedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	ctl, err := emb.ConnectControl("control")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ctl.Close)
	nc, err := emb.ConnectNode("de-fra")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	n := &Node{cfg: Config{NATS: nc}, log: slog.New(slog.DiscardHandler)}
	ctx := context.Background()
	if _, err := n.tokenKey(ctx); err == nil {
		t.Fatal("a key without a control plane")
	}
	answer := func(key []byte) *nats.Subscription {
		sub, err := ctl.Subscribe(cluster.SubjectTokenKey, func(m *nats.Msg) {
			data, _ := json.Marshal(cluster.TokenKeyAnswer{Key: key})
			_ = m.Respond(data)
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := ctl.Flush(); err != nil {
			t.Fatal(err)
		}
		return sub
	}
	bad := answer([]byte("short"))
	if _, err := n.tokenKey(ctx); err == nil || n.pub.Load() != nil {
		t.Fatalf("a malformed key pinned: %v", err)
	}
	_ = bad.Unsubscribe()
	_, first, _ := ed25519.GenerateKey(nil)
	sub := answer(pubOf(first))
	if got, err := n.tokenKey(ctx); err != nil || !got.Equal(pubOf(first)) {
		t.Fatalf("key %x, %v", got, err)
	}
	_ = sub.Unsubscribe()
	_, second, _ := ed25519.GenerateKey(nil)
	answer(pubOf(second))
	if got, err := n.tokenKey(ctx); err != nil || !got.Equal(pubOf(first)) {
		t.Fatalf("pinned key now %x, %v", got, err)
	}
}
