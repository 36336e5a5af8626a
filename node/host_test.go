package node

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/sfu"
	"github.com/oakmeet/oakmeet/sfu/sfutest"
	"github.com/oakmeet/oakmeet/signal"
)

// wsJoin connects participant id to meeting on node over signaling only
// and waits for its welcome.
func (m *mesh) wsJoin(node, meeting, id string) *sfutest.Peer {
	m.t.Helper()
	return sfutest.Join(m.t, m.nodes[node].Info().URL, id, m.joinToken(node, meeting, id, time.Now()))
}

func isHost(statement string) func(signal.Message) bool {
	return func(m signal.Message) bool { return m.Type == signal.TypeHost && string(m.Payload) == statement }
}

func TestHostStatementReachesEveryParticipantOfTheMeeting(t *testing.T) {
	m := startMesh(t, Config{ID: "de-fra", Country: "DE"})
	a := m.wsJoin("de-fra", "m1", "a")
	b := m.wsJoin("de-fra", "m1", "b")
	other := m.wsJoin("de-fra", "m2", "o")
	a.WaitFor("b", func(x signal.Message) bool { return x.Type == signal.TypeParticipantJoined })

	// Participants cannot send host messages: only the control plane's
	// command makes one.
	forged := `{"kind":"remove","seq":1,"participant":"b","sig":"c2ln"}`
	a.Send(signal.Message{Type: signal.TypeHost, Payload: json.RawMessage(forged)})
	if e := a.WaitFor("an error", func(x signal.Message) bool { return x.Type == signal.TypeError }); e.Code != sfu.CodeUnexpectedType {
		t.Fatalf("a host message from a participant was answered with %+v", e)
	}

	settings := `{"kind":"settings","seq":1764220800000,"locked":true,"sig":"c2ln"}`
	m.command("de-fra", cluster.Command{Kind: cluster.CommandHost, Meeting: "m1", Statement: json.RawMessage(settings)})
	a.WaitFor("the settings statement", isHost(settings))
	b.WaitFor("the settings statement", isHost(settings))

	// A later statement for m2 is the first host message its participant
	// gets: m1's went to m1 alone.
	policy := `{"kind":"policy","seq":1764220800001,"policy_hash":"h","sig":"c2ln"}`
	m.command("de-fra", cluster.Command{Kind: cluster.CommandHost, Meeting: "m2", Statement: json.RawMessage(policy)})
	got := other.WaitFor("a host statement", func(x signal.Message) bool { return x.Type == signal.TypeHost })
	if string(got.Payload) != policy {
		t.Fatalf("m2's participant got %s first, want its own meeting's %s", got.Payload, policy)
	}
	for _, p := range []*sfutest.Peer{a, b} {
		if n := len(slices.DeleteFunc(p.Received(), func(x signal.Message) bool { return x.Type != signal.TypeHost })); n != 1 {
			t.Fatalf("%s got %d host messages, want m1's settings alone", p.ID, n)
		}
	}
}

func TestHostRemovalKicksAfterTheStatement(t *testing.T) {
	m := startMesh(t, Config{ID: "de-fra", Country: "DE"})
	a := m.wsJoin("de-fra", "m1", "a")
	b := m.wsJoin("de-fra", "m1", "b")
	c := m.wsJoin("de-fra", "m1", "c")
	a.WaitFor("c", func(x signal.Message) bool {
		return x.Type == signal.TypeParticipantJoined && x.Participant.ID == "c"
	})

	removal := `{"kind":"remove","seq":1764220800000,"participant":"b","sig":"c2ln"}`
	m.command("de-fra", cluster.Command{Kind: cluster.CommandHost, Meeting: "m1", Participant: "b", Statement: json.RawMessage(removal)})

	if code := b.Closed(); code != websocket.StatusNormalClosure {
		t.Fatalf("removed participant's connection closed with %v", code)
	}
	msgs := b.Received()
	hostAt := slices.IndexFunc(msgs, isHost(removal))
	leaveAt := slices.IndexFunc(msgs, func(x signal.Message) bool { return x.Type == signal.TypeLeave })
	if hostAt < 0 || leaveAt < 0 || leaveAt < hostAt {
		t.Fatalf("removed participant got the statement at %d and the leave at %d of %+v", hostAt, leaveAt, msgs)
	}
	if r := msgs[leaveAt].Reason; r != signal.ReasonRemoved {
		t.Fatalf("leave reason %q, want %q", r, signal.ReasonRemoved)
	}
	for _, p := range []*sfutest.Peer{a, c} {
		p.WaitFor("the removal", isHost(removal))
		p.WaitFor("b leaving", func(x signal.Message) bool {
			return x.Type == signal.TypeParticipantLeft && x.Participant.ID == "b"
		})
	}
	waitFor(t, 5*time.Second, "b gone from the node", func() bool {
		return !slices.Contains(m.nodes["de-fra"].sfu.Participants("m1"), "b")
	})
	// The others stay: a statement after the removal still reaches them.
	next := `{"kind":"settings","seq":1764220800001,"lobby":true,"sig":"c2ln"}`
	m.command("de-fra", cluster.Command{Kind: cluster.CommandHost, Meeting: "m1", Statement: json.RawMessage(next)})
	a.WaitFor("the next statement", isHost(next))
	c.WaitFor("the next statement", isHost(next))
}

func TestHostRemovalWithoutAStatementStillKicks(t *testing.T) {
	m := startMesh(t, Config{ID: "de-fra", Country: "DE"})
	a := m.wsJoin("de-fra", "m1", "a")
	m.command("de-fra", cluster.Command{Kind: cluster.CommandHost, Meeting: "m1", Participant: "a"})
	a.Closed()
	leave := a.WaitFor("the leave", func(x signal.Message) bool { return x.Type == signal.TypeLeave })
	if leave.Reason != signal.ReasonRemoved {
		t.Fatalf("leave reason %q, want %q", leave.Reason, signal.ReasonRemoved)
	}
	if slices.ContainsFunc(a.Received(), func(x signal.Message) bool { return x.Type == signal.TypeHost }) {
		t.Fatal("a host message without a statement was sent")
	}
	if _, ok := m.logs["de-fra"].find("host statement not sent", ""); !ok {
		t.Fatal("the missing statement was not logged")
	}
}

func TestHostStatementDoesNotCrossRelayLinks(t *testing.T) {
	m := startMesh(t,
		Config{ID: "de-fra", Country: "DE", Region: "eu-central-1"},
		Config{ID: "fr-par", Country: "FR", Region: "eu-west-3"},
	)
	here := m.hostJoin("de-fra", "m1", "here", m.hostKey("m1"), europe)
	there := m.hostJoin("fr-par", "m1", "there", m.hostKey("m1"), europe)
	m.relay("m1", "de-fra", "fr-par", europe)
	there.WaitFor("here across the link", func(x signal.Message) bool {
		return x.Type == signal.TypeParticipantJoined && x.Participant.ID == "here"
	})

	// The control plane sends the statement to each node of the meeting
	// itself; a node passes it to its own participants only.
	first := `{"kind":"settings","seq":1764220800000,"locked":true,"sig":"c2ln"}`
	m.command("de-fra", cluster.Command{Kind: cluster.CommandHost, Meeting: "m1", Statement: json.RawMessage(first)})
	here.WaitFor("the statement", isHost(first))
	// A chat from here after the statement has crossed the link when it
	// reaches there; so would a forwarded statement have.
	here.Send(signal.Message{Type: signal.TypeChat, Text: "after"})
	there.WaitFor("the chat", func(x signal.Message) bool { return x.Type == signal.TypeChat && x.From == "here" })
	if n := there.Count(func(x signal.Message) bool { return x.Type == signal.TypeHost }); n != 0 {
		t.Fatalf("a statement for de-fra's participants reached fr-par's %d times", n)
	}
	m.command("fr-par", cluster.Command{Kind: cluster.CommandHost, Meeting: "m1", Statement: json.RawMessage(first)})
	there.WaitFor("the statement from its own node", isHost(first))
	if n := here.Count(isHost(first)); n != 1 {
		t.Fatalf("here got the statement %d times, want once", n)
	}
}
