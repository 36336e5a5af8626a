package control

import (
	"context"
	"crypto/ed25519"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/nodecert"
	"github.com/oakmeet/oakmeet/policy"
)

// Each attack registers evil-de, in DE by its heartbeat, with its own NATS
// identity (so on its own subject) but no certificate that vouches for it.
// It must never be placed on, however many join, and its refusal must be
// visible and audited once.
func TestUncertifiedNodeIsNeverPlaced(t *testing.T) {
	_, stranger, _ := ed25519.GenerateKey(nil)
	past := time.Now().Add(-48 * time.Hour)
	for _, tc := range []struct {
		name, code string
		forge      func(n *fakeNodeState)
	}{
		{"no certificate", "no_certificate", func(n *fakeNodeState) { n.info.Cert = "" }},
		{"another enrollment key", "wrong_enrollment_key", func(n *fakeNodeState) {
			n.info.Cert = issueCert(t, stranger, n.info, past, time.Now().Add(time.Hour))
		}},
		{"expired", "expired", func(n *fakeNodeState) {
			n.info.Cert = issueCert(t, testEnrollmentKey, n.info, past, past.Add(time.Hour))
		}},
		{"certified for another country", "mismatch_country", func(n *fakeNodeState) {
			jp := n.info
			jp.Country = "JP"
			n.info.Cert = issueCert(t, testEnrollmentKey, jp, past, time.Now().Add(time.Hour))
		}},
		{"another node's identity key", "mismatch_identity_key", func(n *fakeNodeState) {
			other, _, _ := ed25519.GenerateKey(nil)
			n.info.IdentityKey = other
		}},
		{"a forged signature", "bad_signature", func(n *fakeNodeState) {
			// One character of the signature's R changed (the last ones
			// of S are mostly zero bits, and might not change it).
			sig := strings.LastIndexByte(n.info.Cert, '.') + 1
			flip := map[byte]byte{'A': 'B'}[n.info.Cert[sig]]
			if flip == 0 {
				flip = 'A'
			}
			n.info.Cert = n.info.Cert[:sig] + string(flip) + n.info.Cert[sig+1:]
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRigWith(t, func(n *fakeNodeState) {
				if n.info.ID == "evil-de" {
					tc.forge(n)
				}
			}, "de-fra:DE", "evil-de:DE")
			expectUncertified(t, r, "evil-de", tc.code)
			m := r.createMeeting(policy.Policy{AllowedCountries: []string{"DE"}})
			for range 6 {
				if jr := r.join(m.ID, "DE", ""); jr.Node.ID != "de-fra" {
					t.Fatalf("a join was placed on %s", jr.Node.ID)
				}
			}
			// Alone, it is no node at all: joins are refused, not placed there.
			r.setNode("de-fra", func(n *fakeNodeState) { n.silent = true })
			r.waitFor("de-fra down", func() bool {
				return !slices.ContainsFunc(r.nodeList(), func(n api.Node) bool { return n.ID == "de-fra" && n.Healthy })
			})
			if _, err := r.api.Join(context.Background(), m.ID, api.JoinRequest{Location: api.Hint{Country: "DE"}, Secret: r.secret(m.ID)}); err == nil {
				t.Fatal("a join was placed with only the uncertified node up")
			}
			// Its certificate is refused once, not at every heartbeat. (On a
			// loaded machine its heartbeats may also lapse for a moment,
			// which is audited as such.)
			if got := r.audit("", audit.KindNodeDown); len(slices.DeleteFunc(got, func(s string) bool { return !strings.HasPrefix(s, "evil-de certificate refused") })) != 1 {
				t.Fatalf("evil-de's certificate audited %q, want once", got)
			}
		})
	}
}

// expectUncertified waits until the node is listed, healthy but not
// certified for the reason code, and audited so.
func expectUncertified(t *testing.T, r *rig, id, code string) {
	t.Helper()
	r.waitFor(id+" listed as uncertified", func() bool {
		return slices.ContainsFunc(r.nodeList(), func(n api.Node) bool {
			return n.ID == id && n.Healthy && !n.Certified && n.CertError != ""
		})
	})
	r.waitFor(id+" audited", func() bool {
		return slices.ContainsFunc(r.audit("", audit.KindNodeDown), func(s string) bool {
			return strings.HasPrefix(s, id+" certificate refused ("+code+")")
		})
	})
}

func TestRevokedNodeLosesItsParticipants(t *testing.T) {
	r := startRig(t, "de-fra:DE", "de-ber:DE")
	m := r.createMeeting(policy.Policy{AllowedCountries: []string{"DE"}})
	jr := r.join(m.ID, "DE", "")
	victim, other := jr.Node.ID, "de-ber"
	if victim == other {
		other = "de-fra"
	}
	list, err := nodecert.IssueRevocation(testEnrollmentKey, nodecert.Revocations{Seq: 1, IssuedAt: time.Now(),
		Entries: []nodecert.Revocation{{NodeID: victim, At: time.Now()}}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := r.srv.SetRevocations(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	// At once: nothing new goes there.
	for range 4 {
		if j := r.join(m.ID, "DE", ""); j.Node.ID != other {
			t.Fatalf("placed on revoked %s", j.Node.ID)
		}
	}
	r.expectCommands(forParticipant(jr.ParticipantID), "move "+victim+" "+jr.ParticipantID+" "+api.ReasonNodeUncertified)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("moved after %s", d)
	}
	expectUncertified(t, r, victim, "revoked")
	// An older list cannot undo it; the same list again changes nothing.
	if err := r.srv.SetRevocations(context.Background(), list); err != nil {
		t.Fatalf("the held list again: %v", err)
	}
	empty, _ := nodecert.IssueRevocation(testEnrollmentKey, nodecert.Revocations{Seq: 1, IssuedAt: time.Now().Add(time.Second), Entries: nil})
	if err := r.srv.SetRevocations(context.Background(), empty); err == nil {
		t.Fatal("a list with the held seq but other entries was taken")
	}
	_, stranger, _ := ed25519.GenerateKey(nil)
	forged, _ := nodecert.IssueRevocation(stranger, nodecert.Revocations{Seq: 2, IssuedAt: time.Now(), Entries: nil})
	if err := r.srv.SetRevocations(context.Background(), forged); err == nil {
		t.Fatal("a list of another key was taken")
	}
	if n := slices.IndexFunc(r.nodeList(), func(n api.Node) bool { return n.ID == victim && n.Certified }); n >= 0 {
		t.Fatalf("%s certified again", victim)
	}
	r.expectAudit("", audit.KindNodeDown, victim+" certificate refused (revoked): certificate "+certSerial(t, r, victim)+" is revoked")
}

func certSerial(t *testing.T, r *rig, id string) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := nodecert.Parse([]byte(r.nodes[id].info.Cert))
	if err != nil {
		t.Fatal(err)
	}
	return c.Serial
}

// A certificate that expires while the node runs stops it being used at
// the next tick, without waiting for a heartbeat.
func TestCertificateExpiringOnTheRun(t *testing.T) {
	r := startRigWith(t, func(n *fakeNodeState) {
		n.info.Cert = issueCert(t, testEnrollmentKey, n.info, time.Now().Add(-time.Hour), time.Now().Add(1500*time.Millisecond))
	}, "de-fra:DE")
	expectUncertified(t, r, "de-fra", "expired")
	m := r.createMeeting(policy.Policy{})
	if _, err := r.api.Join(context.Background(), m.ID, api.JoinRequest{Location: api.Hint{Country: "DE"}, Secret: r.secret(m.ID)}); err == nil {
		t.Fatal("placed on a node whose certificate expired")
	}
}

// The certifier alone: a registration is checked field by field against
// its certificate.
func TestCertifierNamesTheFieldThatDiffers(t *testing.T) {
	c := testCertifier(t)
	info := enrolled(cluster.NodeInfo{ID: "de-fra", Country: "DE", Region: "eu-central-1"})
	now := time.Now()
	if st := c.check(info, certStatus{}, now); !st.ok {
		t.Fatalf("a good registration refused: %s", st.msg)
	}
	for field, mod := range map[string]func(*cluster.NodeInfo){
		"node":    func(i *cluster.NodeInfo) { i.ID = "de-fra2" },
		"country": func(i *cluster.NodeInfo) { i.Country = "AT" },
		"region":  func(i *cluster.NodeInfo) { i.Region = "" },
	} {
		bad := info
		mod(&bad)
		if st := c.check(bad, certStatus{}, now); st.ok || st.code != "mismatch_"+field {
			t.Errorf("%s changed: %+v", field, st)
		}
	}
}

// A revoked node's relay links are closed at both ends, and none is
// ordered to it again.
func TestRevokedNodeLosesItsRelays(t *testing.T) {
	r := startRig(t, "de-fra:DE", "us-iad:US", "us-ord:US")
	m := r.createMeeting(policy.Policy{})
	r.join(m.ID, "DE", "")
	us := r.join(m.ID, "US", "")
	r.waitFor("the relay ordered", func() bool { return len(r.commands(ofKind(cluster.CommandRelay))) > 0 })
	r.setNode("de-fra", func(n *fakeNodeState) {
		n.relays = []cluster.RelayLink{{Meeting: m.ID, Peer: us.Node.ID, Dialer: true, Connected: true}}
	})
	r.waitFor("the link reported", func() bool { return len(r.routing(m.ID).Relays) == 1 })
	list, _ := nodecert.IssueRevocation(testEnrollmentKey, nodecert.Revocations{Seq: 1, IssuedAt: time.Now(),
		Entries: []nodecert.Revocation{{NodeID: us.Node.ID, At: time.Now()}}})
	if err := r.srv.SetRevocations(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	r.waitFor("both ends of the link told to close it", func() bool {
		got := r.commands(ofKind(cluster.CommandUnrelay))
		return slices.Contains(got, "unrelay de-fra>"+us.Node.ID) && slices.Contains(got, "unrelay "+us.Node.ID+">de-fra")
	})
	if v := r.routing(m.ID); len(v.Relays) != 1 || !v.Relays[0].Closing {
		t.Fatalf("routing relays %+v", v.Relays)
	}
	r.expectCommands(forParticipant(us.ParticipantID), "move "+us.Node.ID+" "+us.ParticipantID+" "+api.ReasonNodeUncertified)
	relays := len(r.commands(ofKind(cluster.CommandRelay)))
	// The link stays reported for a while: it is told again to close, and
	// no relay is ordered to the revoked node meanwhile.
	n := len(r.commands(ofKind(cluster.CommandUnrelay)))
	r.waitFor("the reported link closed again", func() bool { return len(r.commands(ofKind(cluster.CommandUnrelay))) > n })
	for _, c := range r.commands(ofKind(cluster.CommandRelay))[relays:] {
		if strings.Contains(c, us.Node.ID) {
			t.Fatalf("a relay to the revoked node was ordered: %s", c)
		}
	}
}
