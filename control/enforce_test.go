package control

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/policy"
)

func TestPolicyChangeMovesOnceThenDisconnects(t *testing.T) {
	r := startRig(t, "de-fra:DE", "us-iad:US")
	m := r.createMeeting(policy.Policy{})
	jr := r.join(m.ID, "US", "")
	if jr.Node.ID != "us-iad" {
		t.Fatalf("placed on %s", jr.Node.ID)
	}
	pid := jr.ParticipantID
	r.setPolicy(m, policy.Policy{BlockedCountries: []string{"US"}})
	r.expectCommands(forParticipant(pid), "move us-iad "+pid+" policy_change")
	// The participant never moves: past the deadline it is disconnected.
	// Meanwhile many ticks planned the meeting; none asked again.
	r.expectCommands(forParticipant(pid), "move us-iad "+pid+" policy_change", "kick us-iad "+pid+" policy_change")
	if got := r.audit(m.ID, audit.KindMigration); len(got) != 1 || !strings.HasPrefix(got[0], pid+" us-iad policy_change: asked to leave") {
		t.Fatalf("migration entries %q", got)
	}
	r.waitFor("the departure stored", func() bool { return len(r.routing(m.ID).Participants) == 0 })
	r.expectAudit(m.ID, audit.KindDisconnect, pid+" us-iad policy_change: did not move within "+r.timing.MoveDeadline.String())
}

func TestNoAllowedNodeDisconnects(t *testing.T) {
	r := startRig(t, "us-iad:US", "cn-pek:CN")
	m := r.createMeeting(policy.Policy{BlockedCountries: []string{"CN"}})
	pid := r.join(m.ID, "US", "").ParticipantID
	r.setPolicy(m, policy.Policy{BlockedCountries: []string{"CN", "US"}})
	r.expectCommands(forParticipant(pid), "kick us-iad "+pid+" policy_no_allowed_node")
	// The seat is given back once the departure is stored.
	r.waitFor("no seat taken", func() bool {
		return !slices.ContainsFunc(r.nodeList(), func(n api.Node) bool { return n.Load.Assigned != 0 })
	})
	if v := r.routing(m.ID); len(v.Participants) != 0 {
		t.Fatalf("still routed: %+v", v.Participants)
	}
	r.expectAudit(m.ID, audit.KindDisconnect, pid+" us-iad policy_no_allowed_node")
}

func TestDrainMovesAndReplacedIsClosed(t *testing.T) {
	r := startRig(t, "de-fra:DE", "us-iad:US")
	m := r.createMeeting(policy.Policy{})
	old := r.join(m.ID, "DE", "").ParticipantID
	r.setNode("de-fra", func(n *fakeNodeState) { n.draining = true })
	r.expectCommands(forParticipant(old), "move de-fra "+old+" node_draining")
	if v := r.routing(m.ID); v.Participants[0].Moving != api.ReasonNodeDraining {
		t.Fatalf("routing %+v", v.Participants)
	}
	// The client moves: its new participant connects elsewhere, and after
	// ReplacedGrace the old connection is closed as moved, not audited
	// as a disconnect.
	moved := r.join(m.ID, "DE", old)
	if moved.Node.ID != "us-iad" {
		t.Fatalf("moved onto %s", moved.Node.ID)
	}
	r.expectCommands(forParticipant(old), "move de-fra "+old+" node_draining", "kick de-fra "+old+" moved")
	r.waitFor("only the new participant routed", func() bool {
		v := r.routing(m.ID)
		return len(v.Participants) == 1 && v.Participants[0].ID == moved.ParticipantID
	})
	r.expectAudit(m.ID, audit.KindDisconnect)
}

func TestSilentNodeIsDown(t *testing.T) {
	r := startRig(t, "de-fra:DE", "us-iad:US")
	m := r.createMeeting(policy.Policy{})
	pid := r.join(m.ID, "DE", "").ParticipantID
	r.setNode("de-fra", func(n *fakeNodeState) { n.silent = true })
	r.waitFor("the node_down entry", func() bool { return len(r.audit("", audit.KindNodeDown)) > 0 })
	r.expectAudit("", audit.KindNodeDown, "de-fra no heartbeat for "+r.timing.HeartbeatTimeout.String())
	if nodes := r.nodeList(); nodes[0].ID != "de-fra" || nodes[0].Healthy {
		t.Fatalf("nodes %+v", r.nodeList())
	}
	r.waitFor("the participant gone", func() bool { return len(r.routing(m.ID).Participants) == 0 })
	r.expectAudit(m.ID, audit.KindDisconnect, pid+" de-fra node_down")
	if got := r.commands(forParticipant(pid)); len(got) != 0 {
		t.Fatalf("commands to a dead node: %q", got)
	}
}

func TestRelaysFollowPolicy(t *testing.T) {
	r := startRig(t, "de-fra:DE", "us-iad:US", "jp-tyo:JP")
	m := r.createMeeting(policy.Policy{})
	r.join(m.ID, "DE", "")
	r.join(m.ID, "US", "")
	r.waitFor("the relay ordered", func() bool { return len(r.commands(ofKind(cluster.CommandRelay))) > 0 })
	if got := r.commands(ofKind(cluster.CommandRelay)); got[0] != "relay de-fra>us-iad" {
		t.Fatalf("relay commands %q", got)
	}
	// The order goes out before its entry is appended.
	r.waitFor("the relay's audit entry", func() bool { return len(r.audit(m.ID, audit.KindRelay)) > 0 })
	if got := r.audit(m.ID, audit.KindRelay); len(got) != 1 {
		t.Fatalf("relay entries %q", got)
	}
	// Lost commands are covered: the order is sent again.
	r.waitFor("the relay ordered again", func() bool { return len(r.commands(ofKind(cluster.CommandRelay))) > 1 })
	r.setNode("de-fra", func(n *fakeNodeState) {
		n.relays = []cluster.RelayLink{{Meeting: m.ID, Peer: "us-iad", Dialer: true, Connected: true}}
	})
	r.waitFor("the link reported", func() bool { return len(r.routing(m.ID).Relays) == 1 })

	r.setPolicy(m, policy.Policy{BlockedCountries: []string{"US"}})
	// Both ends are told; a tick that planned meanwhile may also have told
	// de-fra, which still reports the link, so the order is not fixed.
	r.waitFor("both ends of the link told to close it", func() bool {
		got := r.commands(ofKind(cluster.CommandUnrelay))
		return slices.Contains(got, "unrelay de-fra>us-iad") && slices.Contains(got, "unrelay us-iad>de-fra")
	})
	if v := r.routing(m.ID); len(v.Relays) != 1 || !v.Relays[0].Closing {
		t.Fatalf("routing relays %+v", v.Relays)
	}
	// While de-fra still reports the link, it is told again to close it.
	n := len(r.commands(ofKind(cluster.CommandUnrelay)))
	r.waitFor("the reported link closed again", func() bool { return len(r.commands(ofKind(cluster.CommandUnrelay))) > n })
	if got := r.commands(ofKind(cluster.CommandUnrelay)); got[len(got)-1] != "unrelay de-fra>us-iad" {
		t.Fatalf("unrelay commands %q", got)
	}
	relays := len(r.commands(ofKind(cluster.CommandRelay)))
	r.setNode("de-fra", func(n *fakeNodeState) { n.relays = nil })
	r.waitFor("the link gone", func() bool { return len(r.routing(m.ID).Relays) == 0 })
	if got := r.commands(ofKind(cluster.CommandRelay)); len(got) != relays {
		t.Fatalf("a relay to a blocked node was ordered: %q", got[relays:])
	}
}

// A client that hangs up during its join (or its host's policy change)
// must not leave the work half done: the seat it took is either used by a
// stored participant or given back, and a stored change is audited.
func TestHangUpLeavesNothingHalfDone(t *testing.T) {
	r := startRig(t, "de-fra:DE")
	m := r.createMeeting(policy.Policy{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the client is gone before the server starts on the join
	req := httptest.NewRequestWithContext(ctx, "POST", api.MeetingPath(m.ID, "join"), strings.NewReader(`{"name":"Ann","location":{"country":"DE"},"secret":"`+m.JoinSecret+`"}`))
	rec := httptest.NewRecorder()
	r.srv.Handler().ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("join for a client that hung up: %d %s", rec.Code, rec.Body)
	}
	stored := len(r.routing(m.ID).Participants)
	if got := r.nodeList()[0].Load.Assigned; got != stored || stored != 1 {
		t.Fatalf("%d seats counted for %d stored participants", got, stored)
	}
	if got := r.audit(m.ID, audit.KindPlacement); len(got) != 1 {
		t.Fatalf("placement entries %q", got)
	}

	blockDE := policy.Policy{BlockedCountries: []string{"DE"}}
	body, _ := json.Marshal(api.PolicyRequest{Policy: blockDE,
		Statement: forge(t, r.host(m.ID).Key, uint64(time.Now().UnixMilli())+1000, hoststmt.NewPolicy(0, effectiveOf(t, blockDE), testEnrollmentPub()))})
	req = httptest.NewRequestWithContext(ctx, "PUT", api.MeetingPath(m.ID, "policy"), bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+m.HostToken)
	rec = httptest.NewRecorder()
	r.srv.Handler().ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("policy change for a host that hung up: %d %s", rec.Code, rec.Body)
	}
	if got := r.audit(m.ID, audit.KindPolicyChange); len(got) != 1 {
		t.Fatalf("policy change entries %q", got)
	}
	r.waitFor("the participant on the now-blocked node kicked", func() bool { return len(r.commands(ofKind(cluster.CommandKick))) == 1 })
}
