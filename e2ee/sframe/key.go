package sframe

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/subtle"
	"encoding/binary"
	"hash"
	"slices"
)

// MinBaseKeySize is the shortest base key accepted. RFC 9605 sets no
// minimum; a shorter key is almost certainly a caller's mistake.
const MinBaseKeySize = 16

// Labels of RFC 9605 Section 4.4.2; each is followed by KID (8 bytes) and the
// cipher suite (2 bytes), big-endian.
const (
	keyLabel  = "SFrame 1.0 Secret key "
	saltLabel = "SFrame 1.0 Secret salt "
)

// material is what RFC 9605 derives from one base key for one KID.
type material struct {
	secret []byte // sframe_secret = HKDF-Extract("", base_key)
	key    []byte // sframe_key, Nk bytes
	salt   []byte // sframe_salt, Nn bytes
}

func deriveMaterial(suite Suite, p *params, kid uint64, baseKey []byte) (material, error) {
	if len(baseKey) < MinBaseKeySize {
		return material{}, ErrShortKey
	}
	secret, err := hkdf.Extract(p.newHash, baseKey, nil)
	if err != nil {
		return material{}, err
	}
	key, err := hkdf.Expand(p.newHash, secret, label(keyLabel, kid, suite), p.nk)
	if err != nil {
		return material{}, err
	}
	salt, err := hkdf.Expand(p.newHash, secret, label(saltLabel, kid, suite), nonceSize)
	if err != nil {
		return material{}, err
	}
	return material{secret: secret, key: key, salt: salt}, nil
}

func label(prefix string, kid uint64, suite Suite) string {
	b := make([]byte, 0, len(prefix)+10)
	b = append(b, prefix...)
	b = binary.BigEndian.AppendUint64(b, kid)
	b = binary.BigEndian.AppendUint16(b, uint16(suite))
	return string(b)
}

// key is the AEAD state of one KID. It is not safe for concurrent use: its
// owner (a Sender, or a Receiver's entry) serialises calls, which lets the
// scratch buffers below live here instead of being allocated per frame.
type key struct {
	p    *params
	salt [nonceSize]byte

	gcm cipher.AEAD // GCM suites

	block cipher.Block // CTR-HMAC suites: AES with the first Nka bytes
	mac   hash.Hash    // CTR-HMAC suites: HMAC with the remaining bytes

	nonce [nonceSize]byte
	aad   []byte   // header ‖ metadata when GCM needs them contiguous
	ctr   [16]byte // CTR-HMAC counter block
	ks    [16]byte // CTR-HMAC keystream block
	lens  [24]byte // CTR-HMAC length prefix of the MAC input
	sum   []byte   // CTR-HMAC full MAC output
}

func newKey(suite Suite, kid uint64, baseKey []byte) (*key, error) {
	p, err := suite.params()
	if err != nil {
		return nil, err
	}
	m, err := deriveMaterial(suite, p, kid, baseKey)
	if err != nil {
		return nil, err
	}
	return newKeyFromMaterial(p, m.key, m.salt)
}

func newKeyFromMaterial(p *params, sframeKey, salt []byte) (*key, error) {
	k := &key{p: p}
	copy(k.salt[:], salt)
	if p.gcm() {
		block, err := aes.NewCipher(sframeKey)
		if err != nil {
			return nil, err
		}
		if k.gcm, err = cipher.NewGCM(block); err != nil {
			return nil, err
		}
		return k, nil
	}
	block, err := aes.NewCipher(sframeKey[:p.nka])
	if err != nil {
		return nil, err
	}
	k.block = block
	k.mac = hmac.New(p.newHash, sframeKey[p.nka:])
	k.sum = make([]byte, 0, k.mac.Size())
	return k, nil
}

// setNonce computes nonce = salt XOR CTR, the CTR left-padded to Nn bytes.
func (k *key) setNonce(ctr uint64) {
	k.nonce = k.salt
	for i := range 8 {
		k.nonce[nonceSize-1-i] ^= byte(ctr >> (8 * i))
	}
}

// gcmAAD returns header ‖ metadata as one slice, copying only when metadata
// is present.
func (k *key) gcmAAD(hdr, metadata []byte) []byte {
	if len(metadata) == 0 {
		return hdr
	}
	k.aad = append(append(k.aad[:0], hdr...), metadata...)
	return k.aad
}

// seal appends ciphertext ‖ tag to dst. hdr is the frame's encoded header,
// already at the end of dst.
func (k *key) seal(dst []byte, ctr uint64, hdr, metadata, pt []byte) []byte {
	k.setNonce(ctr)
	if k.p.gcm() {
		return k.gcm.Seal(dst, k.nonce[:], pt, k.gcmAAD(hdr, metadata))
	}
	n := len(dst)
	dst = slices.Grow(dst, len(pt)+k.p.nt)[:n+len(pt)+k.p.nt]
	ct := dst[n : n+len(pt)]
	k.xorKeyStream(ct, pt)
	k.tag(dst[n+len(pt):], hdr, metadata, ct)
	return dst
}

// open appends the plaintext of ct (ciphertext ‖ tag) to dst, or returns
// ErrAuth having written no plaintext.
func (k *key) open(dst []byte, ctr uint64, hdr, metadata, ct []byte) ([]byte, error) {
	k.setNonce(ctr)
	if k.p.gcm() {
		out, err := k.gcm.Open(dst, k.nonce[:], ct, k.gcmAAD(hdr, metadata))
		if err != nil {
			return nil, ErrAuth
		}
		return out, nil
	}
	body, got := ct[:len(ct)-k.p.nt], ct[len(ct)-k.p.nt:]
	// The tag is checked before anything is decrypted, so a forged frame
	// never yields plaintext, not even in dst's spare capacity.
	var want [16]byte
	k.tag(want[:k.p.nt], hdr, metadata, body)
	if subtle.ConstantTimeCompare(want[:k.p.nt], got) != 1 {
		return nil, ErrAuth
	}
	n := len(dst)
	dst = slices.Grow(dst, len(body))[:n+len(body)]
	k.xorKeyStream(dst[n:], body)
	return dst, nil
}

// xorKeyStream is AES-CTR with the initial counter block nonce ‖ 0x00000000
// (RFC 9605 Section 4.5.1), written out so that no cipher.Stream is
// allocated per frame.
func (k *key) xorKeyStream(dst, src []byte) {
	copy(k.ctr[:nonceSize], k.nonce[:])
	var i uint32
	for len(src) > 0 {
		binary.BigEndian.PutUint32(k.ctr[nonceSize:], i)
		k.block.Encrypt(k.ks[:], k.ctr[:])
		n := subtle.XORBytes(dst, src, k.ks[:])
		dst, src = dst[n:], src[n:]
		i++
	}
}

// tag writes the truncated HMAC of RFC 9605 Section 4.5.1 over
// len(aad) ‖ len(ct) ‖ Nt (8 bytes each) ‖ nonce ‖ aad ‖ ct, where
// aad = header ‖ metadata.
func (k *key) tag(out, hdr, metadata, ct []byte) {
	binary.BigEndian.PutUint64(k.lens[0:], uint64(len(hdr)+len(metadata)))
	binary.BigEndian.PutUint64(k.lens[8:], uint64(len(ct)))
	binary.BigEndian.PutUint64(k.lens[16:], uint64(k.p.nt))
	k.mac.Reset()
	k.mac.Write(k.lens[:])
	k.mac.Write(k.nonce[:])
	k.mac.Write(hdr)
	k.mac.Write(metadata)
	k.mac.Write(ct)
	k.sum = k.mac.Sum(k.sum[:0])
	copy(out, k.sum[:k.p.nt])
}
