package sfu_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/oakmeet/oakmeet/e2ee/identity"
	"github.com/oakmeet/oakmeet/e2ee/keymsg"
	"github.com/oakmeet/oakmeet/sfu"
	"github.com/oakmeet/oakmeet/sfu/sfutest"
	"github.com/oakmeet/oakmeet/signal"
)

// epochFor makes a real epoch key message for a roster of n members, the
// leader first, as a leader's client sends it: the secret sealed to each
// member's HPKE key and the whole signed by the leader. The node never
// looks inside; the test only needs its true size and shape. The roster's
// entry signatures are not checked by anyone here and are random.
func epochFor(t *testing.T, meeting string, n int) []byte {
	t.Helper()
	leader, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	roster := make([]keymsg.Entry, n)
	for i := range roster {
		id := leader
		if i > 0 {
			if id, err = identity.Generate(); err != nil {
				t.Fatal(err)
			}
		}
		priv, err := keymsg.KEM().GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		sig := make([]byte, keymsg.SignatureSize)
		_, _ = rand.Read(sig)
		roster[i] = keymsg.Entry{
			Participant: fmt.Sprintf("p-%012x", i), Identity: id.Public(),
			HPKE: priv.PublicKey().Bytes(), Signature: sig,
		}
	}
	secret := make([]byte, keymsg.SecretSize)
	_, _ = rand.Read(secret)
	m, err := keymsg.NewEpoch(meeting, 2, roster, secret, leader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := keymsg.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) <= signal.MaxMessageBytes || len(b) > signal.MaxRelayBytes-4096 {
		t.Fatalf("an epoch for %d members is %d bytes: outside what this test is about", n, len(b))
	}
	return b
}

func relayFrom(from string, payload []byte) func(signal.Message) bool {
	return func(m signal.Message) bool {
		return m.Type == signal.TypeRelay && m.From == from && bytes.Equal(m.Payload, payload)
	}
}

func peer(t *testing.T, srv *sfutest.Server, meeting, id string) *sfutest.Peer {
	return sfutest.Join(t, srv.URL, id, sfutest.Token(meeting, id, "name-"+id))
}

func joined(id string) func(signal.Message) bool {
	return func(m signal.Message) bool {
		return m.Type == signal.TypeParticipantJoined && m.Participant.ID == id
	}
}

func TestKeyMessageForAThousandMembersPassesThroughANode(t *testing.T) {
	t.Parallel()
	epoch := epochFor(t, "m", 1000)
	t.Logf("epoch message for 1,000 members: %d bytes", len(epoch))
	srv := sfutest.Start(t, sfu.Config{})
	leader := peer(t, srv, "m", "leader")
	bob := peer(t, srv, "m", "bob")
	carol := peer(t, srv, "m", "carol")
	leader.WaitFor("carol", joined("carol"))

	leader.Send(signal.Message{Type: signal.TypeRelay, Payload: epoch})
	bob.WaitFor("the epoch", relayFrom("leader", epoch))
	carol.WaitFor("the epoch", relayFrom("leader", epoch))

	// Directed to one member, it reaches that member alone.
	leader.Send(signal.Message{Type: signal.TypeRelay, To: "carol", Payload: epoch})
	carol.WaitFor("a second epoch", func(m signal.Message) bool {
		return relayFrom("leader", epoch)(m) && m.To == "carol"
	})
	if n := bob.Count(relayFrom("leader", epoch)); n != 1 {
		t.Fatalf("bob got the epoch %d times, want once", n)
	}
	if n := leader.Count(func(m signal.Message) bool { return m.Type == signal.TypeRelay }); n != 0 {
		t.Fatalf("the leader got %d relay messages of its own", n)
	}
	if got, err := keymsg.Decode(carol.Received()[len(carol.Received())-1].Payload); err != nil || got.Type() != "epoch" {
		t.Fatalf("the epoch as received does not decode: %v", err)
	}
}

func TestKeyMessageForAThousandMembersCrossesARelayLink(t *testing.T) {
	t.Parallel()
	epoch := epochFor(t, "m", 1000)
	a, b := sfutest.Start(t, sfu.Config{}), sfutest.Start(t, sfu.Config{})
	leader := peer(t, a, "m", "leader")
	near := peer(t, a, "m", "near")
	far := peer(t, b, "m", "far")
	farther := peer(t, b, "m", "farther")
	// Over a real WebSocket, with the read limits a node's links have.
	ca, cb := sfutest.WebSocketPipe(t)
	sfutest.LinkOver(t, "m", a, "node-a", ca, b, "node-b", cb)
	far.WaitFor("the leader across the link", joined("leader"))
	farther.WaitFor("the leader across the link", joined("leader"))
	leader.WaitFor("far across the link", joined("far"))

	leader.Send(signal.Message{Type: signal.TypeRelay, Payload: epoch})
	near.WaitFor("the epoch", relayFrom("leader", epoch))
	far.WaitFor("the epoch across the link", relayFrom("leader", epoch))
	farther.WaitFor("the epoch across the link", relayFrom("leader", epoch))

	// And back: a member on the other node sends one to the leader.
	far.Send(signal.Message{Type: signal.TypeRelay, To: "leader", Payload: epoch})
	leader.WaitFor("the epoch from far", relayFrom("far", epoch))
	if n := farther.Count(relayFrom("far", epoch)); n != 0 {
		t.Fatalf("a relay message for the leader reached farther %d times", n)
	}
	if len(a.SFU.Relays()) != 1 || len(b.SFU.Relays()) != 1 {
		t.Fatalf("the link did not survive: %v / %v", a.SFU.Relays(), b.SFU.Relays())
	}
}

// relayOfSize is an encoded relay message to everyone of exactly n bytes.
func relayOfSize(t *testing.T, n int) []byte {
	t.Helper()
	b, _ := signal.Encode(signal.Message{Type: signal.TypeRelay, Payload: []byte(`""`)})
	out := bytes.Replace(b, []byte(`""`), []byte(`"`+strings.Repeat("A", n-len(b))+`"`), 1)
	if len(out) != n {
		t.Fatalf("built %d bytes, want %d", len(out), n)
	}
	return out
}

func TestOversizedMessagesAreRefusedAndTheSenderStays(t *testing.T) {
	t.Parallel()
	srv := sfutest.Start(t, sfu.Config{})
	alice := peer(t, srv, "m", "alice")
	bob := peer(t, srv, "m", "bob")
	alice.WaitFor("bob", joined("bob"))

	tooLarge := func(text string) func(signal.Message) bool {
		return func(m signal.Message) bool {
			return m.Type == signal.TypeError && m.Code == signal.CodeTooLarge && strings.Contains(m.Message, text)
		}
	}
	cases := []struct {
		name string
		data []byte
		text string
	}{
		{"relay over the relay limit", relayOfSize(t, signal.MaxRelayBytes+1024), "relay message of"},
		// At the limit as sent, over it once the node stamps "from".
		{"relay at the limit without from", relayOfSize(t, signal.MaxRelayBytes), "as forwarded"},
		{"chat over 64 KiB", []byte(`{"v":1,"type":"chat","text":"` + strings.Repeat("x", signal.MaxMessageBytes) + `"}`), "only relay messages"},
		{"offer over 64 KiB", []byte(`{"v":1,"type":"offer","sdp":"` + strings.Repeat("x", signal.MaxMessageBytes) + `"}`), "only relay messages"},
	}
	for _, tc := range cases {
		before := alice.Count(tooLarge(tc.text))
		alice.SendRaw(tc.data)
		alice.WaitFor(tc.name+" refused", func(m signal.Message) bool {
			return tooLarge(tc.text)(m) && alice.Count(tooLarge(tc.text)) > before
		})
	}
	// Alice is still there: what she sends next arrives, nothing
	// oversized did.
	alice.Send(signal.Message{Type: signal.TypeChat, Text: "still here"})
	bob.WaitFor("alice's chat", func(m signal.Message) bool { return m.Type == signal.TypeChat && m.From == "alice" })
	if n := bob.Count(func(m signal.Message) bool { return m.Type == signal.TypeRelay }); n != 0 {
		t.Fatalf("bob got %d oversized relay messages", n)
	}
	// The largest relay message that fits as forwarded goes through.
	fits := relayOfSize(t, signal.MaxRelayBytes-len(`,"from":"alice"`))
	alice.SendRaw(fits)
	got := bob.WaitFor("the largest relay message", func(m signal.Message) bool { return m.Type == signal.TypeRelay })
	if enc, _ := signal.Encode(got); len(enc) != signal.MaxRelayBytes {
		t.Fatalf("forwarded relay message of %d bytes, want exactly %d", len(enc), signal.MaxRelayBytes)
	}

	// Only a frame beyond the transport's cap ends the connection.
	alice.SendRaw(relayOfSize(t, signal.MaxRelayBytes+signal.MaxMessageBytes+1))
	if code := alice.Closed(); code != websocket.StatusMessageTooBig {
		t.Fatalf("oversized frame closed the connection with %v", code)
	}
	if !bob.Open() {
		t.Fatal("bob was disconnected by alice's oversized frame")
	}
}
