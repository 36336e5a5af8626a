package token

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/oakmeet/oakmeet/policy"
)

// A relay token is "r1." + base64url(payload) + "." + base64url(signature),
// built like a join token over the JSON of [RelayClaims]. The distinct
// prefix keeps one kind of token from ever being accepted as the other.
const relayPrefix = "r1."

// MaxRelayLifetime bounds how long a relay token may be valid: it is only
// needed to open a link, and the control plane re-issues it with its
// desired set every few seconds.
const MaxRelayLifetime = 5 * time.Minute

// Errors of relay tokens besides the shared ones (ErrMalformed,
// ErrBadSignature, ErrExpired, ErrNotYetValid, ErrWrongNode).
var (
	// ErrPolicy: the meeting's effective policy in the token does not allow
	// one end of the link.
	ErrPolicy = errors.New("token: relay forbidden by the meeting's policy")
	// ErrWrongKey: the token names another identity key for a node than the
	// one it has.
	ErrWrongKey = errors.New("token: issued for another identity key")
)

// RelayNode is one end of a relay link as the control plane vouches for it.
type RelayNode struct {
	ID      string `json:"id"`
	Country string `json:"country"`
	Region  string `json:"region,omitempty"`
	// IdentityKey is the node's Ed25519 public key (cluster.NodeInfo.IdentityKey).
	IdentityKey []byte `json:"key"`
}

// RelayClaims let node From open a relay link for one meeting to node To.
// Policy is the meeting's effective policy (deployment floor and meeting
// policy combined), so that both nodes can check for themselves that the
// other end is allowed to carry the meeting.
type RelayClaims struct {
	Meeting  string        `json:"mtg"`
	From     RelayNode     `json:"from"` // the node that dials
	To       RelayNode     `json:"to"`   // the node that accepts
	Policy   policy.Policy `json:"policy"`
	IssuedAt time.Time     `json:"iat"`
	Expires  time.Time     `json:"exp"`
}

func (n RelayNode) validate(end string) error {
	switch {
	case n.ID == "":
		return fmt.Errorf("%s: no node id", end)
	case n.Country == "":
		return fmt.Errorf("%s: no country", end)
	case len(n.IdentityKey) != ed25519.PublicKeySize:
		return fmt.Errorf("%s: identity key has %d bytes, want %d", end, len(n.IdentityKey), ed25519.PublicKeySize)
	}
	return nil
}

func (c RelayClaims) validate() error {
	switch {
	case c.Meeting == "":
		return errors.New("no meeting")
	case c.IssuedAt.IsZero() || c.Expires.IsZero():
		return errors.New("no issue or expiry time")
	case !c.Expires.After(c.IssuedAt):
		return errors.New("expires before it is issued")
	case c.Expires.Sub(c.IssuedAt) > MaxRelayLifetime:
		return fmt.Errorf("valid for %s, at most %s", c.Expires.Sub(c.IssuedAt), MaxRelayLifetime)
	}
	if err := c.From.validate("from"); err != nil {
		return err
	}
	if err := c.To.validate("to"); err != nil {
		return err
	}
	if c.From.ID == c.To.ID {
		return errors.New("a node cannot relay to itself")
	}
	if _, err := policy.Combine(policy.Policy{}, c.Policy); err != nil {
		return err
	}
	return nil
}

// SignRelay signs c with the control plane's key. The claims must name a
// meeting and two distinct nodes with their countries and identity keys,
// carry a valid policy, and be valid for at most MaxRelayLifetime.
func SignRelay(key ed25519.PrivateKey, c RelayClaims) (string, error) {
	if err := c.validate(); err != nil {
		return "", fmt.Errorf("token: invalid relay claims: %w", err)
	}
	c.IssuedAt, c.Expires = c.IssuedAt.UTC(), c.Expires.UTC()
	return signClaims(key, relayPrefix, c)
}

// VerifyRelay checks that tok is a relay token signed by pub and valid at
// now, and returns its claims. Each end still checks that the claims name
// it ([RelayNode.Check] on From or To) and allow the link ([RelayClaims.CheckPolicy]).
// Errors wrap ErrMalformed, ErrBadSignature, ErrExpired or ErrNotYetValid.
func VerifyRelay(pub ed25519.PublicKey, tok string, now time.Time) (RelayClaims, error) {
	var c RelayClaims
	if err := verifyClaims(pub, relayPrefix, tok, &c); err != nil {
		return RelayClaims{}, err
	}
	if err := c.validate(); err != nil {
		return RelayClaims{}, fmt.Errorf("%w: relay claims: %w", ErrMalformed, err)
	}
	if err := checkTimes(c.IssuedAt, c.Expires, now); err != nil {
		return RelayClaims{}, err
	}
	return c, nil
}

// Check returns an error unless this end of a link (the claims' From or
// To) is the node id, in country and region, holding the identity key key. A node checks
// its own end before it dials or accepts, so that a token minted for
// another node, for an earlier identity key or for another location is
// refused with a clear reason.
func (end RelayNode) Check(id, country, region string, key ed25519.PublicKey) error {
	switch {
	case end.ID != id:
		return fmt.Errorf("%w: relay token is for node %q, this is %q", ErrWrongNode, end.ID, id)
	case !bytes.Equal(end.IdentityKey, key):
		return fmt.Errorf("%w: relay token names another identity key for node %q (restarted?)", ErrWrongKey, id)
	case end.Country != country || end.Region != region:
		return fmt.Errorf("%w: relay token places node %q in %s/%s, it is in %s/%s", ErrWrongNode, id, end.Country, end.Region, country, region)
	}
	return nil
}

// CheckPolicy returns an error wrapping ErrPolicy unless the effective
// policy in the claims allows both ends of the link. Each node checks it
// itself rather than trust that the control plane did.
func (c RelayClaims) CheckPolicy() error {
	eff, err := policy.Combine(policy.Policy{}, c.Policy)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	for _, n := range []RelayNode{c.From, c.To} {
		if !eff.Allows(n.Country, n.Region) {
			where := n.Country
			if n.Region != "" {
				where += "/" + n.Region
			}
			return fmt.Errorf("%w: meeting %s may not be relayed through node %s in %s", ErrPolicy, c.Meeting, n.ID, where)
		}
	}
	return nil
}
