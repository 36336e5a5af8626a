package control

import (
	"context"
	"testing"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/policy"
)

// A join answer names the node's certificate as the control plane
// verified it, so the participant's client can check the node itself.
func TestJoinAnswerCarriesTheNodeCert(t *testing.T) {
	r := startRig(t, "de-fra:DE")
	m := r.createMeeting(policy.Policy{})
	jr := r.join(m.ID, "DE", "")
	if want := r.nodes["de-fra"].info.Cert; jr.Node.Cert == "" || jr.Node.Cert != want {
		t.Fatalf("join answer's node cert %q, want the node's %q", jr.Node.Cert, want)
	}
}

// assigned is how many participants the control plane counts on a node.
func (r *rig) assigned(id string) int {
	r.t.Helper()
	for _, n := range r.nodeList() {
		if n.ID == id {
			return n.Load.Assigned
		}
	}
	r.t.Fatalf("no node %s", id)
	return 0
}

// A client that refuses its node joins again saying so: the refused
// placement is recorded as left with the refusal's code, the refusal is
// audited with the node and its country, and the new placement is on
// another node.
func TestRefusedNodeIsAuditedAndAvoided(t *testing.T) {
	r := startRig(t, "de-fra:DE", "fr-par:FR")
	m := r.createMeeting(policy.Policy{})
	ctx := context.Background()
	first, err := r.api.Join(ctx, m.ID, api.JoinRequest{Location: api.Hint{Country: "DE"}, Secret: m.JoinSecret})
	if err != nil || first.Node.ID != "de-fra" {
		t.Fatalf("first join: %+v %v", first.Node, err)
	}
	refused := &api.NodeRefusal{Code: api.CodeNodeNotAllowed, Message: "node de-fra is in DE"}
	retry := func(replaces, rejoin string, ref *api.NodeRefusal) (api.JoinResponse, error) {
		return r.api.Join(ctx, m.ID, api.JoinRequest{Location: api.Hint{Country: "DE"}, Secret: m.JoinSecret,
			Replaces: replaces, RejoinSecret: rejoin, Refused: ref})
	}
	// Refusals that do not name a placement proven to be the refuser's
	// change nothing.
	_, err = retry("", "", refused)
	r.expectRefused(err, 400, api.CodeBadRequest)
	_, err = retry(first.ParticipantID, "", refused)
	r.expectRefused(err, 400, api.CodeBadRequest)
	_, err = retry(first.ParticipantID, "wrong", refused)
	r.expectRefused(err, 403, api.CodeBadRejoinSecret)
	_, err = retry(first.ParticipantID, first.RejoinSecret, &api.NodeRefusal{Code: "i_dont_like_it"})
	r.expectRefused(err, 400, api.CodeBadRequest)
	if got := r.audit(m.ID, audit.KindNodeRefused); len(got) != 0 {
		t.Fatalf("refusals audited from unproven joins: %q", got)
	}

	again, err := retry(first.ParticipantID, first.RejoinSecret, refused)
	if err != nil {
		t.Fatal(err)
	}
	if again.Node.ID != "fr-par" {
		t.Fatalf("placed on %s again after refusing it", again.Node.ID)
	}
	r.expectAudit(m.ID, audit.KindNodeRefused, first.ParticipantID+" de-fra "+api.CodeNodeNotAllowed+": node de-fra is in DE")
	a, err := r.api.Audit(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range a.Entries {
		if e.Kind == audit.KindNodeRefused && (e.NodeCountry != "DE" || e.PolicyHash != m.PolicyHash) {
			t.Fatalf("refusal entry %+v: want node country DE and policy hash %s", e, m.PolicyHash)
		}
	}
	stored, _, err := r.srv.meetings.get(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p := stored.participant(first.ParticipantID); p.Left == nil || p.LeftReason != api.CodeNodeNotAllowed {
		t.Fatalf("refused placement %+v: want left for %s", p, api.CodeNodeNotAllowed)
	}
	if rt := r.routing(m.ID); len(rt.Participants) != 1 || rt.Participants[0].ID != again.ParticipantID {
		t.Fatalf("routing after the refusal %+v", rt.Participants)
	}
	r.waitFor("the refused seat given back", func() bool { return r.assigned("de-fra") == 0 && r.assigned("fr-par") == 1 })
	rep, err := r.api.MeetingReport(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Refusals) != 1 || rep.Refusals[0].Kind != audit.KindNodeRefused || rep.Refusals[0].Node != "de-fra" {
		t.Fatalf("meeting report refusals %+v: want the node refusal", rep.Refusals)
	}
}

// A participant connected to its node that refuses it (a newer host policy
// no longer allows it) is disconnected from it.
func TestConnectedParticipantRefusingItsNodeIsDisconnected(t *testing.T) {
	r := startRig(t, "de-fra:DE", "fr-par:FR")
	m := r.createMeeting(policy.Policy{})
	jr := r.join(m.ID, "DE", "")
	again, err := r.api.Join(context.Background(), m.ID, api.JoinRequest{Location: api.Hint{Country: "DE"}, Secret: m.JoinSecret,
		Replaces: jr.ParticipantID, RejoinSecret: jr.RejoinSecret, Refused: &api.NodeRefusal{Code: api.CodeNodeCertInvalid, Message: "expired"}})
	if err != nil || again.Node.ID != "fr-par" {
		t.Fatalf("join after refusing: %+v %v", again.Node, err)
	}
	r.expectCommands(forParticipant(jr.ParticipantID), "kick de-fra "+jr.ParticipantID+" "+api.CodeNodeCertInvalid)
	r.expectAudit(m.ID, audit.KindNodeRefused, jr.ParticipantID+" de-fra "+api.CodeNodeCertInvalid+": expired")
	r.waitFor("the refused seat given back", func() bool { return r.assigned("de-fra") == 0 })
}
