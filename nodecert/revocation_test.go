package nodecert

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func testRevocations(seq uint64, entries ...Revocation) Revocations {
	return Revocations{Seq: seq, IssuedAt: t0.Add(time.Duration(seq) * time.Hour), Entries: entries}
}

func mustIssueRevocation(t testing.TB, r Revocations) []byte {
	t.Helper()
	data, err := IssueRevocation(enrollKey, r)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestRevocationRoundTripSorts(t *testing.T) {
	serial := testCert().Serial
	in := testRevocations(3,
		Revocation{NodeID: "jp-tyo-1", At: t0},
		Revocation{NodeID: "de-fra-1", Serial: serial, At: t0},
		Revocation{NodeID: "de-fra-1", At: t0.Add(time.Second)},
	)
	orig := append([]Revocation(nil), in.Entries...)
	got, err := VerifyRevocation(pubOf(enrollKey), mustIssueRevocation(t, in), Revocations{})
	if err != nil {
		t.Fatal(err)
	}
	want := Revocations{Seq: 3, IssuedAt: in.IssuedAt, EnrollmentKeyID: KeyID(pubOf(enrollKey)), Entries: []Revocation{
		{NodeID: "de-fra-1", At: t0.Add(time.Second)},
		{NodeID: "de-fra-1", Serial: serial, At: t0},
		{NodeID: "jp-tyo-1", At: t0},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if !reflect.DeepEqual(in.Entries, orig) {
		t.Fatal("IssueRevocation reordered its argument")
	}
	// An empty list is a list: it says nothing is revoked as of seq 1.
	empty, err := VerifyRevocation(pubOf(enrollKey), mustIssueRevocation(t, testRevocations(1)), Revocations{})
	if err != nil || empty.Seq != 1 || len(empty.Entries) != 0 {
		t.Fatalf("empty list: %+v, %v", empty, err)
	}
}

func TestRevocationFormatAsDocumented(t *testing.T) {
	data := string(mustIssueRevocation(t, testRevocations(7, Revocation{NodeID: "de-fra-1", At: t0})))
	parts := strings.Split(data, ".")
	if len(parts) != 3 || parts[0] != "oakmeet-node-revocations-v1" {
		t.Fatalf("parts %q", parts)
	}
	want := `{"enrollment_key":"` + KeyID(pubOf(enrollKey)) + `","entries":[{"at":1767225600,"node":"de-fra-1","serial":""}],"issued_at":1767250800,"seq":7}`
	if got := string(mustDecodeStd(t, parts[1])); got != want {
		t.Fatalf("payload\n%s\nwant\n%s", got, want)
	}
}

func TestIssueRevocationRejects(t *testing.T) {
	e := Revocation{NodeID: "de-fra-1", At: t0}
	cases := []struct {
		name string
		r    Revocations
	}{
		{"seq 0", testRevocations(0)},
		{"seq past 2^53-1", testRevocations(maxSeq + 1)},
		{"no issue time", Revocations{Seq: 1}},
		{"bad node id", testRevocations(1, Revocation{NodeID: "a.b", At: t0})},
		{"bad serial", testRevocations(1, Revocation{NodeID: "n", Serial: "xyz", At: t0})},
		{"no revocation time", testRevocations(1, Revocation{NodeID: "n"})},
		{"repeated entry", testRevocations(1, e, e)},
		{"another key's id", Revocations{Seq: 1, IssuedAt: t0, EnrollmentKeyID: KeyID(pubOf(otherKey))}},
	}
	for _, tc := range cases {
		if data, err := IssueRevocation(enrollKey, tc.r); err == nil {
			t.Errorf("%s: issued %s", tc.name, data)
		}
	}
	if _, err := IssueRevocation(enrollKey[:32], testRevocations(1)); err == nil {
		t.Error("short private key accepted")
	}
}

func TestParseRevocationMalformed(t *testing.T) {
	kid := KeyID(pubOf(enrollKey))
	signed := func(payload string) []byte {
		return sealRaw(enrollKey, revocationsTag, []byte(strings.ReplaceAll(payload, "KID", kid)))
	}
	entry := func(node, serial string) string {
		return `{"at":1767225600,"node":"` + node + `","serial":"` + serial + `"}`
	}
	list := func(entries ...string) []byte {
		return signed(`{"enrollment_key":"KID","entries":[` + strings.Join(entries, ",") + `],"issued_at":1767225600,"seq":2}`)
	}
	good := string(mustIssueRevocation(t, testRevocations(2)))
	cases := []struct {
		name string
		data []byte
	}{
		{"certificate tag", sealRaw(enrollKey, certTag, []byte(`{"enrollment_key":"`+kid+`","entries":[],"issued_at":1767225600,"seq":2}`))},
		{"trailing newline", []byte(good + "\n")},
		{"too long", append([]byte(good), make([]byte, maxRevocationsLen)...)},
		{"entries null", signed(`{"enrollment_key":"KID","entries":null,"issued_at":1767225600,"seq":2}`)},
		{"entries missing", signed(`{"enrollment_key":"KID","issued_at":1767225600,"seq":2}`)},
		{"seq 0", signed(`{"enrollment_key":"KID","entries":[],"issued_at":1767225600,"seq":0}`)},
		{"seq negative", signed(`{"enrollment_key":"KID","entries":[],"issued_at":1767225600,"seq":-1}`)},
		{"seq past 2^53-1", signed(`{"enrollment_key":"KID","entries":[],"issued_at":1767225600,"seq":9007199254740992}`)},
		{"no issue time", signed(`{"enrollment_key":"KID","entries":[],"issued_at":0,"seq":2}`)},
		{"bad key id", signed(`{"enrollment_key":"KIDx","entries":[],"issued_at":1767225600,"seq":2}`)},
		{"keys out of order", signed(`{"entries":[],"enrollment_key":"KID","issued_at":1767225600,"seq":2}`)},
		{"unknown entry key", list(`{"at":1767225600,"node":"n","serial":"","why":"x"}`)},
		{"entry without time", list(`{"at":0,"node":"n","serial":""}`)},
		{"entry bad node", list(entry("n n", ""))},
		{"entry bad serial", list(entry("n", "ABCDEF0123456789ABCDEF0123456789"))},
		{"entries out of order", list(entry("b", ""), entry("a", ""))},
		{"serials out of order", list(entry("a", testCert().Serial), entry("a", ""))},
		{"repeated entry", list(entry("a", ""), entry("a", ""))},
	}
	for _, tc := range cases {
		if r, err := ParseRevocation(tc.data); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ParseRevocation = %+v, %v; want ErrMalformed", tc.name, r, err)
		}
		if r, err := VerifyRevocation(pubOf(enrollKey), tc.data, Revocations{}); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: VerifyRevocation = %+v, %v; want ErrMalformed", tc.name, r, err)
		}
	}
	// The well-formed list the cases are made from is accepted.
	if _, err := ParseRevocation(list(entry("a", ""), entry("a", testCert().Serial), entry("b", ""))); err != nil {
		t.Fatalf("well-formed list: %v", err)
	}
}

func TestVerifyRevocationErrors(t *testing.T) {
	data := mustIssueRevocation(t, testRevocations(2))
	forged := sealRaw(otherKey, revocationsTag, mustDecodeStd(t, strings.Split(string(data), ".")[1]))
	other, err := IssueRevocation(otherKey, testRevocations(2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyRevocation(pubOf(enrollKey), other, Revocations{}); !errors.Is(err, ErrWrongKey) {
		t.Errorf("another authority's list: %v", err)
	}
	if _, err := VerifyRevocation(pubOf(otherKey), data, Revocations{}); !errors.Is(err, ErrWrongKey) {
		t.Errorf("checked against another key: %v", err)
	}
	if _, err := VerifyRevocation(pubOf(enrollKey), forged, Revocations{}); !errors.Is(err, ErrBadSignature) {
		t.Errorf("signed by another key: %v", err)
	}
	if _, err := VerifyRevocation(pubOf(enrollKey)[:31], data, Revocations{}); err == nil {
		t.Error("short public key accepted")
	}
	held := Revocations{}
	for i := range data {
		bad := bytes.Clone(data)
		bad[i] ^= 0x20
		if r, err := VerifyRevocation(pubOf(enrollKey), bad, held); err == nil {
			t.Fatalf("byte %d altered: accepted %+v", i, r)
		}
	}
}

// TestRevocationReplay: a node revoked in list 2 stays revoked when list 1,
// which did not name it, is delivered again afterwards.
func TestRevocationReplay(t *testing.T) {
	pub, cert := pubOf(enrollKey), withKID(testCert(), enrollKey)
	list1 := mustIssueRevocation(t, testRevocations(1))
	list2 := mustIssueRevocation(t, testRevocations(2, Revocation{NodeID: cert.NodeID, Serial: cert.Serial, At: t0}))
	list2b := mustIssueRevocation(t, testRevocations(2))

	held, err := VerifyRevocation(pub, list1, Revocations{})
	if err != nil || Status(cert, held, t0) != Valid {
		t.Fatalf("list 1: %+v, %v", held, err)
	}
	held, err = VerifyRevocation(pub, list2, held)
	if err != nil || Status(cert, held, t0) != Revoked {
		t.Fatalf("list 2: %+v, %v", held, err)
	}
	if r, err := VerifyRevocation(pub, list1, held); !errors.Is(err, ErrStale) {
		t.Fatalf("list 1 replayed over list 2: %+v, %v", r, err)
	}
	if r, err := VerifyRevocation(pub, list2b, held); !errors.Is(err, ErrStale) {
		t.Fatalf("other list 2 over list 2: %+v, %v", r, err)
	}
	again, err := VerifyRevocation(pub, list2, held)
	if err != nil || !reflect.DeepEqual(again, held) {
		t.Fatalf("list 2 delivered again: %+v, %v", again, err)
	}
	if Status(cert, held, t0) != Revoked {
		t.Fatal("the held list lost the revocation")
	}
}

func TestStatus(t *testing.T) {
	c := withKID(testCert(), enrollKey)
	reenrolled := c
	reenrolled.Serial, reenrolled.NotBefore = "ffffffffffffffffffffffffffffffff", t0.Add(time.Hour)
	bySerial := testRevocations(1, Revocation{NodeID: c.NodeID, Serial: c.Serial, At: t0})
	byID := testRevocations(1, Revocation{NodeID: c.NodeID, At: t0.Add(time.Minute)})
	byIDAtNotBefore := testRevocations(1, Revocation{NodeID: c.NodeID, At: t0})
	otherNode := testRevocations(1, Revocation{NodeID: "jp-tyo-1", Serial: c.Serial, At: t0}, Revocation{NodeID: "fr-par-1", At: t0})
	otherSerial := testRevocations(1, Revocation{NodeID: c.NodeID, Serial: reenrolled.Serial, At: t0})
	cases := []struct {
		name string
		cert Cert
		r    Revocations
		now  time.Time
		want State
	}{
		{"valid, no list", c, Revocations{}, t0, Valid},
		{"valid, other nodes revoked", c, otherNode, t0, Valid},
		{"valid, another serial of the node revoked", c, otherSerial, t0, Valid},
		{"revoked by serial", c, bySerial, t0, Revoked},
		{"revoked by id", c, byID, t0, Revoked},
		{"revoked by id at its not-before", c, byIDAtNotBefore, t0, Revoked},
		{"enrolled again after a revocation by id", reenrolled, byID, t0.Add(time.Hour), Valid},
		{"revoked beats expired", c, bySerial, c.NotAfter.Add(time.Hour), Revoked},
		{"revoked beats not yet valid", c, bySerial, t0.Add(-time.Hour), Revoked},
		{"expired", c, otherNode, c.NotAfter.Add(time.Second), Expired},
		{"not yet valid", c, otherNode, t0.Add(-MaxClockSkew - time.Second), NotYetValid},
	}
	for _, tc := range cases {
		if got := Status(tc.cert, tc.r, tc.now); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestStateErr(t *testing.T) {
	for s, want := range map[State]error{Valid: nil, Revoked: ErrRevoked, Expired: ErrExpired, NotYetValid: ErrNotYetValid, State(99): ErrMalformed} {
		if got := s.Err(); got != want {
			t.Errorf("%v.Err() = %v, want %v", s, got, want)
		}
	}
	for s, want := range map[State]string{Valid: "valid", Revoked: "revoked", Expired: "expired", NotYetValid: "not_yet_valid", State(99): "unknown"} {
		if got := s.String(); got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	}
}
