package token

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// MaxClockSkew is how far in the future a token's issue time may be, to
// tolerate clocks of control plane and node that disagree a little.
const MaxClockSkew = 5 * time.Second

// maxTokenLen bounds the work done on an untrusted string; real tokens are a
// few hundred bytes.
const maxTokenLen = 4096

const joinPrefix = "v1."

// JoinClaims admit one participant to one meeting on one node for a while.
type JoinClaims struct {
	Meeting     string    `json:"mtg"`
	Participant string    `json:"pid"`
	Name        string    `json:"name"`
	Node        string    `json:"node"`
	IssuedAt    time.Time `json:"iat"`
	Expires     time.Time `json:"exp"`
}

// validate holds for every token signed or accepted: a token that named no
// meeting, participant or node would admit to more than it says.
func (c JoinClaims) validate() error {
	switch {
	case c.Meeting == "":
		return errors.New("no meeting")
	case c.Participant == "":
		return errors.New("no participant")
	case c.Node == "":
		return errors.New("no node")
	case c.IssuedAt.IsZero() || c.Expires.IsZero():
		return errors.New("no issue or expiry time")
	case !c.Expires.After(c.IssuedAt):
		return errors.New("expires before it is issued")
	}
	return nil
}

// CheckNode returns an error wrapping ErrWrongNode unless the claims admit
// to the node nodeID.
func (c JoinClaims) CheckNode(nodeID string) error {
	if c.Node != nodeID {
		return fmt.Errorf("%w: token is for node %q, this is %q", ErrWrongNode, c.Node, nodeID)
	}
	return nil
}

// SignJoin signs c with the control plane's key. The claims must name a
// meeting, participant and node and expire after they are issued; times are
// carried in UTC.
func SignJoin(key ed25519.PrivateKey, c JoinClaims) (string, error) {
	if err := c.validate(); err != nil {
		return "", fmt.Errorf("token: invalid claims: %w", err)
	}
	c.IssuedAt, c.Expires = c.IssuedAt.UTC(), c.Expires.UTC()
	return signClaims(key, joinPrefix, c)
}

// VerifyJoin checks that tok was signed by pub and is valid at now, and
// returns its claims. The caller still checks the node ([JoinClaims.CheckNode])
// and the meeting. Errors wrap ErrMalformed, ErrBadSignature, ErrExpired or
// ErrNotYetValid.
func VerifyJoin(pub ed25519.PublicKey, tok string, now time.Time) (JoinClaims, error) {
	var c JoinClaims
	if err := verifyClaims(pub, joinPrefix, tok, &c); err != nil {
		return JoinClaims{}, err
	}
	if err := c.validate(); err != nil {
		return JoinClaims{}, fmt.Errorf("%w: claims: %w", ErrMalformed, err)
	}
	if err := checkTimes(c.IssuedAt, c.Expires, now); err != nil {
		return JoinClaims{}, err
	}
	return c, nil
}

// signClaims encodes claims as prefix + base64url(JSON) and appends the Ed25519
// signature over that text.
func signClaims(key ed25519.PrivateKey, prefix string, claims any) (string, error) {
	if len(key) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("token: private key has %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("token: encode claims: %w", err)
	}
	signed := prefix + base64.RawURLEncoding.EncodeToString(payload)
	sig := ed25519.Sign(key, []byte(signed))
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// verifyClaims checks the shape and signature of a token of the kind prefix and
// decodes its claims into out, strictly. The signature is checked before
// the payload is parsed: nothing unsigned reaches the JSON decoder.
func verifyClaims(pub ed25519.PublicKey, prefix, tok string, out any) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("token: public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	if len(tok) > maxTokenLen {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(tok), maxTokenLen)
	}
	rest, ok := strings.CutPrefix(tok, prefix)
	if !ok {
		return fmt.Errorf("%w: no %q prefix", ErrMalformed, prefix)
	}
	payloadPart, sigPart, ok := strings.Cut(rest, ".")
	if !ok {
		return fmt.Errorf("%w: no signature part", ErrMalformed)
	}
	payload, err := decodePart(payloadPart)
	if err != nil {
		return fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	sig, err := decodePart(sigPart)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: signature is not %d base64url bytes", ErrMalformed, ed25519.SignatureSize)
	}
	if !ed25519.Verify(pub, []byte(tok[:len(prefix)+len(payloadPart)]), sig) {
		return ErrBadSignature
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("%w: claims: %w", ErrMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: data after the claims", ErrMalformed)
	}
	return nil
}

// checkTimes refuses a token used before it was issued (beyond the clock
// skew) or at or after its expiry.
func checkTimes(issued, expires, now time.Time) error {
	if now.Before(issued.Add(-MaxClockSkew)) {
		return fmt.Errorf("%w: issued at %s, now %s", ErrNotYetValid, issued.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if !now.Before(expires) {
		return fmt.Errorf("%w: at %s, now %s", ErrExpired, expires.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// decodePart decodes one unpadded base64url part, accepting only the one
// spelling the encoder produces: the decoder alone would skip line breaks
// and ignore trailing bits, letting one token be written several ways.
func decodePart(s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return nil, fmt.Errorf("byte %d is not base64url", i)
		}
	}
	return base64.RawURLEncoding.Strict().DecodeString(s)
}
