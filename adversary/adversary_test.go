package adversary_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/adversary"
	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/nodecert"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

func specs() []testcluster.NodeSpec {
	return []testcluster.NodeSpec{
		{ID: "de-fra", Country: "DE", Region: "eu-central-1"},
		{ID: "cn-pek", Country: "CN", Region: "cn-north-1"},
	}
}

// The store rewrite takes: once a meeting's stored policy no longer blocks
// CN, the control plane places a join from CN on the CN node, though the
// host's statement still blocks CN. Without this the attack tests that
// count on a misplacing control plane would test nothing.
func TestStoreRewriteMisplaces(t *testing.T) {
	ctx := context.Background()
	c := testcluster.Start(t, policy.Policy{}, specs())
	m := c.CreateMeeting(policy.Policy{BlockedCountries: []string{"CN"}})
	jr, ae, _ := c.Join(m.ID, "CN")
	if ae != nil || jr.Node.ID != "de-fra" {
		t.Fatalf("honest placement of a CN join: %+v %v", jr.Node, ae)
	}
	nc, err := c.NATS().ConnectControl("rewriter")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	st, err := adversary.OpenStore(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RewritePolicy(ctx, m.ID, adversary.Unblock("CN")); err != nil {
		t.Fatal(err)
	}
	jr, ae, _ = c.Join(m.ID, "CN")
	if ae != nil || jr.Node.ID != "cn-pek" {
		t.Fatalf("placement after the rewrite: %+v %v", jr.Node, ae)
	}
	// The host's word is untouched: its statement still blocks CN.
	s := policyStatement(t, jr.Host)
	if eff, err := s.Effective(); err != nil || eff.Allows("CN", "") {
		t.Fatalf("host statement after the rewrite: %+v (%v)", s.Rules, err)
	}
}

func policyStatement(t *testing.T, hs api.HostState) hoststmt.Statement {
	t.Helper()
	for _, s := range hs.Statements {
		if s.Kind == hoststmt.KindPolicy {
			if err := s.Verify(hs.Key); err != nil {
				t.Fatalf("policy statement: %v", err)
			}
			return s
		}
	}
	t.Fatalf("no policy statement in %+v", hs)
	return hoststmt.Statement{}
}

// The front passes answers as they are until told to lie, then the
// client sees the lie: a self-signed certificate that the enrollment key
// in the host's statement does not verify.
func TestFrontEditsJoinAnswers(t *testing.T) {
	ctx := context.Background()
	c := testcluster.Start(t, policy.Policy{}, specs()[:1])
	m := c.CreateMeeting(policy.Policy{})
	f, err := adversary.StartFront(c.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cl := apiclient.New(f.URL, nil)
	join := func() api.JoinResponse {
		jr, err := cl.Join(ctx, m.ID, api.JoinRequest{Name: "x", Secret: m.JoinSecret, Location: api.Hint{Country: "DE"}})
		if err != nil {
			t.Fatal(err)
		}
		return jr
	}
	honest := join()
	key := policyStatement(t, honest.Host).EnrollmentKey
	if _, err := nodecert.Verify(key, []byte(honest.Node.Cert), time.Now()); err != nil {
		t.Fatalf("honest answer through the front: %v (%s)", err, adversary.Describe(honest.Node.Cert))
	}
	f.SetJoinEdit(adversary.OnNode("de-fra", func(jr *api.JoinResponse) {
		s, err := adversary.SelfSigned(jr.Node.Cert)
		if err != nil {
			t.Error(err)
		}
		jr.Node.Cert = s
	}))
	lied := join()
	if _, err := nodecert.Verify(key, []byte(lied.Node.Cert), time.Now()); !errors.Is(err, nodecert.ErrWrongKey) {
		t.Fatalf("self-signed certificate verifies: %v", err)
	}
	if e := f.Edited(); len(e) != 1 || e[0].Participant != lied.ParticipantID || e[0].Node != "de-fra" {
		t.Fatalf("edited joins: %+v", e)
	}
}

// A node started here logs where the test can read it, and an intruder
// placed on it is seen connecting.
func TestNodeLogAndIntruder(t *testing.T) {
	ctx := context.Background()
	c := testcluster.Start(t, policy.Policy{}, nil)
	n := adversary.StartNode(t, c, adversary.NodeSpec{ID: "de-fra", Country: "DE", Region: "eu-central-1"})
	c.WaitHealthy(1)
	m := c.CreateMeeting(policy.Policy{})
	in, err := adversary.Intrude(ctx, adversary.IntruderConfig{Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, Name: "i", Country: "DE"})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	testcluster.WaitFor(t, 10*time.Second, "the intruder connected", func() bool {
		return in.Welcomed() && n.Connected(in.Join.ParticipantID)
	})
}
