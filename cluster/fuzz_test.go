package cluster

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzSubjectNode checks the rule the control plane trusts node messages
// by: a subject names a node only if it is exactly that node's subject
// prefix and a valid id, so no crafted subject names another node.
func FuzzSubjectNode(f *testing.F) {
	f.Add(SubjectHeartbeat("de-1"))
	f.Add(SubjectEvents("n_2"))
	f.Add("oakmeet.node.de-1")
	f.Add("oakmeet.node..heartbeat")
	f.Add("oakmeet.node.a.b.c")
	f.Fuzz(func(t *testing.T, subject string) {
		id, ok := SubjectNode(subject)
		if !ok {
			if id != "" && ValidNodeID(id) == nil && strings.HasPrefix(subject, "oakmeet.node."+id+".") {
				t.Fatalf("%q refused though it names node %q", subject, id)
			}
			return
		}
		if ValidNodeID(id) != nil || strings.ContainsAny(id, ".*> ") {
			t.Fatalf("%q names the invalid node id %q", subject, id)
		}
		if !strings.HasPrefix(subject, "oakmeet.node."+id+".") {
			t.Fatalf("%q is not a subject of node %q", subject, id)
		}
	})
}

// FuzzDecodeEvent checks that whatever a node sends, a decoded event is
// small and plain: valid ids, a known kind, a short printable reason, and
// its encoding stays within a bound however JSON escapes it.
func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(`{"kind":"connected","node":"de-1","meeting":"m1","participant":"p1","time":"2026-01-02T03:04:05Z"}`))
	f.Add([]byte(`{"kind":"disconnected","node":"de-1","meeting":"m1","participant":"p1","reason":"<<<<<<<<"}`))
	f.Add([]byte(`{"kind":"disconnected","node":"de-1","meeting":"m1","participant":"p1","reason":"\u0000\u2028"}`))
	f.Add([]byte(`{"kind":"other","node":"de.1"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := DecodeEvent(data)
		if err != nil {
			return
		}
		if ev.Kind != EventConnected && ev.Kind != EventDisconnected {
			t.Fatalf("kind %q accepted", ev.Kind)
		}
		for _, id := range []string{ev.Node, ev.Meeting, ev.Participant} {
			if ValidNodeID(id) != nil {
				t.Fatalf("id %q accepted", id)
			}
		}
		if ev.Reason != UnreadableReason && !readableReason(ev.Reason) {
			t.Fatalf("reason %q kept", ev.Reason)
		}
		out, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) > 1024 {
			t.Fatalf("a decoded event encodes to %d bytes", len(out))
		}
	})
}
