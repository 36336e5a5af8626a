package cluster

import (
	"strings"
	"testing"
)

// FuzzCheckNodeReply checks the rule the control plane answers token key
// requests by: only a literal subject inside a node's inbox passes, never
// a bucket's key, the audit log, another role's inbox or a wildcard.
func FuzzCheckNodeReply(f *testing.F) {
	for _, s := range []string{
		NodeInboxRoot + ".de-1.abc", NodeInboxRoot + ".de-1.abc.1", NodeInboxRoot + ".de-1",
		NodeInboxRoot + ".*.x", NodeInboxRoot + ".>", NodeInboxRoot + ".a..b", "_INBOX.control.x",
		"oakmeet.audit.m1", "$KV.oakmeet_nodes.b", "_INBOX.node", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, reply string) {
		if CheckNodeReply(reply) != nil {
			return
		}
		rest, ok := strings.CutPrefix(reply, NodeInboxRoot+".")
		if !ok {
			t.Fatalf("%q accepted outside the node inboxes", reply)
		}
		tokens := strings.Split(rest, ".")
		if len(tokens) < 2 || ValidNodeID(tokens[0]) != nil {
			t.Fatalf("%q accepted without a node's inbox", reply)
		}
		for _, tok := range tokens {
			if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n") {
				t.Fatalf("%q accepted though not literal", reply)
			}
		}
	})
}

func TestCheckNodeReply(t *testing.T) {
	for _, ok := range []string{"_INBOX.node.de-fra.x", "_INBOX.node.a.b.c"} {
		if err := CheckNodeReply(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{
		"", "oakmeet.audit.m1", "$KV.oakmeet_meetings.x", "$KV.oakmeet_leader.control", "$KV.oakmeet_nodes.other",
		"$JS.API.STREAM.PURGE.KV_oakmeet_control", "_INBOX.control.x", "_INBOX.node.a", "_INBOX.node.a.>",
		"_INBOX.node.*.x", "_INBOX.node.a..x", "_INBOX.nodex.a.b", "_INBOX.node.a b.c",
		"_INBOX.node.a." + strings.Repeat("x", 600),
	} {
		if err := CheckNodeReply(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
