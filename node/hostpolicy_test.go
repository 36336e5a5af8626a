package node

import (
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/nodecert"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/sfu/sfutest"
	"github.com/oakmeet/oakmeet/signal"
)

// noChina is the host's policy in these tests.
var noChina = policy.Policy{BlockedCountries: []string{"CN"}}

// refused reports whether node logged a relay refusal with code.
func (m *mesh) refused(node, code string) (map[string]string, bool) {
	return m.logs[node].find("relay refused", code)
}

func (m *mesh) hostCommand(node, meeting string, key ed25519.PrivateKey, p policy.Policy) {
	m.t.Helper()
	m.command(node, cluster.Command{Kind: cluster.CommandHost, Meeting: meeting, Statement: m.statement(key, p)})
}

// A relay token signed with the control plane's own key (what a
// compromised control plane can mint) naming a peer the host-signed policy
// blocks opens no link, whichever end is asked to dial; once the host
// signs a policy that allows the peer the link opens, and a newer host
// policy that blocks it again closes it.
func TestRelayFollowsTheHostPolicyNotTheToken(t *testing.T) {
	m := startMesh(t,
		Config{ID: "de-fra", Country: "DE", Region: "eu-central-1"},
		Config{ID: "cn-pek", Country: "CN", Region: "cn-north-1"},
	)
	host := m.hostKey("m1")
	m.hostJoin("de-fra", "m1", "a", host, noChina)
	m.hostJoin("cn-pek", "m1", "b", host, noChina)

	// The token's policy allows everything: the control plane says so.
	m.relay("m1", "de-fra", "cn-pek", policy.Policy{})
	waitFor(t, 5*time.Second, "de-fra refuses to relay to cn-pek", func() bool {
		_, ok := m.refused("de-fra", CodeRelayNotAllowedByHost)
		return ok
	})
	if rec, _ := m.refused("de-fra", CodeRelayNotAllowedByHost); !strings.Contains(rec["reason"], "cn-pek") || !strings.Contains(rec["reason"], "CN") {
		t.Fatalf("refusal does not name the peer and its country: %v", rec)
	}
	// Asked the other way, cn-pek dials (de-fra is allowed) and de-fra,
	// accepting, refuses: cn-pek hears why.
	m.relay("m1", "cn-pek", "de-fra", policy.Policy{})
	waitFor(t, 5*time.Second, "de-fra refuses cn-pek's link", func() bool {
		_, ok := m.refused("cn-pek", CodeRelayNotAllowedByHost)
		return ok
	})
	// A statement the host did not sign changes nothing.
	_, forger, _ := ed25519.GenerateKey(nil)
	m.hostCommand("de-fra", "m1", forger, policy.Policy{})
	m.hostCommand("cn-pek", "m1", forger, policy.Policy{})
	m.relay("m1", "de-fra", "cn-pek", policy.Policy{})
	m.heartbeat("de-fra", func(cluster.Heartbeat) bool { return true })
	m.heartbeat("de-fra", func(hb cluster.Heartbeat) bool { return len(hb.Relays) == 0 })
	for _, n := range []string{"de-fra", "cn-pek"} {
		if r := m.nodes[n].Relays(); len(r) != 0 {
			t.Fatalf("%s has links the host's policy blocks: %+v", n, r)
		}
	}

	// The host allows China: the same kind of token now opens the link.
	m.hostCommand("de-fra", "m1", host, policy.Policy{})
	m.hostCommand("cn-pek", "m1", host, policy.Policy{})
	waitFor(t, 10*time.Second, "the link up once the host allows it", func() bool {
		m.relay("m1", "de-fra", "cn-pek", policy.Policy{}) // re-sent as the control plane does
		return len(m.nodes["de-fra"].Relays()) == 1 && len(m.nodes["cn-pek"].Relays()) == 1
	})

	// A newer host policy blocks China again: de-fra closes the link
	// itself, with no unrelay command.
	m.hostCommand("de-fra", "m1", host, noChina)
	waitFor(t, 5*time.Second, "the link closed on the newer host policy", func() bool {
		return len(m.nodes["de-fra"].Relays()) == 0 && len(m.nodes["cn-pek"].Relays()) == 0
	})
	if _, ok := m.logs["de-fra"].find("relay link closed: the host policy no longer allows it", CodeRelayNotAllowedByHost); !ok {
		t.Fatal("de-fra did not say why it closed the link")
	}

	// A newer host policy a participant's join brings counts the same.
	m.hostCommand("de-fra", "m1", host, policy.Policy{})
	waitFor(t, 10*time.Second, "the link up again", func() bool {
		m.relay("m1", "de-fra", "cn-pek", policy.Policy{})
		return len(m.nodes["de-fra"].Relays()) == 1
	})
	m.hostJoin("de-fra", "m1", "c", host, noChina)
	waitFor(t, 5*time.Second, "the link closed on a joiner's newer host policy", func() bool {
		return len(m.nodes["de-fra"].Relays()) == 0
	})
}

// Without a host policy from its participants a node relays nothing, and
// participants naming different host keys for one meeting shut its links.
func TestRelayNeedsOneHostPolicy(t *testing.T) {
	m := startMesh(t,
		Config{ID: "de-fra", Country: "DE", Region: "eu-central-1"},
		Config{ID: "fr-par", Country: "FR", Region: "eu-west-3"},
	)
	// A participant that names no host key gives the node no policy, nor
	// does one whose statement the host key it names did not sign.
	m.wsJoin("de-fra", "m1", "old")
	_, forger, _ := ed25519.GenerateKey(nil)
	sfutest.JoinWith(t, m.nodes["de-fra"].Info().URL, "liar", signal.Message{Token: m.joinToken("de-fra", "m1", "liar", time.Now()),
		HostKey: m.hostKey("m1").Public().(ed25519.PublicKey), Statement: m.statement(forger, policy.Policy{})})
	m.hostJoin("fr-par", "m1", "b", m.hostKey("m1"), noChina)
	m.relay("m1", "de-fra", "fr-par", policy.Policy{})
	waitFor(t, 5*time.Second, "de-fra refuses without a host policy", func() bool {
		_, ok := m.refused("de-fra", CodeRelayNoHostPolicy)
		return ok
	})
	m.relay("m1", "fr-par", "de-fra", policy.Policy{})
	waitFor(t, 5*time.Second, "de-fra refuses to accept without a host policy", func() bool {
		_, ok := m.refused("fr-par", CodeRelayNoHostPolicy)
		return ok
	})

	// With one, the link opens; a participant naming another host key
	// closes it, and it is not opened again.
	m.hostJoin("de-fra", "m1", "a", m.hostKey("m1"), noChina)
	waitFor(t, 10*time.Second, "the link up", func() bool {
		m.relay("m1", "de-fra", "fr-par", policy.Policy{})
		return len(m.nodes["de-fra"].Relays()) == 1
	})
	_, other, _ := ed25519.GenerateKey(nil)
	m.hostJoin("de-fra", "m1", "mallory", other, policy.Policy{})
	waitFor(t, 5*time.Second, "the link closed on conflicting host keys", func() bool {
		return len(m.nodes["de-fra"].Relays()) == 0 && len(m.nodes["fr-par"].Relays()) == 0
	})
	if _, ok := m.logs["de-fra"].find("participants of the meeting name different host keys: its relay links are refused", ""); !ok {
		t.Fatal("de-fra did not log the conflicting host keys")
	}
	m.relay("m1", "de-fra", "fr-par", policy.Policy{})
	m.relay("m1", "fr-par", "de-fra", policy.Policy{})
	m.heartbeat("fr-par", func(cluster.Heartbeat) bool { return true })
	m.heartbeat("fr-par", func(cluster.Heartbeat) bool { return true })
	if r := append(m.nodes["de-fra"].Relays(), m.nodes["fr-par"].Relays()...); len(r) != 0 {
		t.Fatalf("links after conflicting host keys: %+v", r)
	}
}

// statementWith is m.statement naming enrollment key enroll instead of the
// deployment's.
func (m *mesh) statementWith(key ed25519.PrivateKey, p policy.Policy, enroll ed25519.PublicKey) json.RawMessage {
	m.t.Helper()
	eff, err := policy.Combine(policy.Policy{}, p)
	if err != nil {
		m.t.Fatal(err)
	}
	m.hostMu.Lock()
	m.seq++
	st := hoststmt.NewPolicy(uint64(time.Now().UnixMilli())+m.seq, eff, enroll)
	m.hostMu.Unlock()
	if err := st.Sign(key); err != nil {
		m.t.Fatal(err)
	}
	raw, err := json.Marshal(st)
	if err != nil {
		m.t.Fatal(err)
	}
	return raw
}

// The first host policy a node holds fixes the meeting's enrollment key: a
// newer host-signed statement naming another (one a control plane swapped
// into the host's preview, under which it certifies any machine as "DE")
// is ignored, whether a participant's join or the control plane brings it.
// The link its peer's honest certificate allows stays up, and a peer
// certified only by the other key is refused.
func TestHostPolicyKeepsTheMeetingsEnrollmentKey(t *testing.T) {
	_, rogue, _ := ed25519.GenerateKey(nil)
	_, evilID, _ := ed25519.GenerateKey(nil)
	serial, _ := nodecert.NewSerial()
	evilCert, err := nodecert.Issue(rogue, nodecert.Cert{Serial: serial, NodeID: "evil", Country: "DE", Region: "eu-central-1",
		IdentityKey: evilID.Public().(ed25519.PublicKey), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	m := startMesh(t,
		Config{ID: "de-fra", Country: "DE", Region: "eu-central-1"},
		Config{ID: "fr-par", Country: "FR", Region: "eu-west-3"},
		Config{ID: "evil", Country: "DE", Region: "eu-central-1", IdentityKey: evilID, Cert: string(evilCert)},
	)
	host := m.hostKey("m1")
	m.hostJoin("de-fra", "m1", "a", host, noChina)
	m.hostJoin("fr-par", "m1", "b", host, noChina)
	waitFor(t, 10*time.Second, "the link up", func() bool {
		m.relay("m1", "de-fra", "fr-par", policy.Policy{})
		return len(m.nodes["de-fra"].Relays()) == 1
	})

	rogueKey := rogue.Public().(ed25519.PublicKey)
	sfutest.JoinWith(t, m.nodes["de-fra"].Info().URL, "c", signal.Message{Token: m.joinToken("de-fra", "m1", "c", time.Now()),
		HostKey: host.Public().(ed25519.PublicKey), Statement: m.statementWith(host, policy.Policy{}, rogueKey)})
	m.command("de-fra", cluster.Command{Kind: cluster.CommandHost, Meeting: "m1", Statement: m.statementWith(host, policy.Policy{}, rogueKey)})
	waitFor(t, 5*time.Second, "de-fra ignores both statements", func() bool {
		return m.logs["de-fra"].count("host policy statement ignored: it names another enrollment key than the meeting's") == 2
	})
	// The rogue-certified node, holding the rogue statement, dials de-fra.
	sfutest.JoinWith(t, m.nodes["evil"].Info().URL, "d", signal.Message{Token: m.joinToken("evil", "m1", "d", time.Now()),
		HostKey: host.Public().(ed25519.PublicKey), Statement: m.statementWith(host, policy.Policy{}, rogueKey)})
	m.relay("m1", "evil", "de-fra", policy.Policy{})
	waitFor(t, 5*time.Second, "de-fra refuses the rogue-certified peer", func() bool {
		rec, ok := m.refused("de-fra", CodeRelayBadCert)
		return ok && strings.Contains(rec["reason"], "evil")
	})
	m.heartbeat("de-fra", func(cluster.Heartbeat) bool { return true })
	if r := m.nodes["de-fra"].Relays(); len(r) != 1 || r[0].Peer != "fr-par" {
		t.Fatalf("de-fra's links after the statements naming another enrollment key: %+v", r)
	}
}

// count is how many records have msg.
func (r *records) count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, x := range r.recs {
		if x["msg"] == msg {
			n++
		}
	}
	return n
}
