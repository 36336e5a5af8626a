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

	"github.com/oakmeet/oakmeet/policy"
)

var (
	keyA = testKey(10).Public().(ed25519.PublicKey)
	keyB = testKey(11).Public().(ed25519.PublicKey)
)

func relayClaims() RelayClaims {
	return RelayClaims{
		Meeting:  "m-1",
		From:     RelayNode{ID: "de-fra", Country: "DE", Region: "eu-central-1", IdentityKey: keyA},
		To:       RelayNode{ID: "fr-par", Country: "FR", IdentityKey: keyB},
		Policy:   policy.Policy{BlockedCountries: []string{"CN", "RU"}, BlockedRegions: []string{"us-east-1"}},
		IssuedAt: issued, Expires: issued.Add(time.Minute),
	}
}

func signRelay(t testing.TB, k ed25519.PrivateKey, c RelayClaims) string {
	t.Helper()
	tok, err := SignRelay(k, c)
	if err != nil {
		t.Fatalf("SignRelay: %v", err)
	}
	return tok
}

func resignRelay(k ed25519.PrivateKey, payload []byte) string {
	signed := "r1." + base64.RawURLEncoding.EncodeToString(payload)
	return signed + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(k, []byte(signed)))
}

func TestRelayRoundTrip(t *testing.T) {
	tok := signRelay(t, key, relayClaims())
	if !strings.HasPrefix(tok, "r1.") {
		t.Fatalf("relay token %q lacks its prefix", tok)
	}
	got, err := VerifyRelay(pub, tok, issued.Add(30*time.Second))
	if err != nil {
		t.Fatalf("VerifyRelay: %v", err)
	}
	if want := relayClaims(); !reflect.DeepEqual(got, want) {
		t.Fatalf("claims = %+v, want %+v", got, want)
	}
	if err := got.CheckPolicy(); err != nil {
		t.Fatalf("CheckPolicy: %v", err)
	}
	if err := got.To.Check("fr-par", "FR", "", keyB); err != nil {
		t.Fatalf("To.Check: %v", err)
	}
	if err := got.From.Check("de-fra", "DE", "eu-central-1", keyA); err != nil {
		t.Fatalf("From.Check: %v", err)
	}
}

func TestRelayAndJoinTokensAreNotInterchangeable(t *testing.T) {
	if _, err := VerifyJoin(pub, signRelay(t, key, relayClaims()), issued); !errors.Is(err, ErrMalformed) {
		t.Fatalf("VerifyJoin(relay token) = %v, want ErrMalformed", err)
	}
	if _, err := VerifyRelay(pub, sign(t, key, claims()), issued); !errors.Is(err, ErrMalformed) {
		t.Fatalf("VerifyRelay(join token) = %v, want ErrMalformed", err)
	}
}

func TestVerifyRelayRejects(t *testing.T) {
	good := signRelay(t, key, relayClaims())
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(good, ".")[1])
	shortKey := relayClaims()
	shortKey.To.IdentityKey = keyB[:16]
	shortKeyPayload, _ := json.Marshal(shortKey)
	self := relayClaims()
	self.To.ID = "de-fra"
	selfPayload, _ := json.Marshal(self)
	badPolicy := strings.Replace(string(payload), `"CN"`, `"XX"`, 1)
	long := relayClaims()
	long.Expires = long.IssuedAt.Add(time.Hour)
	longPayload, _ := json.Marshal(long)

	tests := []struct {
		name string
		tok  string
		now  time.Time
		want error
	}{
		{"valid", good, issued, nil},
		{"expired", good, issued.Add(time.Minute), ErrExpired},
		{"from the future", good, issued.Add(-MaxClockSkew - time.Second), ErrNotYetValid},
		{"forged", signRelay(t, testKey(3), relayClaims()), issued, ErrBadSignature},
		{"tampered", "r1." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), "FR", "CN", 1))) + "." + strings.Split(good, ".")[2], issued, ErrBadSignature},
		{"short identity key, signed", resignRelay(key, shortKeyPayload), issued, ErrMalformed},
		{"to itself, signed", resignRelay(key, selfPayload), issued, ErrMalformed},
		{"unknown country in policy, signed", resignRelay(key, []byte(badPolicy)), issued, ErrMalformed},
		{"too long-lived, signed", resignRelay(key, longPayload), issued, ErrMalformed},
		{"unknown claim, signed", resignRelay(key, []byte(strings.Replace(string(payload), "{", `{"admin":1,`, 1))), issued, ErrMalformed},
		{"join prefix", "v1." + strings.TrimPrefix(good, "r1."), issued, ErrMalformed},
		{"garbage", "r1.!.!", issued, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := VerifyRelay(pub, tt.tok, tt.now)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("VerifyRelay: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("VerifyRelay = %v, want %v", err, tt.want)
			}
			if !reflect.DeepEqual(c, RelayClaims{}) {
				t.Fatalf("rejected token returned claims %+v", c)
			}
		})
	}
}

func TestRelayCheckPolicy(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*RelayClaims)
		ok     bool
	}{
		{"both allowed", func(*RelayClaims) {}, true},
		{"peer in a blocked country", func(c *RelayClaims) { c.To.Country, c.To.Region = "CN", "cn-north-1" }, false},
		{"dialer in a blocked country", func(c *RelayClaims) { c.From.Country, c.From.Region = "RU", "" }, false},
		{"peer in a blocked region", func(c *RelayClaims) { c.To.Country, c.To.Region = "US", "us-east-1" }, false},
		{"peer in another region of that country", func(c *RelayClaims) { c.To.Country, c.To.Region = "US", "us-west-2" }, true},
		{"peer outside the allow-list", func(c *RelayClaims) { c.Policy.AllowedCountries = []string{"EU"}; c.To.Country = "CH" }, false},
		{"both inside the allow-list", func(c *RelayClaims) { c.Policy.AllowedCountries = []string{"EU"} }, true},
		{"unknown peer country", func(c *RelayClaims) { c.To.Country = "XX" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := relayClaims()
			tt.mutate(&c)
			err := c.CheckPolicy()
			if tt.ok != (err == nil) {
				t.Fatalf("CheckPolicy = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrPolicy) {
				t.Fatalf("CheckPolicy = %v, want ErrPolicy", err)
			}
		})
	}
}

func TestRelayNodeCheck(t *testing.T) {
	end := relayClaims().To
	tests := []struct {
		name            string
		id, cty, region string
		key             ed25519.PublicKey
		want            error
	}{
		{"match", "fr-par", "FR", "", keyB, nil},
		{"other node", "de-fra", "FR", "", keyB, ErrWrongNode},
		{"other key", "fr-par", "FR", "", keyA, ErrWrongKey},
		{"other country", "fr-par", "DE", "", keyB, ErrWrongNode},
		{"other region", "fr-par", "FR", "eu-west-3", keyB, ErrWrongNode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := end.Check(tt.id, tt.cty, tt.region, tt.key)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Check = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSignRelayRejectsIncompleteClaims(t *testing.T) {
	for name, mutate := range map[string]func(*RelayClaims){
		"no meeting":       func(c *RelayClaims) { c.Meeting = "" },
		"no from id":       func(c *RelayClaims) { c.From.ID = "" },
		"no to country":    func(c *RelayClaims) { c.To.Country = "" },
		"no to key":        func(c *RelayClaims) { c.To.IdentityKey = nil },
		"same node":        func(c *RelayClaims) { c.To.ID = c.From.ID },
		"no expiry":        func(c *RelayClaims) { c.Expires = time.Time{} },
		"too long":         func(c *RelayClaims) { c.Expires = c.IssuedAt.Add(MaxRelayLifetime + time.Second) },
		"unknown policy":   func(c *RelayClaims) { c.Policy.BlockedRegions = []string{"mars-1"} },
		"expires at issue": func(c *RelayClaims) { c.Expires = c.IssuedAt },
	} {
		c := relayClaims()
		mutate(&c)
		if tok, err := SignRelay(key, c); err == nil {
			t.Errorf("%s: SignRelay signed %+v as %q", name, c, tok)
		}
	}
}

func FuzzVerifyRelay(f *testing.F) {
	f.Add(signRelay(f, key, relayClaims()))
	f.Add(signRelay(f, testKey(2), relayClaims()))
	f.Add(resignRelay(key, []byte(`{"mtg":"m","from":{},"to":{},"policy":{},"iat":"2026-03-01T12:00:00Z","exp":"2026-03-01T12:01:00Z"}`)))
	f.Add("r1..")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := VerifyRelay(pub, tok, issued.Add(30*time.Second))
		if err != nil {
			if !reflect.DeepEqual(c, RelayClaims{}) {
				t.Fatalf("rejected token returned claims %+v", c)
			}
			return
		}
		payloadPart, _, _ := strings.Cut(strings.TrimPrefix(tok, "r1."), ".")
		if want := "r1." + payloadPart + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, []byte("r1."+payloadPart))); tok != want {
			t.Fatalf("accepted %q, which the key did not produce", tok)
		}
		if c.Meeting == "" || c.From.ID == "" || c.To.ID == "" || len(c.To.IdentityKey) != ed25519.PublicKeySize {
			t.Fatalf("accepted incomplete claims %+v", c)
		}
	})
}
