// Package turncred makes and checks the short-lived credentials for a media
// node's built-in TURN server. The control plane issues one with a join, for
// the one node, meeting and participant it placed, so relayed traffic stays
// in that node's country and ends with the join. Nothing secret is shared
// between control plane and node, and nothing secret crosses the bus:
//
//   - the username carries the claims, signed with the control plane's
//     Ed25519 token key, which the node has pinned;
//   - the password is derived from an X25519 agreement between a fresh
//     ephemeral key of the control plane (its public half is in the signed
//     username) and the node's TURN key (its public half is in the node's
//     registration, signed by the node's identity key). Only the control
//     plane, at issue time, and the node can compute it, so a username seen
//     on the wire is no credential.
//
// A username is, in ASCII,
//
//	t1:<node>:<meeting>:<participant>:<issued>:<expires>:<ephemeral>:<signature>
//
// where the times are Unix seconds in decimal without leading zeros, the
// ephemeral key (32 bytes) and signature (64 bytes) are unpadded base64url,
// and the signature is Ed25519 over the text before its own colon. The
// password is the unpadded base64url HMAC-SHA256, keyed with the X25519
// shared secret, of "oakmeet turn password v1", a zero byte and the whole
// username. Pure functions, no I/O.
package turncred

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Errors a node branches on.
var (
	ErrMalformed    = errors.New("turncred: malformed username")
	ErrBadSignature = errors.New("turncred: bad signature")
	ErrExpired      = errors.New("turncred: expired")
	ErrNotYetValid  = errors.New("turncred: not yet valid")
)

const (
	prefix = "t1:"
	// MaxLifetime bounds a credential from issue to expiry: it lives as
	// long as the join token it comes with, which is minutes.
	MaxLifetime = 15 * time.Minute
	// MaxClockSkew is how far in the future a credential's issue time may
	// be at the node.
	MaxClockSkew = 5 * time.Second
	// maxUsername is below STUN's limit on USERNAME (RFC 8489: under 509
	// bytes), so every credential issued can be used.
	maxUsername = 508
	maxID       = 64
	keyChars    = 43 // base64url of 32 bytes
	sigChars    = 86 // base64url of 64 bytes
	passLabel   = "oakmeet turn password v1\x00"
	nodeKeyTag  = "oakmeet turn key v1\x00"
)

// Claims are what a credential admits: one participant of one meeting,
// relayed by one node, between two times (whole seconds).
type Claims struct {
	Node        string
	Meeting     string
	Participant string
	IssuedAt    time.Time
	Expires     time.Time
}

// Check reports whether the claims are valid at now.
func (c Claims) Check(now time.Time) error {
	if now.Before(c.IssuedAt.Add(-MaxClockSkew)) {
		return fmt.Errorf("%w: issued at %d, now %d", ErrNotYetValid, c.IssuedAt.Unix(), now.Unix())
	}
	if !now.Before(c.Expires) {
		return fmt.Errorf("%w: at %d, now %d", ErrExpired, c.Expires.Unix(), now.Unix())
	}
	return nil
}

func (c Claims) validate() error {
	for _, f := range []struct{ name, v string }{{"node", c.Node}, {"meeting", c.Meeting}, {"participant", c.Participant}} {
		if !validID(f.v) {
			return fmt.Errorf("%s %q: must be 1-%d letters, digits, '-' or '_'", f.name, f.v, maxID)
		}
	}
	if c.IssuedAt.Unix() <= 0 || !c.Expires.After(c.IssuedAt) {
		return errors.New("expiry must follow a positive issue time")
	}
	if c.Expires.Sub(c.IssuedAt) > MaxLifetime {
		return fmt.Errorf("lifetime %s is over %s", c.Expires.Sub(c.IssuedAt), MaxLifetime)
	}
	return nil
}

// Issue signs c with the control plane's key and derives the password for
// the node whose TURN key is nodeKey. Times are truncated to seconds.
func Issue(key ed25519.PrivateKey, nodeKey *ecdh.PublicKey, c Claims) (username, password string, err error) {
	if len(key) != ed25519.PrivateKeySize {
		return "", "", fmt.Errorf("turncred: private key has %d bytes", len(key))
	}
	if nodeKey == nil || nodeKey.Curve() != ecdh.X25519() {
		return "", "", errors.New("turncred: the node's TURN key must be X25519")
	}
	c.IssuedAt, c.Expires = time.Unix(c.IssuedAt.Unix(), 0), time.Unix(c.Expires.Unix(), 0)
	if err := c.validate(); err != nil {
		return "", "", fmt.Errorf("turncred: invalid claims: %w", err)
	}
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("turncred: ephemeral key: %w", err)
	}
	shared, err := eph.ECDH(nodeKey)
	if err != nil {
		return "", "", fmt.Errorf("turncred: key agreement: %w", err)
	}
	signed := prefix + strings.Join([]string{
		c.Node, c.Meeting, c.Participant,
		strconv.FormatInt(c.IssuedAt.Unix(), 10), strconv.FormatInt(c.Expires.Unix(), 10),
		base64.RawURLEncoding.EncodeToString(eph.PublicKey().Bytes()),
	}, ":")
	username = signed + ":" + base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, []byte(signed)))
	if len(username) > maxUsername {
		return "", "", fmt.Errorf("turncred: username of %d bytes is over %d", len(username), maxUsername)
	}
	return username, derivePassword(shared, username), nil
}

// Open checks username's signature against the control plane's key pub and
// derives its password with the node's TURN key. It does not check times:
// the caller does ([Claims.Check]), and may let an allocation made in time
// live on. Errors wrap ErrMalformed or ErrBadSignature.
func Open(pub ed25519.PublicKey, nodeKey *ecdh.PrivateKey, username string) (Claims, string, error) {
	if len(pub) != ed25519.PublicKeySize {
		return Claims{}, "", fmt.Errorf("turncred: public key has %d bytes", len(pub))
	}
	p, err := parse(username)
	if err != nil {
		return Claims{}, "", err
	}
	if !ed25519.Verify(pub, []byte(p.signed), p.sig) {
		return Claims{}, "", ErrBadSignature
	}
	eph, err := ecdh.X25519().NewPublicKey(p.eph)
	if err != nil {
		return Claims{}, "", fmt.Errorf("%w: ephemeral key: %w", ErrMalformed, err)
	}
	shared, err := nodeKey.ECDH(eph)
	if err != nil {
		return Claims{}, "", fmt.Errorf("%w: key agreement: %w", ErrMalformed, err)
	}
	return p.claims, derivePassword(shared, username), nil
}

// Parse reads a username's claims without checking its signature: for
// logs and bookkeeping of a username that was already opened.
func Parse(username string) (Claims, error) {
	p, err := parse(username)
	return p.claims, err
}

func derivePassword(shared []byte, username string) string {
	mac := hmac.New(sha256.New, shared)
	mac.Write([]byte(passLabel))
	mac.Write([]byte(username))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

type parsed struct {
	claims Claims
	signed string
	eph    []byte
	sig    []byte
}

// parse accepts exactly the one spelling Issue produces.
func parse(username string) (parsed, error) {
	if len(username) > maxUsername {
		return parsed{}, fmt.Errorf("%w: %d bytes", ErrMalformed, len(username))
	}
	rest, ok := strings.CutPrefix(username, prefix)
	if !ok {
		return parsed{}, fmt.Errorf("%w: no %q prefix", ErrMalformed, prefix)
	}
	f := strings.Split(rest, ":")
	if len(f) != 7 {
		return parsed{}, fmt.Errorf("%w: %d fields, want 7", ErrMalformed, len(f))
	}
	c := Claims{Node: f[0], Meeting: f[1], Participant: f[2]}
	iat, err1 := parseUnix(f[3])
	exp, err2 := parseUnix(f[4])
	if err := errors.Join(err1, err2); err != nil {
		return parsed{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	c.IssuedAt, c.Expires = time.Unix(iat, 0), time.Unix(exp, 0)
	if err := c.validate(); err != nil {
		return parsed{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	eph, err := decodeFixed(f[5], keyChars)
	if err != nil {
		return parsed{}, fmt.Errorf("%w: ephemeral key: %w", ErrMalformed, err)
	}
	sig, err := decodeFixed(f[6], sigChars)
	if err != nil {
		return parsed{}, fmt.Errorf("%w: signature: %w", ErrMalformed, err)
	}
	return parsed{claims: c, signed: username[:len(username)-len(f[6])-1], eph: eph, sig: sig}, nil
}

// parseUnix reads positive decimal seconds without sign or leading zeros.
func parseUnix(s string) (int64, error) {
	if s == "" || len(s) > 12 || s[0] == '0' {
		return 0, fmt.Errorf("time %q is not positive decimal seconds", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("time %q is not positive decimal seconds", s)
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// decodeFixed decodes unpadded base64url of exactly n characters, refusing
// a second spelling (the decoder alone would ignore non-zero trailing bits).
func decodeFixed(s string, n int) ([]byte, error) {
	if len(s) != n {
		return nil, fmt.Errorf("%d characters, want %d", len(s), n)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return nil, fmt.Errorf("byte %d is not base64url", i)
		}
	}
	return base64.RawURLEncoding.Strict().DecodeString(s)
}

func validID(s string) bool {
	if s == "" || len(s) > maxID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '-' || c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}
