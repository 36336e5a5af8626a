package keymsg

import "errors"

var (
	// ErrMalformed means the bytes are not a well-formed message of this
	// version: bad JSON, a missing or extra field, a wrong length.
	ErrMalformed = errors.New("keymsg: malformed message")
	// ErrVersion means the message is of a version this code does not speak.
	ErrVersion = errors.New("keymsg: unsupported version")
	// ErrBadSignature means a signature does not verify.
	ErrBadSignature = errors.New("keymsg: bad signature")
	// ErrBadKey means a public key cannot be used (an X25519 point of low
	// order, to which nothing can be sealed).
	ErrBadKey = errors.New("keymsg: unusable key")
	// ErrSeal means an epoch secret could not be sealed or opened.
	ErrSeal = errors.New("keymsg: sealed secret")
)
