package node

import (
	"context"
	"crypto/ed25519"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/signal"
	"github.com/oakmeet/oakmeet/token"
)

var europe = policy.Policy{BlockedCountries: []string{"CN", "RU"}}

func TestRelayLinksJoinAMeetingAcrossThreeNodes(t *testing.T) {
	baseline := runtime.NumGoroutine()
	func() {
		m := startMesh(t,
			Config{ID: "de-fra", Country: "DE", Region: "eu-central-1"},
			Config{ID: "fr-par", Country: "FR", Region: "eu-west-3"},
			Config{ID: "nl-ams", Country: "NL"},
		)
		defer m.close()
		ids := []string{"de-fra", "fr-par", "nl-ams"}
		issued := map[string]time.Time{}
		peers := map[string]*peer{}
		for i, node := range ids {
			id := "p-" + node
			issued[id] = time.Now().Add(time.Duration(i) * time.Second).Truncate(time.Millisecond)
			peers[id] = m.connect(node, "m1", id, issued[id])
			peers[id].publish(t)
		}
		m.relay("m1", "de-fra", "fr-par", europe)
		m.relay("m1", "de-fra", "nl-ams", europe)
		m.relay("m1", "fr-par", "nl-ams", europe)

		for rx, p := range peers {
			for tx := range peers {
				if rx == tx {
					continue
				}
				waitFor(t, 20*time.Second, rx+" receives "+tx, func() bool {
					return p.count(tx, "audio") > 20 && p.count(tx, "video") > 10
				})
				// Roster order across nodes: since is the join token's
				// issue time, kept as is over the relay.
				if !p.has(func(e client.Event) bool {
					return e.Type == client.EventParticipantJoined && e.Participant.ID == tx && e.Participant.Since == issued[tx].UnixMilli()
				}) {
					t.Fatalf("%s did not see %s join with since %d", rx, tx, issued[tx].UnixMilli())
				}
			}
		}

		// End-to-end key messages cross nodes: to one participant and to all.
		if err := peers["p-de-fra"].s.SendRelay("p-nl-ams", []byte(`{"sealed":"x"}`)); err != nil {
			t.Fatal(err)
		}
		if err := peers["p-fr-par"].s.SendRelay("", []byte(`{"epoch":2}`)); err != nil {
			t.Fatal(err)
		}
		relayFrom := func(p *peer, from, payload string) func() bool {
			return func() bool {
				return p.has(func(e client.Event) bool {
					return e.Type == client.EventRelay && e.Participant.ID == from && string(e.Payload) == payload
				})
			}
		}
		waitFor(t, 5*time.Second, "directed relay reaches nl-ams", relayFrom(peers["p-nl-ams"], "p-de-fra", `{"sealed":"x"}`))
		waitFor(t, 5*time.Second, "broadcast relay reaches de-fra", relayFrom(peers["p-de-fra"], "p-fr-par", `{"epoch":2}`))
		waitFor(t, 5*time.Second, "broadcast relay reaches nl-ams", relayFrom(peers["p-nl-ams"], "p-fr-par", `{"epoch":2}`))

		// The heartbeat lists the links, connected, and relay bytes count
		// for the meeting.
		hb := m.heartbeat("de-fra", func(hb cluster.Heartbeat) bool {
			return len(hb.Relays) == 2 && hb.Relays[0].Connected && hb.Relays[1].Connected
		})
		r0 := hb.Relays[0]
		if r0.Since.IsZero() || time.Since(r0.Since) > time.Minute {
			t.Fatalf("heartbeat relay started at %v", r0.Since)
		}
		r0.Since = time.Time{}
		if r0 != (cluster.RelayLink{Meeting: "m1", Peer: "fr-par", Dialer: true, Connected: true}) {
			t.Fatalf("heartbeat relays %+v", hb.Relays)
		}
		var sent uint64
		for _, r := range m.nodes["de-fra"].Relays() {
			sent += r.BytesSent
		}
		if sent == 0 || hb.MeetingBytes["m1"] == 0 {
			t.Fatalf("relayed %d bytes, meeting bytes %v", sent, hb.MeetingBytes)
		}

		// Re-sending relay commands keeps the links as they are.
		before := m.nodes["fr-par"].Relays()
		m.relay("m1", "de-fra", "fr-par", europe)
		m.relay("m1", "fr-par", "nl-ams", europe)
		m.heartbeat("de-fra", func(cluster.Heartbeat) bool { return true })
		m.heartbeat("fr-par", func(cluster.Heartbeat) bool { return true })
		after := m.nodes["fr-par"].Relays()
		if len(after) != 2 || !after[0].Since.Equal(before[0].Since) || !after[1].Since.Equal(before[1].Since) {
			t.Fatalf("re-sent relay replaced a link: before %+v after %+v", before, after)
		}

		// A publisher leaving on one node disappears on the others.
		peers["p-nl-ams"].close()
		for _, rx := range []string{"p-de-fra", "p-fr-par"} {
			waitFor(t, 10*time.Second, rx+" sees p-nl-ams leave", func() bool {
				return peers[rx].sawLeave("p-nl-ams")
			})
		}

		// unrelay tears a link down on both ends; the remote tracks go.
		m.command("de-fra", cluster.Command{Kind: cluster.CommandUnrelay, Meeting: "m1", Peer: "fr-par"})
		waitFor(t, 10*time.Second, "de-fra and fr-par drop their link", func() bool {
			return len(m.nodes["de-fra"].Relays()) == 1 && len(m.nodes["fr-par"].Relays()) == 1
		})
		waitFor(t, 10*time.Second, "p-fr-par loses p-de-fra's tracks", func() bool {
			return peers["p-fr-par"].sawLeave("p-de-fra")
		})
		for _, p := range peers {
			p.close()
		}
	}()
	waitFor(t, 15*time.Second, "goroutines back to the baseline", func() bool {
		return runtime.NumGoroutine() <= baseline
	})
}

// heartbeat waits for a heartbeat of node that satisfies ok.
func (m *mesh) heartbeat(node string, ok func(cluster.Heartbeat) bool) cluster.Heartbeat {
	m.t.Helper()
	sub, err := m.nc.SubscribeSync(cluster.SubjectHeartbeat("*"))
	if err != nil {
		m.t.Fatal(err)
	}
	defer sub.Unsubscribe()
	deadline := time.Now().Add(10 * time.Second)
	for {
		msg, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			m.t.Fatalf("no matching heartbeat from %s: %v", node, err)
		}
		hb, err := cluster.Decode[cluster.Heartbeat]("heartbeat", msg.Data)
		if err == nil && hb.Node.ID == node && ok(hb) {
			return hb
		}
	}
}

// handshake plays a dialling node against node to: it sends a link with
// tok and cert, signs the challenge with key, and returns the node's last
// answer.
func handshake(t *testing.T, to *Node, tok, cert string, key ed25519.PrivateKey) signal.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, to.Info().URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	na := nonce()
	send := func(m signal.Message) {
		b, _ := signal.Encode(m)
		if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
	}
	read := func() signal.Message {
		_, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		m, err := signal.Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	send(signal.Message{Type: signal.TypeLink, Token: tok, Nonce: na, Cert: cert})
	ch := read()
	if ch.Type != signal.TypeLinkChallenge {
		return ch
	}
	binding := transcript(tok, na, ch.Nonce)
	if !ed25519.Verify(to.Info().IdentityKey, proof(roleAcceptor, binding), ch.Sig) {
		t.Fatal("the accepting node's proof does not verify with its registered identity key")
	}
	send(signal.Message{Type: signal.TypeLinkProof, Sig: ed25519.Sign(key, proof(roleDialer, binding))})
	return read()
}

func TestAcceptingNodeRefusesBadRelays(t *testing.T) {
	m := startMesh(t,
		Config{ID: "de-fra", Country: "DE", Region: "eu-central-1"},
		Config{ID: "cn-pek", Country: "CN", Region: "cn-north-1"},
	)
	dialerPub, dialerKey, _ := ed25519.GenerateKey(nil)
	_, otherKey, _ := ed25519.GenerateKey(nil)
	_, forger, _ := ed25519.GenerateKey(nil)
	// The test dials as "cn-pek" with its own key: the token names it.
	claims := func(mutate func(*token.RelayClaims)) token.RelayClaims {
		c := m.relayClaims("m1", "cn-pek", "de-fra", policy.Policy{})
		c.From.IdentityKey = dialerPub
		mutate(&c)
		return c
	}
	good := m.sign(claims(func(*token.RelayClaims) {}))
	// The meeting's host allows China; the dialler is certified there.
	m.hostOn("m1", policy.Policy{}, "de-fra")
	cert := m.certify("cn-pek", "CN", "cn-north-1", dialerPub, time.Now().Add(time.Hour))
	otherEnroll := &mesh{t: t}
	_, otherEnroll.enroll, _ = ed25519.GenerateKey(nil)
	expired := claims(func(c *token.RelayClaims) {
		c.IssuedAt, c.Expires = c.IssuedAt.Add(-time.Hour), c.IssuedAt.Add(-time.Hour+time.Minute)
	})
	forged, err := token.SignRelay(forger, claims(func(*token.RelayClaims) {}))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		tok  string
		key  ed25519.PrivateKey
		code string
		cert string
	}{
		{"no certificate", good, dialerKey, CodeRelayBadCert, "-"},
		{"certificate of another key", good, dialerKey, CodeRelayBadCert, m.certify("cn-pek", "CN", "cn-north-1", otherKey.Public().(ed25519.PublicKey), time.Now().Add(time.Hour))},
		{"certificate of another node", good, dialerKey, CodeRelayBadCert, m.certify("de-fra", "CN", "cn-north-1", dialerPub, time.Now().Add(time.Hour))},
		{"expired certificate", good, dialerKey, CodeRelayBadCert, m.certify("cn-pek", "CN", "cn-north-1", dialerPub, time.Now().Add(-time.Minute))},
		{"certificate by another enrollment key", good, dialerKey, CodeRelayBadCert, otherEnroll.certify("cn-pek", "CN", "cn-north-1", dialerPub, time.Now().Add(time.Hour))},
		{"certificate in another region than the token says", good, dialerKey, CodeRelayBadCert, m.certify("cn-pek", "CN", "cn-northwest-1", dialerPub, time.Now().Add(time.Hour))},
		{"policy blocks the dialler's country", m.sign(claims(func(c *token.RelayClaims) { c.Policy = europe })), dialerKey, CodeRelayPolicy, ""},
		{"policy blocks the dialler's region", m.sign(claims(func(c *token.RelayClaims) { c.Policy.BlockedRegions = []string{"cn-north-1"} })), dialerKey, CodeRelayPolicy, ""},
		{"policy allow-list leaves the dialler out", m.sign(claims(func(c *token.RelayClaims) { c.Policy.AllowedCountries = []string{"EU"} })), dialerKey, CodeRelayPolicy, ""},
		{"forged token", forged, dialerKey, CodeRelayBadToken, ""},
		{"expired token", m.sign(expired), dialerKey, CodeRelayTokenExpired, ""},
		{"token for another node", m.sign(claims(func(c *token.RelayClaims) { c.To.ID = "fr-par" })), dialerKey, CodeRelayWrongNode, ""},
		{"token with the node's old key", m.sign(claims(func(c *token.RelayClaims) { c.To.IdentityKey = dialerPub })), dialerKey, CodeRelayWrongNode, ""},
		{"dialler without the named key", good, otherKey, CodeRelayBadProof, ""},
		{"a join token", m.joinToken("de-fra", "m1", "p1", time.Now()), dialerKey, CodeRelayBadToken, ""},
	}
	for _, tc := range cases {
		c := cert
		if tc.cert == "-" {
			c = ""
		} else if tc.cert != "" {
			c = tc.cert
		}
		got := handshake(t, m.nodes["de-fra"], tc.tok, c, tc.key)
		if got.Type != signal.TypeError || got.Code != tc.code || got.Message == "" {
			t.Errorf("%s: got %+v, want error %s", tc.name, got, tc.code)
		}
	}
	if msg, _ := m.logs["de-fra"].find("relay refused", CodeRelayPolicy); !strings.Contains(msg["reason"], "cn-pek") {
		t.Errorf("policy refusal does not name the node: %v", msg)
	}
	// The same dialler with a good token and key is let in.
	if got := handshake(t, m.nodes["de-fra"], good, cert, dialerKey); got.Type != signal.TypeLinkReady {
		t.Fatalf("good handshake: %+v", got)
	}
	if len(m.nodes["de-fra"].Relays()) > 1 {
		t.Fatalf("refused handshakes left links: %+v", m.nodes["de-fra"].Relays())
	}
}

func TestDiallingNodeChecksPolicyAndPeer(t *testing.T) {
	m := startMesh(t,
		Config{ID: "de-fra", Country: "DE", Region: "eu-central-1"},
		Config{ID: "cn-pek", Country: "CN", Region: "cn-north-1"},
	)
	var dials atomic.Int32
	// A stand-in for the peer that answers with a challenge signed by the
	// wrong key.
	_, impostor, _ := ed25519.GenerateKey(nil)
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dials.Add(1)
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		_, data, err := ws.Read(r.Context())
		if err != nil {
			return
		}
		hello, err := signal.Decode(data)
		if err != nil {
			return
		}
		nb := nonce()
		b, _ := signal.Encode(signal.Message{Type: signal.TypeLinkChallenge, Nonce: nb, Sig: ed25519.Sign(impostor, proof(roleAcceptor, transcript(hello.Token, hello.Nonce, nb)))})
		_ = ws.Write(r.Context(), websocket.MessageText, b)
		_, _, _ = ws.Read(r.Context())
	}))
	defer fake.Close()
	url := "ws" + strings.TrimPrefix(fake.URL, "http")

	// The meeting's policy blocks China: de-fra does not even dial.
	m.command("de-fra", cluster.Command{
		Kind: cluster.CommandRelay, Meeting: "m1", Peer: "cn-pek", PeerURL: url,
		Token: m.sign(m.relayClaims("m1", "de-fra", "cn-pek", europe)),
	})
	waitFor(t, 5*time.Second, "de-fra refuses to dial", func() bool {
		_, ok := m.logs["de-fra"].find("relay refused", CodeRelayPolicy)
		return ok
	})
	if n := dials.Load(); n != 0 {
		t.Fatalf("de-fra dialled a forbidden peer %d times", n)
	}

	// A token naming the dialler as someone else is refused before dialling.
	m.command("de-fra", cluster.Command{
		Kind: cluster.CommandRelay, Meeting: "m2", Peer: "cn-pek", PeerURL: url,
		Token: m.sign(m.relayClaims("m2", "cn-pek", "de-fra", policy.Policy{})),
	})
	waitFor(t, 5*time.Second, "de-fra refuses a token for another dialler", func() bool {
		_, ok := m.logs["de-fra"].find("relay refused", CodeRelayWrongNode)
		return ok
	})
	if n := dials.Load(); n != 0 {
		t.Fatalf("de-fra dialled with someone else's token %d times", n)
	}

	// An allowed peer that cannot prove the key the token names is dropped.
	m.hostOn("m3", policy.Policy{}, "de-fra")
	m.command("de-fra", cluster.Command{
		Kind: cluster.CommandRelay, Meeting: "m3", Peer: "cn-pek", PeerURL: url,
		Token: m.sign(m.relayClaims("m3", "de-fra", "cn-pek", policy.Policy{})),
	})
	waitFor(t, 5*time.Second, "de-fra refuses an impostor", func() bool {
		_, ok := m.logs["de-fra"].find("relay refused", CodeRelayBadProof)
		return ok
	})
	if len(m.nodes["de-fra"].Relays()) != 0 {
		t.Fatalf("links after refusals: %+v", m.nodes["de-fra"].Relays())
	}
}

func TestMoveAndKickReachTheParticipant(t *testing.T) {
	m := startMesh(t, Config{ID: "de-fra", Country: "DE"})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, m.nodes["de-fra"].Info().URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	write := func(msg signal.Message) {
		b, _ := signal.Encode(msg)
		if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
	}
	next := func(want signal.Type) signal.Message {
		t.Helper()
		for {
			_, data, err := ws.Read(ctx)
			if err != nil {
				t.Fatalf("awaiting %s: %v", want, err)
			}
			msg, err := signal.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			if msg.Type == want {
				return msg
			}
		}
	}
	issued := time.Now().Add(-time.Second)
	write(signal.Message{Type: signal.TypeJoin, Token: m.joinToken("de-fra", "m1", "p1", issued), Nonce: make([]byte, signal.JoinNonceBytes)})
	if w := next(signal.TypeWelcome); w.Since != issued.UnixMilli() {
		t.Fatalf("welcome since %d, want the token's issue time %d", w.Since, issued.UnixMilli())
	}

	m.command("de-fra", cluster.Command{Kind: cluster.CommandMove, Meeting: "m1", Participant: "p1", Reason: "policy_changed"})
	if got := next(signal.TypeMove); got.Reason != "policy_changed" {
		t.Fatalf("move reason %q", got.Reason)
	}
	// The connection stays: it still answers.
	write(signal.Message{Type: signal.TypePing})
	next(signal.TypePong)

	m.command("de-fra", cluster.Command{Kind: cluster.CommandKick, Meeting: "m1", Participant: "p1", Reason: "policy_no_allowed_node"})
	if got := next(signal.TypeLeave); got.Reason != "policy_no_allowed_node" {
		t.Fatalf("kick reason %q, want it verbatim", got.Reason)
	}
	if _, _, err := ws.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("after the kick: %v, want a normal close", err)
	}
}
