package nodecert

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
)

// Tags of the two kinds of statement; see the package doc.
const (
	certTag        = "oakmeet-node-cert-v1"
	revocationsTag = "oakmeet-node-revocations-v1"
)

// Bounds on the work done on untrusted data. A certificate is about 400
// bytes; a revocation list entry about 90, so a list holds thousands of
// entries and still fits in one NATS message.
const (
	maxCertLen        = 2048
	maxRevocationsLen = 1 << 20
)

var b64 = base64.RawURLEncoding.Strict()

// KeyID is the id of an enrollment public key that statements carry: the
// lower-case hex of the first 16 bytes of SHA-256 of the raw key. It names
// the key so that a statement checked against another key fails as such,
// not as a bad signature; it is not what makes a statement trustworthy.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:16])
}

// signedBytes is what the signature covers: the tag, a line feed, the payload.
func signedBytes(tag string, payload []byte) []byte {
	msg := make([]byte, 0, len(tag)+1+len(payload))
	msg = append(msg, tag...)
	msg = append(msg, '\n')
	return append(msg, payload...)
}

// seal encodes v as canonical JSON and signs it into an envelope of kind tag.
func seal(key ed25519.PrivateKey, tag string, v any) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("nodecert: private key has %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	payload, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("nodecert: encode: %w", err)
	}
	sig := ed25519.Sign(key, signedBytes(tag, payload))
	out := make([]byte, 0, len(tag)+2+b64.EncodedLen(len(payload))+b64.EncodedLen(len(sig)))
	out = append(out, tag...)
	out = append(out, '.')
	out = b64.AppendEncode(out, payload)
	out = append(out, '.')
	return b64.AppendEncode(out, sig), nil
}

// envelope is a statement split into its parts, signature not yet checked.
type envelope struct {
	tag       string
	payload   []byte
	signature []byte
}

// open splits data into an envelope of kind tag and decodes its payload
// strictly into out: known keys only, one value, and in canonical form
// (re-encoding out must give the payload's bytes back), so that every
// reader of the statement sees the same fields.
func open(tag string, data []byte, maxLen int, out any) (envelope, error) {
	if len(data) > maxLen {
		return envelope{}, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(data), maxLen)
	}
	rest, ok := bytes.CutPrefix(data, []byte(tag+"."))
	if !ok {
		return envelope{}, fmt.Errorf("%w: does not start with %q", ErrMalformed, tag+".")
	}
	payloadPart, sigPart, ok := bytes.Cut(rest, []byte("."))
	if !ok {
		return envelope{}, fmt.Errorf("%w: no signature part", ErrMalformed)
	}
	payload, err := decodePart(payloadPart)
	if err != nil {
		return envelope{}, fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	sig, err := decodePart(sigPart)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return envelope{}, fmt.Errorf("%w: signature is not %d base64url bytes", ErrMalformed, ed25519.SignatureSize)
	}
	if err := decodeCanonical(payload, out); err != nil {
		return envelope{}, fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	return envelope{tag: tag, payload: payload, signature: sig}, nil
}

// verify checks the envelope's signature with pub.
func (e envelope) verify(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("nodecert: public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	if !ed25519.Verify(pub, signedBytes(e.tag, e.payload), e.signature) {
		return ErrBadSignature
	}
	return nil
}

// decodePart decodes one unpadded base64url part and insists it is the one
// encoding of its bytes: the decoder alone would skip line breaks.
func decodePart(part []byte) ([]byte, error) {
	raw, err := b64.AppendDecode(nil, part)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(b64.AppendEncode(nil, raw), part) {
		return nil, fmt.Errorf("not canonical base64url")
	}
	return raw, nil
}

// decodeCanonical decodes payload into out and checks that it is exactly
// what encoding out again gives. That rules out what JSON readers disagree
// on: duplicate keys, keys differing in case (Go matches them loosely),
// whitespace, escapes, other number spellings, trailing data.
func decodeCanonical(payload []byte, out any) error {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("data after the JSON object")
	}
	again, err := json.Marshal(out)
	if err != nil {
		return err
	}
	if !bytes.Equal(again, payload) {
		return fmt.Errorf("not in canonical form")
	}
	return nil
}
