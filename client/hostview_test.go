package client

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"testing"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/policy"
)

func signed(t *testing.T, key []byte, s hoststmt.Statement) hoststmt.Statement {
	t.Helper()
	priv, err := hoststmt.ParseKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Sign(priv); err != nil {
		t.Fatal(err)
	}
	return s
}

// policyStatement is the unsigned policy statement of p under a fresh
// enrollment key.
func policyStatement(t *testing.T, seq uint64, p policy.Policy) hoststmt.Statement {
	t.Helper()
	eff, err := policy.Combine(policy.Policy{}, p)
	if err != nil {
		t.Fatal(err)
	}
	enroll, _, _ := ed25519.GenerateKey(nil)
	return hoststmt.NewPolicy(seq, eff, enroll)
}

func TestHostViewAcceptsOnlyTheLinksHostKey(t *testing.T) {
	host, _ := hoststmt.GenerateKey()
	other, _ := hoststmt.GenerateKey()
	hostText, otherText := hoststmt.MarshalKey(host), hoststmt.MarshalKey(other)
	hostPub := []byte(host[32:])
	fp := hoststmt.Fingerprint(hostPub)

	pol := signed(t, hostText, policyStatement(t, 10, policy.Policy{BlockedCountries: []string{"RU"}}))
	h1 := pol.PolicyHash
	v := NewHostView(fp)
	fresh, err := v.Join(api.HostState{Key: hostPub, PolicyHash: "h2", Statements: []hoststmt.Statement{pol}})
	if err != nil || len(fresh) != 1 || v.PolicyHash() != h1 {
		t.Fatalf("join: %v %v %q", fresh, err, v.PolicyHash())
	}
	if r := v.Report(); !r.KeyChecked || r.PolicyWarning == "" {
		t.Fatalf("report %+v: want the key checked and a policy warning", r)
	}

	// A removal signed by another key is refused; the host's is taken once.
	forged := signed(t, otherText, hoststmt.Statement{Kind: hoststmt.KindRemove, Seq: 11, Participant: "p2"})
	raw, _ := json.Marshal(forged)
	if s, err := v.Statement(raw); s != nil || !errors.Is(err, hoststmt.ErrSignature) {
		t.Fatalf("forged removal: %v %v", s, err)
	}
	real := signed(t, hostText, hoststmt.Statement{Kind: hoststmt.KindRemove, Seq: 11, Participant: "p2"})
	raw, _ = json.Marshal(real)
	if s, err := v.Statement(raw); s == nil || err != nil {
		t.Fatalf("host's removal: %v %v", s, err)
	}
	if _, err := v.Statement(raw); !errors.Is(err, ErrStaleStatement) {
		t.Fatalf("the same removal again: %v", err)
	}
	old := signed(t, hostText, policyStatement(t, 9, policy.Policy{}))
	raw, _ = json.Marshal(old)
	if _, err := v.Statement(raw); !errors.Is(err, ErrStaleStatement) || v.PolicyHash() != h1 {
		t.Fatalf("older policy: %v, hash %q", err, v.PolicyHash())
	}
	if r := v.Report(); len(r.Removed) != 1 || r.Removed[0] != "p2" || r.Refused != 3 {
		t.Fatalf("report %+v", r)
	}

	// A server that names another host key gets nothing accepted.
	v2 := NewHostView(fp)
	otherPub := []byte(other[32:])
	if _, err := v2.Join(api.HostState{Key: otherPub, Statements: []hoststmt.Statement{forged}}); !errors.Is(err, ErrHostKeyChanged) {
		t.Fatalf("another key: %v", err)
	}
	if r := v2.Report(); r.KeyChecked || r.KeyError == "" || len(r.Removed) != 0 {
		t.Fatalf("report %+v", r)
	}
	// And a later leg naming another key than the first is refused too.
	if _, err := v.Join(api.HostState{Key: otherPub}); !errors.Is(err, ErrHostKeyChanged) {
		t.Fatalf("key changed between legs: %v", err)
	}
}

// Without a fingerprint in the link there is nothing to check the host key
// against: a key the control plane names could be its own, so no statement
// signed with it is accepted — above all not a removal of an honest member.
func TestNoFingerprintTrustsNoHostKey(t *testing.T) {
	srvKey, _ := hoststmt.GenerateKey()
	v := NewHostView("")
	removal := hoststmt.Statement{Kind: hoststmt.KindRemove, Seq: 1, Participant: "alice"}
	if err := removal.Sign(srvKey); err != nil {
		t.Fatal(err)
	}
	fresh, err := v.Join(api.HostState{Key: srvKey.Public().(ed25519.PublicKey), Statements: []hoststmt.Statement{removal}})
	if err != nil || len(fresh) != 0 {
		t.Fatalf("join: accepted %d statements, err %v", len(fresh), err)
	}
	raw, _ := json.Marshal(removal)
	if s, err := v.Statement(raw); err == nil || s != nil {
		t.Fatalf("a removal signed by a key nothing vouches for was accepted: %+v", s)
	}
}

// The first policy statement a view accepts fixes the meeting's enrollment
// key: a newer host-signed one naming another (a control plane that swapped
// its own key into the host's preview) is refused, and the one held stays
// in force; a newer one with the same key is taken.
func TestHostViewKeepsTheMeetingsEnrollmentKey(t *testing.T) {
	host, _ := hoststmt.GenerateKey()
	hostText := hoststmt.MarshalKey(host)
	hostPub := []byte(host[32:])
	first := signed(t, hostText, policyStatement(t, 10, policy.Policy{BlockedCountries: []string{"RU"}}))
	v := NewHostView(hoststmt.Fingerprint(hostPub))
	if fresh, err := v.Join(api.HostState{Key: hostPub, Statements: []hoststmt.Statement{first}}); err != nil || len(fresh) != 1 {
		t.Fatalf("join: %v %v", fresh, err)
	}
	swapped := signed(t, hostText, policyStatement(t, 11, policy.Policy{}))
	raw, _ := json.Marshal(swapped)
	if s, err := v.Statement(raw); s != nil || !errors.Is(err, ErrEnrollmentKeyChanged) {
		t.Fatalf("a statement naming another enrollment key: %v %v", s, err)
	}
	// Nor does a later leg's join answer bring it in.
	if fresh, _ := v.Join(api.HostState{Key: hostPub, Statements: []hoststmt.Statement{swapped}}); len(fresh) != 0 {
		t.Fatalf("a join answer's statement naming another enrollment key was taken: %v", fresh)
	}
	if p, err := v.Policy(); err != nil || p.Seq != 10 || v.PolicyHash() != first.PolicyHash {
		t.Fatalf("policy in force: %+v %v", p, err)
	}
	same := policyStatement(t, 12, policy.Policy{})
	same.EnrollmentKey = first.EnrollmentKey
	same = signed(t, hostText, same)
	raw, _ = json.Marshal(same)
	if s, err := v.Statement(raw); s == nil || err != nil {
		t.Fatalf("a newer statement with the meeting's enrollment key: %v %v", s, err)
	}
}
