package token

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func testKey(seed byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed ^ byte(i)
	}
	return ed25519.NewKeyFromSeed(s)
}

var (
	key    = testKey(1)
	pub    = key.Public().(ed25519.PublicKey)
	issued = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

func claims() JoinClaims {
	return JoinClaims{
		Meeting: "m-1", Participant: "p-1", Name: "Ada <A&B> ✓", Node: "node-fra-1",
		IssuedAt: issued, Expires: issued.Add(2 * time.Minute),
	}
}

func sign(t testing.TB, k ed25519.PrivateKey, c JoinClaims) string {
	t.Helper()
	tok, err := SignJoin(k, c)
	if err != nil {
		t.Fatalf("SignJoin: %v", err)
	}
	return tok
}

// resign builds a token over an arbitrary payload, as an attacker or a buggy
// issuer could.
func resign(k ed25519.PrivateKey, payload []byte) string {
	signed := "v1." + base64.RawURLEncoding.EncodeToString(payload)
	return signed + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(k, []byte(signed)))
}

func TestJoinRoundTrip(t *testing.T) {
	c := claims()
	c.IssuedAt = c.IssuedAt.In(time.FixedZone("CET", 3600))
	tok := sign(t, key, c)
	if !strings.HasPrefix(tok, "v1.") || strings.Count(tok, ".") != 2 {
		t.Fatalf("token %q has the wrong shape", tok)
	}
	got, err := VerifyJoin(pub, tok, issued.Add(time.Minute))
	if err != nil {
		t.Fatalf("VerifyJoin: %v", err)
	}
	if want := claims(); !reflect.DeepEqual(got, want) {
		t.Fatalf("claims = %+v, want %+v", got, want)
	}
	if err := got.CheckNode("node-fra-1"); err != nil {
		t.Fatalf("CheckNode: %v", err)
	}
	if err := got.CheckNode("node-pek-1"); !errors.Is(err, ErrWrongNode) {
		t.Fatalf("CheckNode on another node = %v, want ErrWrongNode", err)
	}
	if err := got.CheckNode(""); !errors.Is(err, ErrWrongNode) {
		t.Fatalf("CheckNode(\"\") = %v, want ErrWrongNode", err)
	}
}

func TestVerifyJoinRejects(t *testing.T) {
	good := sign(t, key, claims())
	payloadPart := strings.Split(good, ".")[1]
	sigPart := strings.Split(good, ".")[2]
	payload, _ := base64.RawURLEncoding.DecodeString(payloadPart)
	tampered := strings.Replace(string(payload), `"m-1"`, `"m-2"`, 1)
	withExtra := strings.Replace(string(payload), `{`, `{"admin":true,`, 1)
	noNode := claims()
	noNode.Node = ""
	noNodePayload, _ := json.Marshal(noNode)
	flipped := []byte(good)
	if i := len(flipped) - 5; flipped[i] == 'A' { // a full 6-bit digit of the signature
		flipped[i] = 'B'
	} else {
		flipped[i] = 'A'
	}

	tests := []struct {
		name string
		tok  string
		now  time.Time
		want error
	}{
		{"valid at issue", good, issued, nil},
		{"valid within skew before issue", good, issued.Add(-MaxClockSkew), nil},
		{"just before expiry", good, issued.Add(2*time.Minute - time.Nanosecond), nil},
		{"at expiry", good, issued.Add(2 * time.Minute), ErrExpired},
		{"long expired", good, issued.Add(24 * time.Hour), ErrExpired},
		{"issued in the future", good, issued.Add(-MaxClockSkew - time.Second), ErrNotYetValid},
		{"other key", sign(t, testKey(2), claims()), issued, ErrBadSignature},
		{"tampered payload", "v1." + base64.RawURLEncoding.EncodeToString([]byte(tampered)) + "." + sigPart, issued, ErrBadSignature},
		{"flipped signature", string(flipped), issued, ErrBadSignature},
		{"signature of another token", "v1." + payloadPart + "." + strings.Split(sign(t, key, otherParticipant()), ".")[2], issued, ErrBadSignature},
		{"unknown claim, signed", resign(key, []byte(withExtra)), issued, ErrMalformed},
		{"no node, signed", resign(key, noNodePayload), issued, ErrMalformed},
		{"trailing data, signed", resign(key, append(payload, '}')), issued, ErrMalformed},
		{"json array, signed", resign(key, []byte(`[]`)), issued, ErrMalformed},
		{"empty", "", issued, ErrMalformed},
		{"garbage", "hello world", issued, ErrMalformed},
		{"jwt-like", "eyJhbGciOiJIUzI1NiJ9.e30.abc", issued, ErrMalformed},
		{"other version", "v2." + strings.TrimPrefix(good, "v1."), issued, ErrMalformed},
		{"no signature", "v1." + payloadPart, issued, ErrMalformed},
		{"empty signature", "v1." + payloadPart + ".", issued, ErrMalformed},
		{"extra part", good + ".x", issued, ErrMalformed},
		{"padded", good + "==", issued, ErrMalformed},
		{"line break in signature", "v1." + payloadPart + "." + sigPart[:10] + "\n" + sigPart[10:], issued, ErrMalformed},
		{"std base64 alphabet", "v1." + payloadPart + "." + strings.NewReplacer("-", "+", "_", "/").Replace(sigPart) + "+", issued, ErrMalformed},
		{"short signature", "v1." + payloadPart + "." + sigPart[:40], issued, ErrMalformed},
		{"huge", "v1." + strings.Repeat("A", 10000) + "." + sigPart, issued, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := VerifyJoin(pub, tt.tok, tt.now)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("VerifyJoin: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("VerifyJoin = %v, want %v", err, tt.want)
			}
			if c != (JoinClaims{}) {
				t.Fatalf("rejected token returned claims %+v", c)
			}
		})
	}
}

func otherParticipant() JoinClaims {
	c := claims()
	c.Participant = "p-2"
	return c
}

func TestSignJoinRejectsIncompleteClaims(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*JoinClaims)
	}{
		{"no meeting", func(c *JoinClaims) { c.Meeting = "" }},
		{"no participant", func(c *JoinClaims) { c.Participant = "" }},
		{"no node", func(c *JoinClaims) { c.Node = "" }},
		{"no expiry", func(c *JoinClaims) { c.Expires = time.Time{} }},
		{"no issue time", func(c *JoinClaims) { c.IssuedAt = time.Time{} }},
		{"expires at issue", func(c *JoinClaims) { c.Expires = c.IssuedAt }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := claims()
			tt.mutate(&c)
			if tok, err := SignJoin(key, c); err == nil {
				t.Fatalf("SignJoin signed %+v as %q", c, tok)
			}
		})
	}
	if _, err := SignJoin(ed25519.PrivateKey{1}, claims()); err == nil {
		t.Fatal("SignJoin accepted a short key")
	}
	if _, err := VerifyJoin(ed25519.PublicKey{1}, sign(t, key, claims()), issued); err == nil {
		t.Fatal("VerifyJoin accepted a short key")
	}
}

func FuzzVerifyJoin(f *testing.F) {
	good := sign(f, key, claims())
	f.Add(good)
	f.Add(sign(f, testKey(2), claims()))
	f.Add(resign(key, []byte(`{"mtg":"m","pid":"p","node":"n","iat":"2026-03-01T12:00:00Z","exp":"2026-03-01T12:01:00Z","x":1}`)))
	f.Add("v1..")
	f.Add("v1.e30.")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := VerifyJoin(pub, tok, issued.Add(30*time.Second))
		if err != nil {
			if c != (JoinClaims{}) {
				t.Fatalf("rejected token returned claims %+v", c)
			}
			return
		}
		// Ed25519 signing is deterministic, so a token the key really signed
		// is exactly the one the key would produce for its payload part.
		// Anything else that verified would be a forgery or a second
		// spelling of a signed token.
		rest := strings.TrimPrefix(tok, "v1.")
		payloadPart, _, _ := strings.Cut(rest, ".")
		if want := "v1." + payloadPart + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, []byte("v1."+payloadPart))); tok != want {
			t.Fatalf("accepted %q, which the key did not produce", tok)
		}
		if c.Meeting == "" || c.Participant == "" || c.Node == "" {
			t.Fatalf("accepted incomplete claims %+v", c)
		}
	})
}

func BenchmarkVerifyJoin(b *testing.B) {
	tok := sign(b, key, claims())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyJoin(pub, tok, issued); err != nil {
			b.Fatal(err)
		}
	}
}
