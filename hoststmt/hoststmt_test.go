package hoststmt

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/oakmeet/oakmeet/policy"
)

// testPolicy is the policy statement of a meeting that blocks the US,
// under a fixed enrollment key.
func testPolicy(seq uint64) Statement {
	eff, err := policy.Combine(policy.Policy{}, policy.Policy{BlockedCountries: []string{"US"}, BlockedRegions: []string{"eu-west-3"}})
	if err != nil {
		panic(err)
	}
	return NewPolicy(seq, eff, bytes.Repeat([]byte{9}, 32))
}

func statements() []Statement {
	return []Statement{
		testPolicy(1),
		{Kind: KindSettings, Seq: 2, Locked: true},
		{Kind: KindSettings, Seq: 3},
		{Kind: KindAdmit, Seq: 4, Ticket: "t1", Name: "Ann"},
		{Kind: KindDeny, Seq: 5, Ticket: "t2", Name: ""},
		{Kind: KindRemove, Seq: 6, Participant: "p1", Identity: bytes.Repeat([]byte{7}, 32)},
		{Kind: KindRemove, Seq: 7, Participant: "p2"},
	}
}

func TestSignParseVerify(t *testing.T) {
	key, _ := GenerateKey()
	other, _ := GenerateKey()
	pub, otherPub := key.Public().(ed25519.PublicKey), other.Public().(ed25519.PublicKey)
	for _, c := range statements() {
		if err := c.Sign(key); err != nil {
			t.Fatalf("%s: sign: %v", c.Kind, err)
		}
		data, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Parse(data)
		if err != nil {
			t.Fatalf("%s: parse %s: %v", c.Kind, data, err)
		}
		if err := got.Verify(pub); err != nil {
			t.Fatalf("%s: verify: %v", c.Kind, err)
		}
		if err := got.Verify(otherPub); !errors.Is(err, ErrSignature) {
			t.Fatalf("%s: verified with another key: %v", c.Kind, err)
		}
		// Any change of a signed field breaks the signature.
		forged := *got
		forged.Seq++
		if err := forged.Verify(pub); !errors.Is(err, ErrSignature) {
			t.Fatalf("%s: changed seq verified: %v", c.Kind, err)
		}
	}
}

// A policy statement binds its rules through the hash and its enrollment
// key directly: a server that widens the rules, or swaps in an enrollment
// key of its own, gets a statement no client accepts.
func TestPolicyRulesAndEnrollmentKeyAreBound(t *testing.T) {
	key, _ := GenerateKey()
	pub := key.Public().(ed25519.PublicKey)
	s := testPolicy(3)
	if err := s.Sign(key); err != nil {
		t.Fatal(err)
	}
	eff, err := s.Effective()
	if err != nil {
		t.Fatal(err)
	}
	if eff.Allows("US", "") || eff.Allows("FR", "eu-west-3") || !eff.Allows("DE", "eu-central-1") {
		t.Fatal("the statement's rules are not the policy's")
	}
	widened := s
	widened.Rules.AllowedCountries = append(slices.Clone(s.Rules.AllowedCountries), "US")
	slices.Sort(widened.Rules.AllowedCountries)
	if err := widened.Verify(pub); !errors.Is(err, ErrRules) {
		t.Fatalf("widened rules: %v, want ErrRules", err)
	}
	data, _ := json.Marshal(widened)
	if _, err := Parse(data); !errors.Is(err, ErrRules) || !errors.Is(err, ErrMalformed) {
		t.Fatalf("parsing widened rules: %v", err)
	}
	swapped := s
	swapped.EnrollmentKey = bytes.Repeat([]byte{8}, 32)
	if err := swapped.Verify(pub); !errors.Is(err, ErrSignature) {
		t.Fatalf("another enrollment key: %v, want ErrSignature", err)
	}
	rehashed := widened
	e2, _ := widened.Rules.Effective()
	rehashed.PolicyHash = e2.Hash()
	if err := rehashed.Verify(pub); !errors.Is(err, ErrSignature) {
		t.Fatalf("widened rules with their own hash: %v, want ErrSignature", err)
	}
}

func TestSettingsFlipBreaksSignature(t *testing.T) {
	key, _ := GenerateKey()
	s := Statement{Kind: KindSettings, Seq: 9, Locked: true}
	if err := s.Sign(key); err != nil {
		t.Fatal(err)
	}
	s.Locked = false
	if err := s.Verify(key.Public().(ed25519.PublicKey)); !errors.Is(err, ErrSignature) {
		t.Fatalf("unlocked copy of a lock verified: %v", err)
	}
}

func TestParseRefuses(t *testing.T) {
	sig := strings.Repeat("A", 86) + "=="
	bad := []string{
		`{}`,
		`{"v":2,"kind":"settings","seq":1,"locked":true,"lobby":false,"sig":"` + sig + `"}`,
		`{"v":1,"kind":"settings","seq":1,"locked":true,"sig":"` + sig + `"}`,
		`{"v":1,"kind":"settings","seq":1,"locked":true,"lobby":false,"ticket":"x","sig":"` + sig + `"}`,
		`{"v":1,"kind":"settings","seq":1,"locked":true,"lobby":false,"extra":1,"sig":"` + sig + `"}`,
		`{"v":1,"kind":"settings","seq":0,"locked":true,"lobby":false,"sig":"` + sig + `"}`,
		`{"v":1,"kind":"shout","seq":1,"sig":"` + sig + `"}`,
		`{"v":1,"kind":"remove","seq":1,"participant":"p","identity":"AAAA","sig":"` + sig + `"}`,
		`{"v":1,"kind":"policy","seq":1,"policy_hash":"","sig":"` + sig + `"}`,
		`{"v":1,"kind":"policy","seq":1,"policy_hash":"ab","allowed_countries":["DE"],"blocked_regions":[],"sig":"` + sig + `"}`,
		`{"v":1,"kind":"policy","seq":1,"policy_hash":"ab","allowed_countries":["DE"],"blocked_regions":[],"enrollment_key":"AAAA","sig":"` + sig + `"}`,
		`{"v":1,"kind":"settings","seq":1,"locked":true,"lobby":false,"sig":"AAAA"}`,
		`{"v":1,"kind":"settings","seq":1,"locked":true,"lobby":false,"sig":"` + sig + `"} {}`,
		`[`,
	}
	for _, b := range bad {
		if _, err := Parse([]byte(b)); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%s) = %v, want ErrMalformed", b, err)
		}
	}
}

func TestFingerprint(t *testing.T) {
	key, _ := GenerateKey()
	pub := key.Public().(ed25519.PublicKey)
	fp := Fingerprint(pub)
	if len(fp) != FingerprintLen {
		t.Fatalf("fingerprint %q has %d characters", fp, len(fp))
	}
	if err := CheckKey(pub, fp); err != nil {
		t.Fatal(err)
	}
	other, _ := GenerateKey()
	if err := CheckKey(other.Public().(ed25519.PublicKey), fp); !errors.Is(err, ErrFingerprint) {
		t.Fatalf("another key matched: %v", err)
	}
}

func TestKeyText(t *testing.T) {
	key, _ := GenerateKey()
	got, err := ParseKey(MarshalKey(key))
	if err != nil || !got.Equal(key) {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := ParseKey([]byte("oakmeet-identity-v1:AAAA")); err == nil {
		t.Fatal("an identity key parsed as a host key")
	}
}

func FuzzParse(f *testing.F) {
	key, _ := GenerateKey()
	for _, s := range statements() {
		_ = s.Sign(key)
		b, _ := json.Marshal(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		s2, err := Parse(again)
		if err != nil || !bytes.Equal(s.TBS(), s2.TBS()) {
			t.Fatalf("re-encoding changed the statement: %v", err)
		}
	})
}
