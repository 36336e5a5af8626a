package sframe

import "errors"

// Errors returned per frame are these sentinels, unwrapped, so that a media
// pipeline can count drops by reason without allocating.
var (
	// ErrTruncated means the frame ends before its header, or leaves no room
	// for the authentication tag.
	ErrTruncated = errors.New("sframe: frame truncated")
	// ErrMalformedHeader means the header is not the minimal encoding RFC 9605
	// requires.
	ErrMalformedHeader = errors.New("sframe: malformed header")
	// ErrUnknownKID means the receiver holds no key for the frame's KID.
	ErrUnknownKID = errors.New("sframe: unknown key id")
	// ErrAuth means the authentication tag did not verify: the frame, its
	// header or its metadata was altered, or it was made with another key.
	ErrAuth = errors.New("sframe: authentication failed")
	// ErrReplay means a frame with the same KID and counter was already
	// accepted, or the counter is too far behind the newest one to tell.
	ErrReplay = errors.New("sframe: replayed or too old frame")
	// ErrCounterExhausted means the sender used every counter value of its
	// key; it must be given a new key (KID) before it sends again.
	ErrCounterExhausted = errors.New("sframe: counter exhausted")
	// ErrUnsupportedSuite means the cipher suite is not one this package
	// implements.
	ErrUnsupportedSuite = errors.New("sframe: unsupported cipher suite")
	// ErrShortKey means the base key is shorter than MinBaseKeySize.
	ErrShortKey = errors.New("sframe: base key too short")
)
