package group

import "testing"

// FuzzHandleMessage feeds arbitrary payloads to a member of a settled
// group: it must not panic, and whatever it refuses must leave its epoch and
// code as they were.
//
// Settling a group (identities, HPKE keys, an epoch sealed, acked and
// committed over the simulated relay) costs milliseconds, so the group is
// built once per worker and kept while inputs are refused, which is what
// the property says leaves it as it was; after an accepted input it is
// built afresh. An input that fails here is rerun on a fresh group by
// `go test -run=FuzzHandleMessage/NAME`: if it passes there, a refusal
// changed state that the epoch and code do not show.
func FuzzHandleMessage(f *testing.F) {
	f.Add("alice", []byte(`{"v":2,"type":"sync","meeting":"meeting-1","epoch":9,"leader":"x"}`))
	f.Add("carol", []byte(`{"v":2,"type":"announce"}`))
	f.Add("alice", []byte(`{"v":2,"type":"epoch","meeting":"meeting-1","epoch":1,"roster":[],"sealed":[],"sig":""}`))
	f.Add("alice", []byte(`{"v":2,"type":"commit","meeting":"meeting-1","epoch":2,"digest":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","sig":""}`))
	f.Add("bob", []byte(`{"v":2,"type":"ack","meeting":"meeting-1","epoch":2,"participant":"bob","digest":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","sig":""}`))
	f.Add("alice", []byte(`{"v":2,"type":"node","meeting":"meeting-1","participant":"alice","cert":"c","sig":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="}`))
	var bob *Member // the settled group's bob, nil when it must be rebuilt
	f.Fuzz(func(t *testing.T, from string, payload []byte) {
		if bob == nil {
			n := newSimNet(t)
			n.join("alice")
			n.join("bob")
			bob = n.members["bob"]
		}
		epoch := bob.Epoch()
		code, _ := bob.SecurityCode()
		if _, err := bob.HandleMessage(from, payload); err != nil {
			c, _ := bob.SecurityCode()
			if bob.Epoch() != epoch || c != code {
				bob = nil
				t.Fatalf("refused message changed the state: %v", err)
			}
		} else {
			defer func() { bob = nil }()
		}
		// Nobody can put alice on a node without her identity key.
		for _, p := range bob.People() {
			if p.Participant == "alice" && p.NodeCert != "" {
				t.Fatalf("alice shown on node %q", p.NodeCert)
			}
		}
	})
}
