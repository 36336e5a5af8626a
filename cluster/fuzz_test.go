package cluster

import (
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
