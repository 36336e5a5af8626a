package node

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v4"

	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/signal"
	"github.com/oakmeet/oakmeet/turncred"
)

// turnFixture is one node with a TURN server on a clock the test moves.
type turnFixture struct {
	*fixture
	offset atomic.Int64
}

func startTURNNode(t *testing.T) *turnFixture {
	t.Helper()
	tf := &turnFixture{}
	now := func() time.Time { return time.Now().Add(time.Duration(tf.offset.Load())) }
	tf.fixture = start(t, Config{ID: "de-fra", Country: "DE", TURNPort: -1, Now: now})
	return tf
}

// cred issues a credential as the control plane would, signed by key.
func (tf *turnFixture) cred(t *testing.T, key ed25519.PrivateKey, c turncred.Claims) (string, string) {
	t.Helper()
	info := tf.node.Info()
	nodeKey, err := turncred.VerifyNodeKey(info.IdentityKey, info.TURN.Key, info.TURN.KeySig)
	if err != nil {
		t.Fatal(err)
	}
	u, p, err := turncred.Issue(key, nodeKey, c)
	if err != nil {
		t.Fatal(err)
	}
	return u, p
}

func claimsFor(meeting, pid string, exp time.Time) turncred.Claims {
	return turncred.Claims{Node: "de-fra", Meeting: meeting, Participant: pid, IssuedAt: exp.Add(-2 * time.Minute), Expires: exp}
}

// allocate makes an allocation on the node's TURN server with a real
// TURN client.
func (tf *turnFixture) allocate(t *testing.T, user, pass string) (*turn.Client, net.PacketConn, error) {
	t.Helper()
	addr := strings.TrimSuffix(strings.TrimPrefix(tf.node.Info().TURN.URLs[0], "turn:"), "?transport=udp")
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn, Username: user, Password: pass,
		RTO:           100 * time.Millisecond,
		LoggerFactory: &logging.DefaultLoggerFactory{DefaultLogLevel: logging.LogLevelDisabled},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); _ = conn.Close() })
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := c.Allocate()
	if err != nil {
		return nil, nil, err
	}
	t.Cleanup(func() { _ = relay.Close() })
	return c, relay, nil
}

func listenUDP(t *testing.T, ip string) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp4", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// receive reads one packet within d.
func receive(pc net.PacketConn, d time.Duration) ([]byte, error) {
	buf := make([]byte, 1500)
	_ = pc.SetReadDeadline(time.Now().Add(d))
	n, _, err := pc.ReadFrom(buf)
	return buf[:n], err
}

func TestTURNRelaysOnlyToTheNode(t *testing.T) {
	tf := startTURNNode(t)
	u, p := tf.cred(t, tf.key, claimsFor("m1", "p1", time.Now().Add(2*time.Minute)))
	c, relay, err := tf.allocate(t, u, p)
	if err != nil {
		t.Fatalf("allocate with a valid credential: %v", err)
	}
	// The node's media address (loopback here): permitted, and relayed.
	media := listenUDP(t, "127.0.0.1")
	if _, err := relay.WriteTo([]byte("to the node"), media.LocalAddr()); err != nil {
		t.Fatalf("send to the node's media address: %v", err)
	}
	if got, err := receive(media, 5*time.Second); err != nil || !bytes.Equal(got, []byte("to the node")) {
		t.Fatalf("relayed to the node: %q %v", got, err)
	}
	// Any other address: no permission, nothing relayed.
	other := listenUDP(t, "127.0.0.2")
	if err := c.CreatePermission(other.LocalAddr()); err == nil {
		t.Fatal("a permission for 127.0.0.2 was granted")
	}
	if _, err := relay.WriteTo([]byte("elsewhere"), other.LocalAddr()); err == nil {
		t.Fatal("sending to 127.0.0.2 through the relay did not fail")
	}
	if got, err := receive(other, 300*time.Millisecond); err == nil {
		t.Fatalf("127.0.0.2 received %q through the relay", got)
	}
}

func TestTURNRefusesCredentials(t *testing.T) {
	tf := startTURNNode(t)
	future := time.Now().Add(2 * time.Minute)
	_, forger, _ := ed25519.GenerateKey(nil)

	// A participant who joined and left: its credential stops working.
	events, err := tf.nc.SubscribeSync(cluster.SubjectEvents("de-fra"))
	if err != nil {
		t.Fatal(err)
	}
	if m := tf.dial(t, joinMsg(tf.token(t, tf.key, "de-fra", time.Now().Add(time.Minute)))); m.Type != signal.TypeWelcome {
		t.Fatalf("join: %+v", m)
	}
	waitFor(t, 10*time.Second, "p1 has left", func() bool {
		msg, err := events.NextMsg(5 * time.Second)
		if err != nil {
			return false
		}
		e, _ := cluster.Decode[cluster.Event]("event", msg.Data)
		return e.Kind == cluster.EventDisconnected && e.Participant == "p1"
	})

	otherNode := claimsFor("m1", "p2", future)
	otherNode.Node = "us-iad"
	wrongPassUser, _ := tf.cred(t, tf.key, claimsFor("m1", "p3", future))
	cases := map[string][2]string{}
	add := func(name string, key ed25519.PrivateKey, c turncred.Claims) {
		u, p := tf.cred(t, key, c)
		cases[name] = [2]string{u, p}
	}
	add("expired", tf.key, claimsFor("m1", "p2", time.Now().Add(-time.Second)))
	add("for another node", tf.key, otherNode)
	add("forged signature", forger, claimsFor("m1", "p2", future))
	add("participant removed", tf.key, claimsFor("m1", "p1", future))
	cases["password not derived for this node"] = [2]string{wrongPassUser, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
	cases["the old scheme"] = [2]string{"9999999999:p2", "x"}
	for name, cr := range cases {
		if _, _, err := tf.allocate(t, cr[0], cr[1]); err == nil {
			t.Errorf("%s: allocation made", name)
		}
	}
	// The same participant id in another meeting has not left.
	u, p := tf.cred(t, tf.key, claimsFor("m2", "p1", future))
	if _, _, err := tf.allocate(t, u, p); err != nil {
		t.Fatalf("a present participant's credential: %v", err)
	}
}

func TestTURNAllocationOutlivesItsCredentialAlone(t *testing.T) {
	tf := startTURNNode(t)
	u, p := tf.cred(t, tf.key, claimsFor("m1", "p1", time.Now().Add(time.Minute)))
	c, _, err := tf.allocate(t, u, p)
	if err != nil {
		t.Fatal(err)
	}
	media := listenUDP(t, "127.0.0.1")
	tf.offset.Store(int64(2 * time.Minute)) // past the credential's expiry
	// The allocation made in time keeps being served...
	if err := c.CreatePermission(media.LocalAddr()); err != nil {
		t.Fatalf("refresh a permission of a live allocation after expiry: %v", err)
	}
	// ...but no new allocation is made with the expired credential.
	if _, _, err := tf.allocate(t, u, p); err == nil {
		t.Fatal("a new allocation with an expired credential")
	}
}

func TestGrants(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := turncred.Claims{Node: "n", Meeting: "m", Participant: "p", IssuedAt: now, Expires: now.Add(time.Minute)}
	g := newGrants()
	if err := g.admit(c, "a:1", "u", now); err != nil {
		t.Fatalf("valid: %v", err)
	}
	if err := g.admit(c, "a:1", "u", now.Add(time.Minute)); !errors.Is(err, turncred.ErrExpired) {
		t.Fatalf("expired without an allocation: %v", err)
	}
	g.live[allocation{"a:1", "u"}] = seat{"m", "p"}
	if err := g.admit(c, "a:1", "u", now.Add(time.Hour)); err != nil {
		t.Fatalf("expired, its own allocation: %v", err)
	}
	if err := g.admit(c, "b:2", "u", now.Add(time.Hour)); !errors.Is(err, turncred.ErrExpired) {
		t.Fatalf("expired, from another address: %v", err)
	}
	g.left("m", "p", now)
	for _, at := range []time.Time{now, now.Add(time.Hour)} {
		if err := g.admit(c, "a:1", "u", at); err == nil {
			t.Fatalf("after leaving, at %s: accepted", at)
		}
	}
	g.returned("m", "p")
	if err := g.admit(c, "a:1", "u", now); err != nil {
		t.Fatalf("back with a valid credential: %v", err)
	}
}
