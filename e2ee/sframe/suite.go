package sframe

import (
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
)

// Suite is an SFrame cipher suite, numbered as in the IANA "SFrame Cipher
// Suites" registry.
type Suite uint16

// The implemented cipher suites. AES128GCM is the one oakmeet uses.
const (
	// AES128CTRHMAC80 is AES_128_CTR_HMAC_SHA256_80.
	AES128CTRHMAC80 Suite = 0x0001
	// AES128CTRHMAC64 is AES_128_CTR_HMAC_SHA256_64.
	AES128CTRHMAC64 Suite = 0x0002
	// AES128CTRHMAC32 is AES_128_CTR_HMAC_SHA256_32.
	AES128CTRHMAC32 Suite = 0x0003
	// AES128GCM is AES_128_GCM_SHA256_128, oakmeet's default.
	AES128GCM Suite = 0x0004
	// AES256GCM is AES_256_GCM_SHA512_128.
	AES256GCM Suite = 0x0005
	// AES256CTRHMAC80 is AES_256_CTR_HMAC_SHA512_80 (registered after RFC 9605).
	AES256CTRHMAC80 Suite = 0x0006
	// AES256CTRHMAC64 is AES_256_CTR_HMAC_SHA512_64.
	AES256CTRHMAC64 Suite = 0x0007
	// AES256CTRHMAC32 is AES_256_CTR_HMAC_SHA512_32.
	AES256CTRHMAC32 Suite = 0x0008
)

// nonceSize is Nn, the same for every suite.
const nonceSize = 12

// params are the registry columns of one suite.
type params struct {
	name    string
	newHash func() hash.Hash
	nk      int // key size: for CTR suites, encryption key ‖ authentication key
	nka     int // encryption key size within nk for CTR suites; 0 for GCM
	nt      int // tag size
}

func (p *params) gcm() bool { return p.nka == 0 }

func newSHA256() hash.Hash { return sha256.New() }
func newSHA512() hash.Hash { return sha512.New() }

// suites is immutable after initialisation.
var suites = map[Suite]*params{
	AES128CTRHMAC80: {"AES_128_CTR_HMAC_SHA256_80", newSHA256, 48, 16, 10},
	AES128CTRHMAC64: {"AES_128_CTR_HMAC_SHA256_64", newSHA256, 48, 16, 8},
	AES128CTRHMAC32: {"AES_128_CTR_HMAC_SHA256_32", newSHA256, 48, 16, 4},
	AES128GCM:       {"AES_128_GCM_SHA256_128", newSHA256, 16, 0, 16},
	AES256GCM:       {"AES_256_GCM_SHA512_128", newSHA512, 32, 0, 16},
	AES256CTRHMAC80: {"AES_256_CTR_HMAC_SHA512_80", newSHA512, 96, 32, 10},
	AES256CTRHMAC64: {"AES_256_CTR_HMAC_SHA512_64", newSHA512, 96, 32, 8},
	AES256CTRHMAC32: {"AES_256_CTR_HMAC_SHA512_32", newSHA512, 96, 32, 4},
}

func (s Suite) params() (*params, error) {
	p, ok := suites[s]
	if !ok {
		return nil, fmt.Errorf("%w: 0x%04x", ErrUnsupportedSuite, uint16(s))
	}
	return p, nil
}

// String returns the registry name, e.g. "AES_128_GCM_SHA256_128".
func (s Suite) String() string {
	if p, ok := suites[s]; ok {
		return p.name
	}
	return fmt.Sprintf("Suite(0x%04x)", uint16(s))
}

// Supported reports whether this package implements the suite.
func (s Suite) Supported() bool {
	_, ok := suites[s]
	return ok
}

// TagSize is Nt, the bytes the authentication tag adds to every frame, or 0
// for an unsupported suite.
func (s Suite) TagSize() int {
	if p, ok := suites[s]; ok {
		return p.nt
	}
	return 0
}

// Overhead is the most bytes Encrypt adds to a plaintext: the longest header
// plus the tag.
func (s Suite) Overhead() int { return MaxHeaderSize + s.TagSize() }
