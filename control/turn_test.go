package control

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/turncred"
)

// turnNode gives a fake node a TURN server with a key signed by identity
// and returns the node's TURN key.
func turnNode(t *testing.T, r *rig, id string, sign ed25519.PrivateKey) (ed25519.PrivateKey, []string) {
	t.Helper()
	_, identity, _ := ed25519.GenerateKey(nil)
	key, err := turncred.NodeKey(identity)
	if err != nil {
		t.Fatal(err)
	}
	urls := []string{"turn:127.0.0.1:3478?transport=udp"}
	if sign == nil {
		sign = identity
	}
	r.setNode(id, func(n *fakeNodeState) {
		n.info.IdentityKey = identity.Public().(ed25519.PublicKey)
		n.info.TURN = &cluster.TURNService{URLs: urls, Key: key.PublicKey().Bytes(), KeySig: turncred.SignNodeKey(sign, key.PublicKey())}
		n.info = enrolled(n.info) // a new identity key needs a certificate naming it
	})
	return identity, urls
}

// joinWithTURN joins until the control plane has seen the node's TURN
// server, and returns the answer.
func joinWithTURN(r *rig, meetingID, country string) api.JoinResponse {
	var jr api.JoinResponse
	r.waitFor("a join answer with the node's TURN server", func() bool {
		jr = r.join(meetingID, country, "")
		return len(jr.ICEServers) > 0
	})
	return jr
}

func TestJoinIssuesATURNCredentialBoundToTheJoin(t *testing.T) {
	r := startRig(t, "de-fra:DE")
	identity, urls := turnNode(t, r, "de-fra", nil)
	m := r.createMeeting(policy.Policy{})
	jr := joinWithTURN(r, m.ID, "DE")
	if len(jr.ICEServers) != 1 || len(jr.ICEServers[0].URLs) != 1 || jr.ICEServers[0].URLs[0] != urls[0] {
		t.Fatalf("ice servers %+v", jr.ICEServers)
	}
	ice := jr.ICEServers[0]
	nodeKey, _ := turncred.NodeKey(identity)
	c, pass, err := turncred.Open(r.srv.PublicKey(), nodeKey, ice.Username)
	if err != nil || pass != ice.Credential {
		t.Fatalf("the node cannot open its credential: %v (password matches: %v)", err, pass == ice.Credential)
	}
	if c.Node != "de-fra" || c.Meeting != m.ID || c.Participant != jr.ParticipantID {
		t.Fatalf("credential claims %+v for %s in %s", c, jr.ParticipantID, m.ID)
	}
	// It expires with the join token, not hours later.
	if c.Expires.After(jr.Expires) || jr.Expires.Sub(c.Expires) >= time.Second {
		t.Fatalf("credential expires %s, join token %s", c.Expires, jr.Expires)
	}
	// Nobody without the node's key derives the password.
	_, stranger, _ := ed25519.GenerateKey(nil)
	otherKey, _ := turncred.NodeKey(stranger)
	if _, p, err := turncred.Open(r.srv.PublicKey(), otherKey, ice.Username); err != nil || p == ice.Credential {
		t.Fatalf("another key derives the password: %v", err)
	}
}

func TestJoinWithoutAVouchedTURNKeyHasNoTURN(t *testing.T) {
	r := startRig(t, "fr-par:FR")
	_, impostor, _ := ed25519.GenerateKey(nil)
	_, _ = turnNode(t, r, "fr-par", impostor) // key not signed by the node's identity
	r.waitFor("fr-par's TURN server registered", func() bool {
		n := r.srv.owner.live().byID["fr-par"]
		return n != nil && n.Info.TURN != nil
	})
	fr := r.createMeeting(policy.Policy{AllowedCountries: []string{"FR"}})
	jr := r.join(fr.ID, "FR", "")
	if jr.Node.ID != "fr-par" || len(jr.ICEServers) != 0 {
		t.Fatalf("join on %s with ice servers %+v", jr.Node.ID, jr.ICEServers)
	}
}
