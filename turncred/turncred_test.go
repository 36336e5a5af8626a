package turncred

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

type keys struct {
	cp      ed25519.PrivateKey
	node    *ecdh.PrivateKey
	nodePub *ecdh.PublicKey
}

func newKeys(t testing.TB) keys {
	t.Helper()
	_, cp, _ := ed25519.GenerateKey(nil)
	_, id, _ := ed25519.GenerateKey(nil)
	nk, err := NodeKey(id)
	if err != nil {
		t.Fatal(err)
	}
	return keys{cp: cp, node: nk, nodePub: nk.PublicKey()}
}

func (k keys) pub() ed25519.PublicKey { return k.cp.Public().(ed25519.PublicKey) }

var now = time.Unix(1_800_000_000, 0)

func claims() Claims {
	return Claims{Node: "de-fra", Meeting: "m_abc", Participant: "p_123", IssuedAt: now, Expires: now.Add(2 * time.Minute)}
}

func TestIssueOpen(t *testing.T) {
	k := newKeys(t)
	u, p, err := Issue(k.cp, k.nodePub, claims())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u, "t1:de-fra:m_abc:p_123:1800000000:1800000120:") || len(u) > maxUsername {
		t.Fatalf("username %q", u)
	}
	c, got, err := Open(k.pub(), k.node, u)
	if err != nil || got != p || c != claims() {
		t.Fatalf("open: %+v %q %v, want %+v %q", c, got, err, claims(), p)
	}
	if err := c.Check(now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(now.Add(2 * time.Minute)); !errors.Is(err, ErrExpired) {
		t.Fatalf("at expiry: %v", err)
	}
	if err := c.Check(now.Add(-time.Minute)); !errors.Is(err, ErrNotYetValid) {
		t.Fatalf("before issue: %v", err)
	}
	// Two credentials for the same claims share nothing but the claims.
	u2, p2, _ := Issue(k.cp, k.nodePub, claims())
	if u2 == u || p2 == p {
		t.Fatal("credentials repeat")
	}
}

func TestOpenRefuses(t *testing.T) {
	k, other := newKeys(t), newKeys(t)
	u, p, err := Issue(k.cp, k.nodePub, claims())
	if err != nil {
		t.Fatal(err)
	}
	// Signed by another key: refused outright.
	if _, _, err := Open(other.pub(), k.node, u); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("other key: %v", err)
	}
	// Any field changed breaks the signature.
	for _, repl := range [][2]string{{"de-fra", "us-iad"}, {"m_abc", "m_abd"}, {"p_123", "p_124"}, {":1800000120:", ":1800000180:"}} {
		if _, _, err := Open(k.pub(), k.node, strings.Replace(u, repl[0], repl[1], 1)); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s -> %s: %v", repl[0], repl[1], err)
		}
	}
	// Another node derives another password: a username is no credential
	// to anyone but the node it was issued for.
	if _, got, err := Open(k.pub(), other.node, u); err != nil || got == p {
		t.Fatalf("another node's key: %q %v", got, err)
	}
}

func TestIssueRefusesBadClaims(t *testing.T) {
	k := newKeys(t)
	for name, c := range map[string]Claims{
		"colon in meeting": {Node: "n", Meeting: "m:x", Participant: "p", IssuedAt: now, Expires: now.Add(time.Minute)},
		"no participant":   {Node: "n", Meeting: "m", IssuedAt: now, Expires: now.Add(time.Minute)},
		"too long":         {Node: "n", Meeting: "m", Participant: "p", IssuedAt: now, Expires: now.Add(MaxLifetime + time.Second)},
		"backwards":        {Node: "n", Meeting: "m", Participant: "p", IssuedAt: now, Expires: now},
		"no issue time":    {Node: "n", Meeting: "m", Participant: "p", Expires: now},
	} {
		if _, _, err := Issue(k.cp, k.nodePub, c); err == nil {
			t.Errorf("%s: issued", name)
		}
	}
}

func TestParseIsStrict(t *testing.T) {
	k := newKeys(t)
	u, _, _ := Issue(k.cp, k.nodePub, claims())
	f := strings.Split(u, ":")
	for _, bad := range []string{
		"", "t1:", "1800003600:p123", strings.Replace(u, "t1:", "t2:", 1),
		u + ":x", strings.Join(f[:len(f)-1], ":"),
		strings.Replace(u, ":1800000000:", ":01800000000:", 1),
		strings.Replace(u, ":1800000000:", ":+1800000000:", 1),
		strings.Replace(u, ":1800000000:", ":-1:", 1),
		u[:len(u)-1] + "B", // non-zero trailing bits: a second spelling
		u[:len(u)-1] + "=",
	} {
		if _, err := Parse(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if c, err := Parse(u); err != nil || c != claims() {
		t.Fatalf("parse: %+v %v", c, err)
	}
}

func TestNodeKeyStatement(t *testing.T) {
	_, id, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	nk, _ := NodeKey(id)
	again, _ := NodeKey(id)
	if !nk.Equal(again) {
		t.Fatal("node key is not stable for one identity")
	}
	sig := SignNodeKey(id, nk.PublicKey())
	pub, err := VerifyNodeKey(id.Public().(ed25519.PublicKey), nk.PublicKey().Bytes(), sig)
	if err != nil || !pub.Equal(nk.PublicKey()) {
		t.Fatalf("verify: %v", err)
	}
	if _, err := VerifyNodeKey(other.Public().(ed25519.PublicKey), nk.PublicKey().Bytes(), sig); err == nil {
		t.Fatal("a key signed by another identity accepted")
	}
	forged, _ := NodeKey(other)
	if _, err := VerifyNodeKey(id.Public().(ed25519.PublicKey), forged.PublicKey().Bytes(), sig); err == nil {
		t.Fatal("a substituted key accepted")
	}
}

// FuzzParse: nothing but the one spelling Issue produces is read, and a
// username that parses is rebuilt byte for byte from what was read.
func FuzzParse(f *testing.F) {
	k := newKeys(f)
	u, _, _ := Issue(k.cp, k.nodePub, claims())
	f.Add(u)
	f.Add("t1:n:m:p:1:2:" + strings.Repeat("A", keyChars) + ":" + strings.Repeat("A", sigChars))
	f.Add("1800003600:p123")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parse(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		c := p.claims
		rebuilt := strings.Join([]string{"t1", c.Node, c.Meeting, c.Participant,
			itoa(c.IssuedAt.Unix()), itoa(c.Expires.Unix()), b64(p.eph)}, ":")
		if rebuilt != p.signed || rebuilt+":"+b64(p.sig) != s {
			t.Fatalf("%q parsed as %+v, which spells %q", s, c, rebuilt)
		}
		if c.validate() != nil {
			t.Fatalf("%q parsed to invalid claims %+v", s, c)
		}
		if _, _, err := Open(k.pub(), k.node, s); !errors.Is(err, ErrBadSignature) && err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("open: %v", err)
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
