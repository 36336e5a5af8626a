package mediaframe

import (
	"errors"
	"sync/atomic"

	"github.com/oakmeet/oakmeet/e2ee/sframe"
)

// Encrypter is what a Protector needs: an SFrame sender, or something that
// picks the current one (the group's key schedule).
type Encrypter interface {
	Encrypt(dst, metadata, plaintext []byte) ([]byte, error)
}

// Decrypter is what an Unprotector needs: an SFrame receiver, or something
// that forwards to one.
type Decrypter interface {
	Decrypt(dst, metadata, frame []byte) ([]byte, error)
}

// Stats counts frames by outcome. Dropped is the sum of the reasons after it
// plus failures none of them name.
type Stats struct {
	Passed    uint64 // frames protected or unprotected
	Dropped   uint64 // frames refused, for any reason
	Short     uint64 // shorter than the clear prefix, or truncated SFrame
	NoKey     uint64 // no key to protect with, or unknown key id
	Malformed uint64 // SFrame header not minimally encoded
	Auth      uint64 // authentication failed: altered, or another key
	Replay    uint64 // already received, or too old
}

// counters are the live, atomically updated Stats.
type counters struct {
	passed, dropped, short, noKey, malformed, auth, replay atomic.Uint64
}

func (c *counters) drop(err error) {
	c.dropped.Add(1)
	switch {
	case errors.Is(err, ErrShortFrame), errors.Is(err, sframe.ErrTruncated):
		c.short.Add(1)
	case errors.Is(err, ErrNoKey), errors.Is(err, sframe.ErrUnknownKID):
		c.noKey.Add(1)
	case errors.Is(err, sframe.ErrMalformedHeader):
		c.malformed.Add(1)
	case errors.Is(err, sframe.ErrAuth):
		c.auth.Add(1)
	case errors.Is(err, sframe.ErrReplay):
		c.replay.Add(1)
	}
}

// apply copies frame's clear prefix to dst and has op (Encrypt or Decrypt)
// append the rest, with the prefix as SFrame metadata, counting the outcome.
// Both directions go through here so that they always agree on where the
// prefix ends.
func (c *counters) apply(dst []byte, codec Codec, frame []byte, op func(dst, metadata, in []byte) ([]byte, error)) ([]byte, error) {
	n := PrefixLen(codec, frame)
	if len(frame) < n {
		c.drop(ErrShortFrame)
		return nil, ErrShortFrame
	}
	out, err := op(append(dst, frame[:n]...), frame[:n], frame[n:])
	if err != nil {
		c.drop(err)
		return nil, err
	}
	c.passed.Add(1)
	return out, nil
}

func (c *counters) stats() Stats {
	return Stats{
		Passed:    c.passed.Load(),
		Dropped:   c.dropped.Load(),
		Short:     c.short.Load(),
		NoKey:     c.noKey.Load(),
		Malformed: c.malformed.Load(),
		Auth:      c.auth.Load(),
		Replay:    c.replay.Load(),
	}
}

// Protector turns outgoing frames into protected frames. It is safe for
// concurrent use if its Encrypter is.
type Protector struct {
	enc Encrypter
	c   counters
}

// NewProtector returns a Protector encrypting with enc.
func NewProtector(enc Encrypter) *Protector { return &Protector{enc: enc} }

// Protect appends clear prefix ‖ SFrame(rest of frame) to dst, the prefix
// being the SFrame metadata. On error it returns nil and counts the frame as
// dropped; the caller must not send the frame. dst's spare capacity must not
// overlap frame.
func (p *Protector) Protect(dst []byte, codec Codec, frame []byte) ([]byte, error) {
	return p.c.apply(dst, codec, frame, p.enc.Encrypt)
}

// Stats returns the counts so far.
func (p *Protector) Stats() Stats { return p.c.stats() }

// Unprotector turns received protected frames back into frames. It is safe
// for concurrent use if its Decrypter is.
type Unprotector struct {
	dec Decrypter
	c   counters
}

// NewUnprotector returns an Unprotector decrypting with dec.
func NewUnprotector(dec Decrypter) *Unprotector { return &Unprotector{dec: dec} }

// Unprotect checks a protected frame and appends the original frame to dst.
// On any error it returns nil and counts the frame as dropped: nothing of a
// frame that failed may reach a decoder. dst's spare capacity must not
// overlap frame.
func (u *Unprotector) Unprotect(dst []byte, codec Codec, frame []byte) ([]byte, error) {
	return u.c.apply(dst, codec, frame, u.dec.Decrypt)
}

// Stats returns the counts so far.
func (u *Unprotector) Stats() Stats { return u.c.stats() }
